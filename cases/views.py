"""Thin views: parse input, call a service or selector, render."""
from __future__ import annotations

import django_filters
from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.http import JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views import View

from accounts.mixins import RoleRequiredMixin
from accounts.roles import Role

from . import downloads, selectors, services
from .forms import ImageUploadForm, PatientForm, SampleForm
from .models import AuditEvent, CellImage, Patient, Sample, SampleStatus

CLINICAL_READERS = (Role.TECHNICIAN, Role.DOCTOR, Role.ADMIN)


class HomeView(RoleRequiredMixin, View):
    allowed_roles = CLINICAL_READERS

    def get(self, request):
        return render(
            request,
            "cases/home.html",
            {"recent_samples": selectors.sample_list()[:10], "statuses": SampleStatus},
        )


class PatientListView(RoleRequiredMixin, View):
    allowed_roles = CLINICAL_READERS

    def get(self, request):
        query = request.GET.get("q", "")
        page = Paginator(selectors.patient_search(query=query), 25).get_page(request.GET.get("page"))
        return render(request, "cases/patient_list.html", {"page": page, "q": query})


class PatientCreateView(RoleRequiredMixin, View):
    allowed_roles = (Role.TECHNICIAN,)

    def get(self, request):
        return render(request, "cases/patient_form.html", {"form": PatientForm()})

    def post(self, request):
        form = PatientForm(request.POST)
        if not form.is_valid():
            return render(request, "cases/patient_form.html", {"form": form}, status=400)
        try:
            patient = services.patient_create(actor=request.user, **form.cleaned_data)
        except ValidationError as exc:
            form.add_error(None, exc)
            return render(request, "cases/patient_form.html", {"form": form}, status=400)
        messages.success(request, f"Patient {patient} registered.")
        return redirect("patient-detail", pk=patient.pk)


class PatientDetailView(RoleRequiredMixin, View):
    allowed_roles = CLINICAL_READERS

    def get(self, request, pk: int):
        patient = get_object_or_404(Patient, pk=pk)
        return render(
            request,
            "cases/patient_detail.html",
            {"patient": patient, "samples": selectors.sample_list(patient=patient)},
        )


class SampleCreateView(RoleRequiredMixin, View):
    allowed_roles = (Role.TECHNICIAN,)

    def get(self, request, patient_pk: int):
        patient = get_object_or_404(Patient, pk=patient_pk)
        return render(request, "cases/sample_form.html", {"form": SampleForm(), "patient": patient})

    def post(self, request, patient_pk: int):
        patient = get_object_or_404(Patient, pk=patient_pk)
        form = SampleForm(request.POST)
        if not form.is_valid():
            return render(request, "cases/sample_form.html", {"form": form, "patient": patient}, status=400)
        try:
            sample = services.sample_create(actor=request.user, patient=patient, **form.cleaned_data)
        except ValidationError as exc:
            form.add_error(None, exc)
            return render(request, "cases/sample_form.html", {"form": form, "patient": patient}, status=400)
        messages.success(request, f"Sample {sample.accession_number} registered.")
        return redirect("sample-detail", pk=sample.pk)


class SampleListView(RoleRequiredMixin, View):
    allowed_roles = CLINICAL_READERS

    def get(self, request):
        status = request.GET.get("status") or None
        if status and status not in SampleStatus.values:
            status = None
        page = Paginator(selectors.sample_list(status=status), 25).get_page(request.GET.get("page"))
        return render(
            request, "cases/sample_list.html", {"page": page, "status": status, "statuses": SampleStatus.choices}
        )


class SampleDetailView(RoleRequiredMixin, View):
    allowed_roles = CLINICAL_READERS

    def get(self, request, pk: int):
        sample = get_object_or_404(Sample.objects.select_related("patient"), pk=pk)
        return render(
            request,
            "cases/sample_detail.html",
            {
                "sample": sample,
                "images": selectors.sample_images(sample=sample),
                "progress": selectors.sample_image_progress(sample=sample),
                "upload_form": ImageUploadForm(),
                "signatures": sample.signatures.order_by("version"),
            },
        )


class SampleUploadView(RoleRequiredMixin, View):
    allowed_roles = (Role.TECHNICIAN,)

    def post(self, request, pk: int):
        sample = get_object_or_404(Sample, pk=pk)
        files = request.FILES.getlist("images")
        if not files:
            messages.error(request, "Choose at least one image file to upload.")
            return redirect("sample-detail", pk=sample.pk)
        result = services.images_upload(
            actor=request.user, sample=sample, files=((f.name, f) for f in files)
        )
        if result.accepted:
            messages.success(request, f"{len(result.accepted)} image(s) accepted and queued for classification.")
        for rejected in result.rejected:
            messages.error(request, f"Rejected {rejected.filename}: {rejected.reason}.")
        return redirect("sample-detail", pk=sample.pk)


class SampleProgressView(RoleRequiredMixin, View):
    """JSON polled by the sample page to show per-image progress without a reload."""

    allowed_roles = CLINICAL_READERS

    def get(self, request, pk: int):
        sample = get_object_or_404(Sample, pk=pk)
        images = [
            {"id": img.pk, "status": img.status, "status_label": img.get_status_display(), "error": img.error_message}
            for img in selectors.sample_images(sample=sample)
        ]
        return JsonResponse(
            {
                "sample_status": sample.status,
                "sample_status_label": sample.get_status_display(),
                "progress": selectors.sample_image_progress(sample=sample),
                "images": images,
            }
        )


class CellImageFileView(RoleRequiredMixin, View):
    """Streams an uploaded image to signed-in users with a clinical role; media is never public."""

    allowed_roles = CLINICAL_READERS

    def get(self, request, pk: int):
        return downloads.image_file_response(actor=request.user, image=get_object_or_404(CellImage, pk=pk))


class AuditFilter(django_filters.FilterSet):
    timestamp = django_filters.DateFromToRangeFilter(label="Date (from – to)")
    actor_username = django_filters.CharFilter(lookup_expr="icontains", label="User")
    action = django_filters.CharFilter(lookup_expr="exact")
    object_type = django_filters.CharFilter(lookup_expr="icontains", label="Object type")
    object_id = django_filters.CharFilter(lookup_expr="exact", label="Object id")

    class Meta:
        model = AuditEvent
        fields = ["timestamp", "actor_username", "action", "object_type", "object_id"]


class AuditTrailView(RoleRequiredMixin, View):
    allowed_roles = (Role.ADMIN,)

    def get(self, request):
        flt = AuditFilter(request.GET, queryset=selectors.audit_events())
        if not flt.is_valid():
            raise PermissionDenied("Invalid filter.")
        page = Paginator(flt.qs, 50).get_page(request.GET.get("page"))
        query = request.GET.copy()
        query.pop("page", None)
        return render(
            request,
            "audit/audit_list.html",
            {"filter": flt, "page": page, "query": query.urlencode(), "base_url": reverse("audit-trail")},
        )
