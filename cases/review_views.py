"""Doctor pages: worklist, review gallery, sign-off, amendments, reports, agreement."""
from __future__ import annotations

import json

from django import forms
from django.contrib import messages
from django.http import Http404, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views import View

from accounts.lockout import request_ip
from accounts.mixins import RoleRequiredMixin
from accounts.roles import Role

from . import downloads, reviews
from . import review_selectors as rs
from .json_body import json_parse
from .models import CellImage, Sample, SampleStatus, SignatureMeaning
from .services import NotAllowed

CLINICAL_READERS = (Role.TECHNICIAN, Role.DOCTOR, Role.ADMIN)


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
    return {
        "sample": sample,
        "groups": rs.review_groups(rows=rows),
        "differential": rs.differential(rows=rows, wbc_count=sample.wbc_count),
        "blockers": reviews.sign_off_blockers(sample=sample, actor=user),
        "signatures": rs.signatures(sample=sample),
        "can_edit": sample.status in rs.REVIEWABLE_STATUSES,
        "meanings": SignatureMeaning.choices,
        "classes": rs.CLASSES,
    }


class ReviewView(RoleRequiredMixin, View):
    allowed_roles = (Role.DOCTOR,)

    def get(self, request, pk: int):
        sample = get_object_or_404(Sample.objects.select_related("patient"), pk=pk)
        return render(request, "review/review.html", _review_context(sample, request.user))


def _json_body(request) -> dict:
    if request.content_type == "application/json":
        try:
            data = json_parse(data=request.body or b"{}")
        except json.JSONDecodeError:
            raise ValueError("The request body is not valid JSON.") from None
        if not isinstance(data, dict):
            raise ValueError("The request body must be a JSON object.")
        return data
    return request.POST.dict()


def _state(sample: Sample, user) -> dict:
    rows = rs.review_cells(sample=sample)
    return {
        "differential": rs.differential(rows=rows, wbc_count=sample.wbc_count).as_dict(),
        "blockers": reviews.sign_off_blockers(sample=sample, actor=user),
        "cells": {
            r.image.pk: {"final_class": r.final_class, "comment": r.review.comment if r.review else "",
                         "group": r.group}
            for r in rows
        },
    }


class CellReviewView(RoleRequiredMixin, View):
    """POST {final_class, comment?} → JSON with the new differential (keyboard review calls this)."""

    allowed_roles = (Role.DOCTOR,)

    def post(self, request, pk: int, image_pk: int):
        image = get_object_or_404(CellImage, pk=image_pk, sample_id=pk)
        try:
            data = _json_body(request)
            reviews.cell_review(
                actor=request.user, image=image, final_class=str(data.get("final_class", "")),
                comment=data.get("comment"),
            )
        except NotAllowed as exc:
            return JsonResponse({"error": str(exc)}, status=409)
        except ValueError as exc:
            return JsonResponse({"error": str(exc)}, status=400)
        return JsonResponse(_state(image.sample, request.user))


class GroupConfirmView(RoleRequiredMixin, View):
    allowed_roles = (Role.DOCTOR,)

    def post(self, request, pk: int):
        sample = get_object_or_404(Sample, pk=pk)
        try:
            n = reviews.group_confirm(actor=request.user, sample=sample, ai_class=request.POST.get("ai_class", ""))
        except (NotAllowed, ValueError) as exc:
            messages.error(request, str(exc))
        else:
            messages.success(request, f"{n} cell(s) confirmed.")
        return redirect("sample-review", pk=sample.pk)


class SampleCommentView(RoleRequiredMixin, View):
    allowed_roles = (Role.DOCTOR,)

    def post(self, request, pk: int):
        sample = get_object_or_404(Sample, pk=pk)
        try:
            reviews.sample_comment_set(actor=request.user, sample=sample, comment=request.POST.get("comment", ""))
        except NotAllowed as exc:
            messages.error(request, str(exc))
        else:
            messages.success(request, "Comment saved.")
        return redirect("sample-review", pk=sample.pk)


class SignView(RoleRequiredMixin, View):
    allowed_roles = (Role.DOCTOR,)

    def post(self, request, pk: int):
        sample = get_object_or_404(Sample.objects.select_related("patient"), pk=pk)
        try:
            signature = reviews.sample_sign(
                actor=request.user, sample=sample, password=request.POST.get("password", ""),
                meaning=request.POST.get("meaning", SignatureMeaning.REVIEWED_APPROVED), ip_address=request_ip(request),
            )
        except (reviews.SignOffBlocked, NotAllowed, ValueError) as exc:
            messages.error(request, str(exc))
            context = _review_context(sample, request.user)
            return render(request, "review/review.html", context, status=400)
        messages.success(request, f"Sample {sample.accession_number} signed (version {signature.version}).")
        return redirect("sample-detail", pk=sample.pk)


class AmendView(RoleRequiredMixin, View):
    allowed_roles = (Role.DOCTOR,)

    def post(self, request, pk: int):
        sample = get_object_or_404(Sample, pk=pk)
        try:
            reviews.sample_amend(actor=request.user, sample=sample, reason=request.POST.get("reason", ""))
        except (NotAllowed, ValueError) as exc:
            messages.error(request, str(exc))
            return redirect("sample-detail", pk=sample.pk)
        messages.success(request, "The sample is reopened for amendment; the signed version stays on record.")
        return redirect("sample-review", pk=sample.pk)


def _signature_or_404(sample: Sample, version: int | None):
    signature = rs.signature(sample=sample, version=version)
    if signature is None:
        raise Http404("This sample has no signed result.")
    return signature


class SignedVersionView(RoleRequiredMixin, View):
    allowed_roles = CLINICAL_READERS

    def get(self, request, pk: int, version: int):
        sample = get_object_or_404(Sample.objects.select_related("patient"), pk=pk)
        signature = _signature_or_404(sample, version)
        return render(request, "review/signed_version.html", {"sample": sample, "signature": signature})


class ReportPdfView(RoleRequiredMixin, View):
    allowed_roles = CLINICAL_READERS

    def get(self, request, pk: int):
        sample = get_object_or_404(Sample.objects.select_related("patient"), pk=pk)
        version = request.GET.get("version")
        signature = _signature_or_404(sample, int(version) if version and version.isdigit() else None)
        return downloads.report_pdf_response(actor=request.user, sample=sample, signature=signature)


class FhirView(RoleRequiredMixin, View):
    allowed_roles = CLINICAL_READERS

    def get(self, request, pk: int):
        sample = get_object_or_404(Sample.objects.select_related("patient"), pk=pk)
        signature = _signature_or_404(sample, None)
        return downloads.fhir_response(actor=request.user, sample=sample, signature=signature)


class HeatmapView(RoleRequiredMixin, View):
    allowed_roles = CLINICAL_READERS

    def get(self, request, pk: int):
        image = get_object_or_404(CellImage, pk=pk)
        prediction = image.predictions.order_by("-created_at").first()
        if prediction is None or not prediction.heatmap:
            raise Http404("No heatmap for this image.")
        return downloads.heatmap_response(actor=request.user, prediction=prediction)


class AgreementView(RoleRequiredMixin, View):
    allowed_roles = (Role.DOCTOR, Role.ADMIN)

    def get(self, request):
        return render(
            request, "review/agreement.html",
            {"tables": rs.agreement_by_model_version(), "classes": rs.CLASSES, "finals": [*rs.CLASSES, "EXCLUDED"]},
        )
