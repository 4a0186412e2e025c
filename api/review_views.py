"""REST API of the doctor's work: worklist, review, sign-off, amendments, reports, agreement.

Like ``api.views``: authenticate, check the role, parse input, then call ``review.services``
(writes), ``review.selectors`` (reads) or ``review.reports``. The roles mirror the pages of
``review.views``: doctors review, sign and amend; clinical staff read signed reports; doctors and
admins read the agreement statistics. The review page's keyboard review calls these endpoints.

Status codes come from ``api.exceptions``: ``InvalidState`` (the sample is signed and locked, not
reviewable, an image not classified) is a 409. Sign-off answers 409 with ``sign_off_blockers`` when
the sample cannot be signed yet (whatever the password), else 400 when the password is wrong or
locked out.
"""
from __future__ import annotations

from django.conf import settings
from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import generics, status
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.lockout import request_ip
from cases import selectors
from cases.models import CellImage, Sample
from review import selectors as rs
from review import services as reviews
from review.reports import fhir_response, report_pdf_response

from . import serializers as s
from .permissions import IsAdmin, IsClinicalStaff, IsDoctor
from .throttling import HVScopedRateThrottle
from .views import ERRORS, INVALID_INPUT, LIST_ERRORS, NOT_FOUND, UNSUPPORTED, APIBase

CONFLICT = {409: OpenApiResponse(s.ErrorSerializer, description="The sample's state does not allow this change")}
QUERY_ERRORS = {400: OpenApiResponse(OpenApiTypes.OBJECT, description="Invalid query parameter (field → messages)")}


class PdfRenderer(BaseRenderer):
    """Lets clients ask for ``application/pdf``; errors are still written as JSON."""

    media_type = "application/pdf"
    format = "pdf"
    charset = None
    render_style = "binary"

    def render(self, data, accepted_media_type=None, renderer_context=None):
        return b"" if data is None else JSONRenderer().render(data)


class FhirJSONRenderer(JSONRenderer):
    media_type = "application/fhir+json"
    format = "fhir"


def _sample_or_404(pk: int) -> Sample:
    return get_object_or_404(Sample.objects.select_related("patient"), pk=pk)


def _state(sample: Sample, request, rows: list[rs.CellRow] | None = None) -> dict:
    """The differential, the sign-off blockers and the hash of the result as it would be signed now
    (what the review page refreshes after a change, and sends back with the signature)."""
    rows = rs.review_cells(sample=sample) if rows is None else rows
    snapshot = rs.result_snapshot(sample=sample, rows=rows)
    counted = snapshot["differential"]["final_total"]
    return {
        "differential": snapshot["differential"],
        "sign_off_blockers": reviews.sign_off_blockers(sample=sample, actor=request.user),
        "result_sha256": rs.result_sha256(snapshot),
        "minimum_count": {"required": settings.HV_MIN_CELLS_FOR_SIGNOFF, "counted": counted,
                          "shortfall": reviews.minimum_count_shortfall(
                              counted=counted, unreviewed=snapshot["differential"]["unreviewed"])},
    }


# Worklist -------------------------------------------------------------------


@extend_schema(
    tags=["review"],
    summary="Doctor's worklist: samples awaiting review or reopened, STAT first, then the oldest",
    parameters=[s.WorklistQuerySerializer],
    responses={200: s.WorklistItemSerializer(many=True), **LIST_ERRORS},
)
class WorklistView(APIBase, generics.ListAPIView):
    permission_classes = [IsDoctor]
    serializer_class = s.WorklistItemSerializer
    filter_backends = []

    def get_queryset(self):
        query = s.WorklistQuerySerializer(data=self.request.query_params)
        query.is_valid(raise_exception=True)
        data = query.validated_data
        return rs.worklist(
            statuses=sorted(data.get("status") or ()) or None,
            received_from=data.get("received_from"),
            received_to=data.get("received_to"),
        )


# Review ---------------------------------------------------------------------


@extend_schema(
    tags=["review"],
    summary="Review state of a sample (doctor): cells by gallery group, differential, sign-off blockers",
    responses={200: s.ReviewSerializer, **ERRORS, **NOT_FOUND},
)
class SampleReviewView(APIBase, APIView):
    permission_classes = [IsDoctor]

    def get(self, request, pk: int):
        sample = get_object_or_404(selectors.sample_list(), pk=pk)
        rows = rs.review_cells(sample=sample)
        groups = rs.review_groups(rows=rows)
        body = {
            "sample": sample,
            "can_edit": sample.status in rs.REVIEWABLE_STATUSES,
            "sample_comment": sample.review_comment,
            "groups": [
                {"key": g.key, "label": g.label, "unreviewed": g.unreviewed, "image_ids": [c.image.pk for c in g.cells]}
                for g in groups
            ],
            "cells": [row for g in groups for row in g.cells],
            **_state(sample, request, rows),
        }
        return Response(s.ReviewSerializer(body, context={"request": request}).data)


@extend_schema(
    tags=["review"],
    summary="Confirm or reclassify one cell (doctor; audited)",
    description=(
        "`final_class` is one of the classes or `EXCLUDED` (not counted). A `comment` replaces the cell's "
        "comment; omitted, it is kept. A `comment` without `final_class` changes only the comment of a reviewed "
        "cell (400 on `comment` for an unreviewed one). Answers the cell, the new differential and the result's "
        "hash. 409 when the sample is not awaiting review / reopened, or the image is not classified."
    ),
    request=s.CellReviewRequestSerializer,
    responses={200: s.CellReviewResultSerializer, **INVALID_INPUT, **ERRORS, **NOT_FOUND, **CONFLICT},
)
class CellReviewView(APIBase, APIView):
    permission_classes = [IsDoctor]

    def post(self, request, pk: int, image_pk: int):
        sample = _sample_or_404(pk)
        image = get_object_or_404(CellImage, pk=image_pk, sample=sample)  # the image must belong to the sample
        data = s.CellReviewRequestSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        if "final_class" in data.validated_data:
            reviews.cell_review(
                actor=request.user, image=image, final_class=data.validated_data["final_class"],
                comment=data.validated_data.get("comment"),
            )
        else:  # a comment alone: the cell's class and review status stay
            reviews.cell_comment_set(actor=request.user, image=image, comment=data.validated_data["comment"])
        rows = rs.review_cells(sample=sample)
        row = next(r for r in rows if r.image.pk == image.pk)
        body = {"cell": row, **_state(sample, request, rows)}
        return Response(s.CellReviewResultSerializer(body, context={"request": request}).data)


@extend_schema(
    tags=["review"],
    summary="Confirm the AI class of every unreviewed cell of one class group (doctor)",
    description="Never the unidentified group: low-confidence cells need one look each.",
    request=s.GroupConfirmRequestSerializer,
    responses={200: s.GroupConfirmResultSerializer, **INVALID_INPUT, **ERRORS, **NOT_FOUND, **CONFLICT},
)
class GroupConfirmView(APIBase, APIView):
    permission_classes = [IsDoctor]

    def post(self, request, pk: int):
        sample = _sample_or_404(pk)
        data = s.GroupConfirmRequestSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        count = reviews.group_confirm(actor=request.user, sample=sample, ai_class=data.validated_data["ai_class"])
        return Response(s.GroupConfirmResultSerializer({"confirmed": count, **_state(sample, request)}).data)


@extend_schema(
    tags=["review"],
    summary="Set the sample's review comment (doctor; empty clears it)",
    request=s.SampleCommentSerializer,
    responses={200: s.SampleCommentSerializer, **INVALID_INPUT, **ERRORS, **NOT_FOUND, **CONFLICT},
)
class SampleCommentView(APIBase, APIView):
    permission_classes = [IsDoctor]

    def put(self, request, pk: int):
        sample = _sample_or_404(pk)
        data = s.SampleCommentSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        sample = reviews.sample_comment_set(actor=request.user, sample=sample, comment=data.validated_data["comment"])
        return Response({"comment": sample.review_comment})


# Sign-off and amendments ----------------------------------------------------


@extend_schema(
    tags=["review"],
    summary="Sign the sample electronically (doctor; password re-entered)",
    description=(
        "Re-authenticates with the password and records the printed name, time, meaning and a snapshot of "
        "the signed result (sha256); the sample is then locked. **409** with `sign_off_blockers` while cells are "
        "unreviewed or unidentified, the caller uploaded images of the sample (four-eyes) or the sample is not "
        "awaiting review; checked first, so this answer does not depend on the password. **409** too when "
        "`result_sha256` is given and the result changed since (reload and check it). **400** on "
        "`count_override_reason` when fewer cells than the lab's minimum were counted and no reason is given. "
        "**400** when the password is wrong or password entry is locked out (one answer for both; audited as "
        "`signature_failed`, "
        "counted as a failed sign-in of the doctor's username). Rate limited per user (scope `api-sign`)."
    ),
    request=s.SignRequestSerializer,
    responses={
        201: s.SignatureSerializer,
        400: OpenApiResponse(OpenApiTypes.OBJECT, description="Wrong password, or invalid input (field → messages)"),
        **UNSUPPORTED,
        **ERRORS,
        **NOT_FOUND,
        409: OpenApiResponse(
            s.SignBlockedSerializer, description="Sign-off is blocked (the reasons are listed), or the result changed"
        ),
        429: OpenApiResponse(s.ErrorSerializer, description="Rate limited"),
    },
)
class SampleSignView(APIBase, APIView):
    permission_classes = [IsDoctor]
    throttle_classes = [HVScopedRateThrottle]
    throttle_scope = "api-sign"

    def post(self, request, pk: int):
        sample = _sample_or_404(pk)
        data = s.SignRequestSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        password = data.validated_data["password"]
        try:
            signature = reviews.sample_sign(
                actor=request.user, sample=sample, password=password, meaning=data.validated_data["meaning"],
                ip_address=request_ip(request._request), result_sha256=data.validated_data.get("result_sha256"),
                count_override_reason=data.validated_data.get("count_override_reason", ""),
            )
        except reviews.WrongPassword as exc:
            # Answered here rather than raised: the exception handler would roll the request back, and the
            # failed attempt's audit event (``signature_failed``) must stay. A 400 on the field.
            return Response({"detail": str(exc), "password": [str(exc)]}, status=status.HTTP_400_BAD_REQUEST)
        except reviews.SignOffBlocked as exc:
            blockers = reviews.sign_off_blockers(sample=sample, actor=request.user)
            body = {"detail": str(exc), "sign_off_blockers": blockers}
            return Response(body, status=status.HTTP_409_CONFLICT)
        signature = rs.signatures(sample=sample).get(pk=signature.pk)
        return Response(s.SignatureSerializer(signature, context={"request": request}).data, status=201)


@extend_schema(
    tags=["review"],
    summary="Reopen a signed sample for amendment (doctor; reason required)",
    description="The signed versions stay readable; a new signature is needed. 409 unless the sample is signed.",
    request=s.AmendRequestSerializer,
    responses={201: s.AmendmentSerializer, **INVALID_INPUT, **ERRORS, **NOT_FOUND, **CONFLICT},
)
class SampleAmendView(APIBase, APIView):
    permission_classes = [IsDoctor]

    def post(self, request, pk: int):
        sample = _sample_or_404(pk)
        data = s.AmendRequestSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        amendment = reviews.sample_amend(actor=request.user, sample=sample, reason=data.validated_data["reason"])
        return Response(s.AmendmentSerializer(amendment).data, status=status.HTTP_201_CREATED)


# Signed results and reports -------------------------------------------------


@extend_schema(
    tags=["review"],
    summary="Signed versions of a sample, oldest first, each with the exact result signed",
    responses={200: s.SignatureSerializer(many=True), **LIST_ERRORS},
)
class SampleSignaturesView(APIBase, generics.ListAPIView):
    permission_classes = [IsClinicalStaff]
    serializer_class = s.SignatureSerializer
    filter_backends = []

    def get_queryset(self):
        return rs.signatures(sample=get_object_or_404(Sample, pk=self.kwargs["pk"]))


@extend_schema(
    tags=["review"],
    summary="PDF report of a signed version (default: the latest; audited)",
    parameters=[s.ReportQuerySerializer],
    responses={(200, "application/pdf"): OpenApiTypes.BINARY, **QUERY_ERRORS, **ERRORS, **NOT_FOUND},
)
class SampleReportPdfView(APIBase, APIView):
    permission_classes = [IsClinicalStaff]
    renderer_classes = [JSONRenderer, PdfRenderer]

    def get(self, request, pk: int):
        sample = _sample_or_404(pk)
        query = s.ReportQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        signature = rs.signature_or_404(sample=sample, version=query.validated_data.get("version"))
        return report_pdf_response(actor=request.user, sample=sample, signature=signature)


@extend_schema(
    tags=["review"],
    summary="FHIR R4 Bundle (DiagnosticReport + Observations) of the latest signed version (audited)",
    responses={(200, "application/fhir+json"): OpenApiTypes.OBJECT, **ERRORS, **NOT_FOUND},
)
class SampleFhirView(APIBase, APIView):
    permission_classes = [IsClinicalStaff]
    renderer_classes = [JSONRenderer, FhirJSONRenderer]

    def get(self, request, pk: int):
        sample = _sample_or_404(pk)
        signature = rs.signature_or_404(sample=sample, version=None)
        return fhir_response(actor=request.user, sample=sample, signature=signature)


# Agreement ------------------------------------------------------------------


@extend_schema(
    tags=["review"],
    summary="AI vs doctors over signed samples, per model version (doctor, admin)",
    responses={200: s.AgreementSerializer(many=True), **ERRORS},
)
class AgreementView(APIBase, APIView):
    permission_classes = [IsDoctor | IsAdmin]
    pagination_class = None  # one table per model version

    def get(self, request):
        tables = [
            {"model_version": t.model_version, "matrix": t.matrix, "per_class": t.per_class, "total": t.total,
             "agreed": t.agreed, "overall": t.overall, "served": t.served}
            for t in rs.agreement_by_model_version()
        ]
        return Response(s.AgreementSerializer(tables, many=True).data)

