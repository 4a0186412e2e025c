"""Thin views: parse input, call a service or selector, render."""
from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.http import JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.http import urlencode
from django.views import View

from accounts.mixins import RoleRequiredMixin
from accounts.roles import CLINICAL_STAFF, Role

from . import downloads, selectors, services
from .forms import ImageUploadForm, PatientForm, SampleCancelForm, SampleEditForm, SampleForm
from .models import CellImage, Field, Patient, Sample, SampleStatus, UploadKind

CLINICAL_READERS = CLINICAL_STAFF


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
            duplicates = []
            if "confirm_duplicate" in form.errors:
                form.ask_to_confirm_duplicate()
                duplicates = selectors.patient_possible_duplicates(
                    family_name=form.cleaned_data["family_name"], given_name=form.cleaned_data["given_name"],
                    date_of_birth=form.cleaned_data["date_of_birth"],
                )
            return render(
                request, "cases/patient_form.html", {"form": form, "duplicates": duplicates}, status=400
            )
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
        query = request.GET.get("q", "")[:64]
        samples = selectors.sample_list(status=status, query=query)
        page = Paginator(samples, 25).get_page(request.GET.get("page"))
        extra = urlencode({k: v for k, v in (("status", status), ("q", query)) if v})
        return render(
            request,
            "cases/sample_list.html",
            {"page": page, "status": status, "statuses": SampleStatus.choices, "q": query, "extra": extra},
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
                "fields": selectors.sample_field_list(sample=sample),
                "field_progress": selectors.sample_field_progress(sample=sample),
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
        kind = request.POST.get("kind") or UploadKind.AUTO
        result = services.images_upload(
            actor=request.user, sample=sample, files=((f.name, f) for f in files), kind=kind
        )
        if result.accepted:
            messages.success(request, f"{len(result.accepted)} image(s) accepted and queued for classification.")
        if result.fields:
            messages.success(request, f"{len(result.fields)} field(s) accepted and queued for white-cell detection.")
        if kind == UploadKind.AUTO:
            for decision in result.decisions:
                messages.info(request, f"{decision.filename}: taken as a {decision.reason}.")
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
                "field_progress": selectors.sample_field_progress(sample=sample),
                "fields": [
                    {"id": f.pk, "status": f.status, "status_label": f.get_status_display(), "error": f.error_message}
                    for f in selectors.sample_field_list(sample=sample)
                ],
            }
        )


class CellImageFileView(RoleRequiredMixin, View):
    """Streams an uploaded image to signed-in users with a clinical role; media is never public."""

    allowed_roles = CLINICAL_READERS

    def get(self, request, pk: int):
        return downloads.image_file_response(actor=request.user, image=get_object_or_404(CellImage, pk=pk))


class FieldFileView(RoleRequiredMixin, View):
    """Streams an uploaded whole field to clinical staff (audited, like a cell image)."""

    allowed_roles = CLINICAL_READERS

    def get(self, request, pk: int):
        return downloads.field_file_response(actor=request.user, field=get_object_or_404(Field, pk=pk))


class SampleEditView(RoleRequiredMixin, View):
    """Correct a sample's details (technicians, until the sample is first signed)."""

    allowed_roles = (Role.TECHNICIAN,)

    def _render(self, request, sample, form, status=200):
        return render(request, "cases/sample_edit.html", {"sample": sample, "form": form}, status=status)

    def get(self, request, pk: int):
        sample = get_object_or_404(Sample.objects.select_related("patient"), pk=pk)
        return self._render(request, sample, SampleEditForm.for_sample(sample))

    def post(self, request, pk: int):
        sample = get_object_or_404(Sample.objects.select_related("patient"), pk=pk)
        form = SampleEditForm(request.POST)
        if not form.is_valid():
            return self._render(request, sample, form, status=400)
        changes = form.changes(sample)
        if not changes:
            messages.info(request, "Nothing was changed.")
            return redirect("sample-detail", pk=sample.pk)
        try:
            services.sample_update(actor=request.user, sample=sample, reason=form.cleaned_data["reason"], **changes)
        except ValidationError as exc:
            form.add_error(None, exc)
            return self._render(request, sample, form, status=400)
        messages.success(request, f"Sample {sample.accession_number} corrected.")
        return redirect("sample-detail", pk=sample.pk)


class SampleCancelView(RoleRequiredMixin, View):
    """Cancel a sample, with a reason, after a confirmation step (technicians and doctors)."""

    allowed_roles = (Role.TECHNICIAN, Role.DOCTOR)

    def _render(self, request, sample, form, status=200):
        return render(request, "cases/sample_cancel.html", {"sample": sample, "form": form}, status=status)

    def get(self, request, pk: int):
        sample = get_object_or_404(Sample.objects.select_related("patient"), pk=pk)
        return self._render(request, sample, SampleCancelForm())

    def post(self, request, pk: int):
        sample = get_object_or_404(Sample.objects.select_related("patient"), pk=pk)
        form = SampleCancelForm(request.POST)
        if not form.is_valid():
            return self._render(request, sample, form, status=400)
        try:
            services.sample_cancel(actor=request.user, sample=sample, reason=form.cleaned_data["reason"])
        except ValidationError as exc:
            form.add_error(None, exc)
            return self._render(request, sample, form, status=400)
        messages.success(request, f"Sample {sample.accession_number} cancelled.")
        return redirect("sample-detail", pk=sample.pk)


class SampleHistoryView(RoleRequiredMixin, View):
    """Every event of a sample, its cells and fields, oldest first, in words."""

    allowed_roles = CLINICAL_READERS

    def get(self, request, pk: int):
        sample = get_object_or_404(Sample.objects.select_related("patient"), pk=pk)
        return render(
            request, "cases/sample_history.html", {"sample": sample, "entries": selectors.sample_history(sample=sample)}
        )


class SampleBarcodeView(RoleRequiredMixin, View):
    """The accession number as a Code 128 PNG (audited download)."""

    allowed_roles = CLINICAL_READERS

    def get(self, request, pk: int):
        sample = get_object_or_404(Sample, pk=pk)
        return downloads.sample_barcode_response(actor=request.user, sample=sample)


class SampleLabelView(RoleRequiredMixin, View):
    """The printable PDF label of a sample (audited download)."""

    allowed_roles = CLINICAL_READERS

    def get(self, request, pk: int):
        sample = get_object_or_404(Sample.objects.select_related("patient"), pk=pk)
        return downloads.sample_label_response(actor=request.user, sample=sample)
