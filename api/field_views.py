"""REST API of whole fields: the fields of a sample with their detections, a field's image, a doctor
adding a white cell the detector missed or rejecting a detection, and the detection agreement.

Like ``api.views``: authenticate, check the role, parse input, then call ``review.services`` (writes)
or ``review.selectors`` (reads). Uploading a field is ``POST /samples/<id>/images/`` with
``kind=field`` (or ``auto``). Clinical staff read; doctors add and reject (409 unless the sample is
awaiting review or reopened); doctors and admins read the agreement. The field page's script calls
these endpoints with the page's session and CSRF token.
"""
from __future__ import annotations

from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import generics, status
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView

from cases import downloads
from cases.models import CellImage, Field, Sample
from review import selectors as rs
from review import services as reviews

from . import serializers as s
from .permissions import IsAdmin, IsClinicalStaff, IsDoctor
from .review_views import CONFLICT
from .views import ERRORS, INVALID_INPUT, LIST_ERRORS, NOT_FOUND, APIBase, BinaryRenderer


def _cell_row(field: Field, image_pk: int) -> rs.CellRow:
    return next(r for r in rs.field_cells(field=field) if r.image.pk == image_pk)


@extend_schema(
    tags=["fields"],
    summary="Whole fields of a sample, each with its detections and its red-cell and platelet estimates",
    responses={200: s.FieldSerializer(many=True), **LIST_ERRORS},
)
class SampleFieldsView(APIBase, generics.ListAPIView):
    permission_classes = [IsClinicalStaff]
    serializer_class = s.FieldSerializer
    filter_backends = []

    def get_queryset(self):
        return rs.sample_fields(sample=get_object_or_404(Sample, pk=self.kwargs["pk"]))


@extend_schema(
    tags=["fields"],
    summary="One whole field with every detection (boxes, origin, edge flag, AI class, verdict, rejection)",
    responses={200: s.FieldSerializer, **ERRORS, **NOT_FOUND},
)
class FieldDetailView(APIBase, generics.RetrieveAPIView):
    permission_classes = [IsClinicalStaff]
    serializer_class = s.FieldSerializer

    def get_queryset(self):
        return Field.objects.select_related("uploaded_by")


@extend_schema(
    tags=["fields"],
    summary="Download the field image (streamed; access checked and audited)",
    responses={(200, "image/*"): OpenApiTypes.BINARY, **ERRORS, **NOT_FOUND},
)
class FieldFileView(APIBase, APIView):
    permission_classes = [IsClinicalStaff]
    renderer_classes = [JSONRenderer, BinaryRenderer]

    def get(self, request, pk: int):
        return downloads.field_file_response(actor=request.user, field=get_object_or_404(Field, pk=pk))


@extend_schema(
    tags=["fields"],
    summary="Add a white cell the detector missed (doctor; audited)",
    description=(
        "The box (field pixels) is cut from the field like a detection and queued for classification; the "
        "sample goes back to `classifying` until it is classified, and sign-off waits for its review like any "
        "cell's. 400 for a box off the field or under 8 px a side, or one giving the same crop as an existing "
        "cell; 409 unless the sample is awaiting review or reopened for amendment."
    ),
    request=s.FieldCellAddSerializer,
    responses={201: s.FieldCellSerializer, **INVALID_INPUT, **ERRORS, **NOT_FOUND, **CONFLICT},
)
class FieldCellAddView(APIBase, APIView):
    permission_classes = [IsDoctor]

    def post(self, request, pk: int):
        field = get_object_or_404(Field, pk=pk)
        data = s.FieldCellAddSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        image = reviews.field_cell_add(actor=request.user, field=field, box=data.validated_data["box"])
        row = _cell_row(field, image.pk)
        return Response(s.FieldCellSerializer(row, context={"request": request}).data, status=status.HTTP_201_CREATED)


class FieldCellRejectView(APIBase, APIView):
    permission_classes = [IsDoctor]

    def _cell(self, pk: int, image_pk: int) -> tuple[Field, CellImage]:
        field = get_object_or_404(Field, pk=pk)
        return field, get_object_or_404(CellImage, pk=image_pk, field=field)  # the cell must come from the field

    @extend_schema(
        tags=["fields"],
        summary="Reject a detection that is not a white cell (doctor; audited)",
        description=(
            "The cell is kept, with who rejected it, when and why, and leaves the differential and the "
            "sign-off count. 409 when it is already rejected or the sample is not awaiting review / reopened."
        ),
        request=s.FieldCellRejectSerializer,
        responses={200: s.FieldCellSerializer, **INVALID_INPUT, **ERRORS, **NOT_FOUND, **CONFLICT},
    )
    def post(self, request, pk: int, image_pk: int):
        field, image = self._cell(pk, image_pk)
        data = s.FieldCellRejectSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        reviews.field_cell_reject(actor=request.user, image=image, reason=data.validated_data["reason"])
        return Response(s.FieldCellSerializer(_cell_row(field, image.pk), context={"request": request}).data)

    @extend_schema(
        tags=["fields"],
        summary="Withdraw a rejection: the cell counts again (doctor; audited)",
        request=None,
        responses={200: s.FieldCellSerializer, **ERRORS, **NOT_FOUND, **CONFLICT},
    )
    def delete(self, request, pk: int, image_pk: int):
        field, image = self._cell(pk, image_pk)
        reviews.field_cell_restore(actor=request.user, image=image)
        return Response(s.FieldCellSerializer(_cell_row(field, image.pk), context={"request": request}).data)


@extend_schema(
    tags=["review"],
    summary="The white-cell detector vs doctors over signed samples, per detector and month (doctor, admin)",
    description="Detected, rejected by doctors (false positives) and added by doctors (misses).",
    responses={200: s.DetectionAgreementSerializer(many=True), **ERRORS},
)
class DetectionAgreementView(APIBase, APIView):
    permission_classes = [IsDoctor | IsAdmin]
    pagination_class = None

    def get(self, request):
        return Response(s.DetectionAgreementSerializer(rs.detection_agreement(), many=True).data)

