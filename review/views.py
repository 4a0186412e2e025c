"""Doctor pages: worklist, review gallery, sign-off, amendments, reports, agreement."""
from __future__ import annotations

from django import forms
from django.conf import settings
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.cache import add_never_cache_headers
from django.views import View

from accounts.lockout import request_ip
from accounts.mixins import RoleRequiredMixin
from accounts.roles import CLINICAL_STAFF, Role, has_role
from cases.cell_classes import EXCLUDED
from cases.errors import InvalidState
from cases.models import CellImage, Field, Sample, SampleStatus
from classifier.downloads import heatmap_response
from classifier.selectors import latest_prediction

from . import selectors as rs
from . import services as reviews
from .models import SignatureMeaning
from .reports import fhir_response, report_pdf_response

# What a page shows as a message next to the form, rather than as an error page.
REFUSALS = (InvalidState, ValidationError)


def _message(exc: Exception) -> str:
    return " ".join(exc.messages) if isinstance(exc, ValidationError) else str(exc)


class WorklistFilter(forms.Form):
    status = forms.MultipleChoiceField(
        choices=[(s, SampleStatus(s).label) for s in (SampleStatus.AWAITING_REVIEW, SampleStatus.AMENDED,
                                                        SampleStatus.CLASSIFYING, SampleStatus.SIGNED)],
        required=False, widget=forms.CheckboxSelectMultiple,
    )
    received_from = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))
    received_to = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))


class WorklistView(RoleRequiredMixin, View):
    allowed_roles = (Role.DOCTOR,)

    def get(self, request):
        form = WorklistFilter(request.GET or None)
        data = form.cleaned_data if form.is_bound and form.is_valid() else {}
        samples = rs.worklist(
            statuses=data.get("status") or None,
            received_from=data.get("received_from"),
            received_to=data.get("received_to"),
        )
        return render(request, "review/worklist.html", {"samples": samples, "form": form})


def _review_context(sample: Sample, user) -> dict:
    rows = rs.review_cells(sample=sample)
    differential = rs.differential(rows=rows, wbc_count=sample.wbc_count)
    return {
        "sample": sample,
        # Empty groups too (hidden): a cell reclassified on the page moves into its group at once.
        "groups": rs.review_groups(rows=rows, keep_empty=True),
        "differential": differential,
        "result_sha256": rs.result_sha256(rs.result_snapshot(sample=sample, rows=rows)),
        "minimum_count": settings.HV_MIN_CELLS_FOR_SIGNOFF,
        "count_shortfall": reviews.minimum_count_shortfall(
            counted=differential.final_total, unreviewed=differential.unreviewed),
        "examined": rs.examined(sample=sample),
        "blockers": reviews.sign_off_blockers(sample=sample, actor=user),
        "signatures": rs.signatures(sample=sample),
        "can_edit": sample.status in rs.REVIEWABLE_STATUSES,
        "meanings": SignatureMeaning.choices,
        "classes": rs.CLASSES,
        "excluded": EXCLUDED,
    }


def _never_cached(response):
    """The review page is never shown from a cache (Back, a restored tab): what the doctor signs must
    be what the server holds. Its script reloads the state when the page is shown again anyway."""
    add_never_cache_headers(response)  # no-store among them
    return response


class ReviewView(RoleRequiredMixin, View):
    allowed_roles = (Role.DOCTOR,)

    def get(self, request, pk: int):
        sample = get_object_or_404(Sample.objects.select_related("patient"), pk=pk)
        return _never_cached(render(request, "review/review.html", _review_context(sample, request.user)))


class _DoctorWriteView(RoleRequiredMixin, View):
    """A doctor's form post: one service call, then back to a page; a refusal is shown there as a message."""

    allowed_roles = (Role.DOCTOR,)
    success_url_name = "sample-review"
    refused_url_name = "sample-review"

    def write(self, request, sample: Sample) -> str:
        """Call the service; return the message that says what was done."""
        raise NotImplementedError

    def post(self, request, pk: int):
        sample = get_object_or_404(Sample, pk=pk)
        try:
            done = self.write(request, sample)
        except REFUSALS as exc:
            messages.error(request, _message(exc))
            return redirect(self.refused_url_name, pk=sample.pk)
        messages.success(request, done)
        return redirect(self.success_url_name, pk=sample.pk)


class GroupConfirmView(_DoctorWriteView):
    def write(self, request, sample: Sample) -> str:
        n = reviews.group_confirm(actor=request.user, sample=sample, ai_class=request.POST.get("ai_class", ""))
        return f"{n} cell(s) confirmed."


class SampleCommentView(_DoctorWriteView):
    def write(self, request, sample: Sample) -> str:
        reviews.sample_comment_set(actor=request.user, sample=sample, comment=request.POST.get("comment", ""))
        return "Comment saved."


class AmendView(_DoctorWriteView):
    refused_url_name = "sample-detail"

    def write(self, request, sample: Sample) -> str:
        reviews.sample_amend(actor=request.user, sample=sample, reason=request.POST.get("reason", ""))
        return "The sample is reopened for amendment; the signed version stays on record."


class SignView(RoleRequiredMixin, View):
    allowed_roles = (Role.DOCTOR,)

    def post(self, request, pk: int):
        sample = get_object_or_404(Sample.objects.select_related("patient"), pk=pk)
        try:
            signature = reviews.sample_sign(
                actor=request.user, sample=sample, password=request.POST.get("password", ""),
                meaning=request.POST.get("meaning", SignatureMeaning.REVIEWED_APPROVED), ip_address=request_ip(request),
                # The page always sends the hash of the result it shows; an empty one is refused too.
                result_sha256=request.POST.get("result_sha256", ""),
                count_override_reason=request.POST.get("count_override_reason", ""),
            )
        except (*REFUSALS, reviews.WrongPassword) as exc:
            messages.error(request, _message(exc))
            context = _review_context(sample, request.user)
            context["count_override_reason"] = request.POST.get("count_override_reason", "")
            return _never_cached(render(request, "review/review.html", context, status=400))
        messages.success(request, f"Sample {sample.accession_number} signed (version {signature.version}).")
        return redirect("sample-detail", pk=sample.pk)


class SignedVersionView(RoleRequiredMixin, View):
    allowed_roles = CLINICAL_STAFF

    def get(self, request, pk: int, version: int):
        sample = get_object_or_404(Sample.objects.select_related("patient"), pk=pk)
        signature = rs.signature_or_404(sample=sample, version=version)
        return render(request, "review/signed_version.html", {"sample": sample, "signature": signature})


class ReportPdfView(RoleRequiredMixin, View):
    allowed_roles = CLINICAL_STAFF

    def get(self, request, pk: int):
        sample = get_object_or_404(Sample.objects.select_related("patient"), pk=pk)
        version = request.GET.get("version")
        signature = rs.signature_or_404(sample=sample, version=int(version) if version and version.isdigit() else None)
        return report_pdf_response(actor=request.user, sample=sample, signature=signature)


class FhirView(RoleRequiredMixin, View):
    allowed_roles = CLINICAL_STAFF

    def get(self, request, pk: int):
        sample = get_object_or_404(Sample.objects.select_related("patient"), pk=pk)
        signature = rs.signature_or_404(sample=sample, version=None)
        return fhir_response(actor=request.user, sample=sample, signature=signature)


class HeatmapView(RoleRequiredMixin, View):
    allowed_roles = CLINICAL_STAFF

    def get(self, request, pk: int):
        image = get_object_or_404(CellImage, pk=pk)
        return heatmap_response(actor=request.user, prediction=latest_prediction(image=image))


class AgreementView(RoleRequiredMixin, View):
    allowed_roles = (Role.DOCTOR, Role.ADMIN)

    def get(self, request):
        return render(
            request, "review/agreement.html",
            {"tables": rs.agreement_by_model_version(), "classes": rs.CLASSES, "finals": [*rs.CLASSES, EXCLUDED],
             "shadow_evidence": rs.shadow_evidence(), "detection": rs.detection_agreement()},
        )


class FieldView(RoleRequiredMixin, View):
    """A whole field with every detection's box; doctors add missed cells, reject false ones and
    review a cell in place (the page's script calls the REST API)."""

    allowed_roles = CLINICAL_STAFF

    def get(self, request, pk: int):
        field = get_object_or_404(Field.objects.select_related("sample", "sample__patient"), pk=pk)
        cell = request.GET.get("cell", "")
        return render(request, "review/field.html", {
            "field": field,
            "sample": field.sample,
            "rows": rs.field_cells(field=field),
            "highlight": int(cell) if cell.isdigit() else None,
            "can_edit": has_role(request.user, Role.DOCTOR) and field.sample.status in rs.REVIEWABLE_STATUSES,
            "classes": rs.CLASSES,
            "excluded": EXCLUDED,
        })
