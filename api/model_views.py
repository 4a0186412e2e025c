"""REST API of the models fitted to this lab: candidate runs, comparison, shadow, signed activation.

Doctors and admins read; only admins start and cancel runs, set the shadow model and activate.
Every write is one ``classifier.adaptation`` call; its refusals are mapped by ``api.exceptions``.
"""
from __future__ import annotations

from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import generics, serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.lockout import request_ip
from classifier import adaptation
from classifier import selectors as classifier_selectors
from classifier.models import CandidateRun, ModelActivation, ModelVersion

from . import serializers as s
from .permissions import IsAdmin, IsDoctor, ReadOnly
from .views import ERRORS, INVALID_INPUT, LIST_ERRORS, NOT_FOUND, APIBase

# Doctors and admins read the evidence; admins act on it.
MODEL_READERS = IsDoctor | IsAdmin
CONFLICT = {409: OpenApiResponse(s.ErrorSerializer, description="The run or version is not in a state that allows it")}


class CandidateRunSerializer(serializers.ModelSerializer):
    status_label = serializers.CharField(source="get_status_display", read_only=True)
    started_by = serializers.CharField(source="started_by.get_printed_name", read_only=True)
    base_version = s.ModelVersionBriefSerializer(read_only=True)
    result_version = s.ModelVersionBriefSerializer(read_only=True, allow_null=True)
    progress = serializers.DictField(
        read_only=True, help_text="stage (queued, starting, activations, training, calibrating, saving, done), "
        "done/total cells, epoch/epochs, loss, elapsed_s, eta_s (seconds left)",
    )

    class Meta:
        model = CandidateRun
        fields = [
            "id", "status", "status_label", "started_by", "created_at", "started_at", "finished_at", "base_version",
            "result_version", "cell_counts", "holdout_sample_ids", "progress", "failure_reason",
        ]
        read_only_fields = fields


class ModelActivationSerializer(serializers.ModelSerializer):
    version = s.ModelVersionBriefSerializer(read_only=True)
    previous_version = s.ModelVersionBriefSerializer(read_only=True, allow_null=True)

    class Meta:
        model = ModelActivation
        fields = [
            "id", "kind", "version", "previous_version", "activated_by", "printed_name", "activated_at", "reason",
            "comparison", "signed_sha256",
        ]
        read_only_fields = fields


class ShadowSerializer(serializers.Serializer):
    shadow = serializers.BooleanField(help_text="true: classify new images in shadow; false: stop")


class SignedActivationSerializer(serializers.Serializer):
    password = serializers.CharField(max_length=4096, trim_whitespace=False, style={"input_type": "password"})
    reason = serializers.CharField(max_length=1000)


@extend_schema(tags=["model versions"])
class CandidateRunListView(APIBase, generics.ListAPIView):
    permission_classes = [(ReadOnly & MODEL_READERS) | IsAdmin]
    serializer_class = CandidateRunSerializer
    filter_backends = []

    def get_queryset(self):
        return classifier_selectors.candidate_runs()

    @extend_schema(
        summary="Candidate runs, newest first (doctor, admin)",
        responses={200: CandidateRunSerializer(many=True), **LIST_ERRORS},
    )
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    @extend_schema(
        summary="Train a candidate from this lab's confirmed cells (admin; audited)",
        description="Refused with 400 on `cells` while a class has fewer confirmed cells than the floor "
        "(`HV_ADAPT_MIN_CELLS_PER_CLASS`), saying how many more each needs; 409 while another run is unfinished.",
        request=None,
        responses={201: CandidateRunSerializer, **INVALID_INPUT, **ERRORS, **CONFLICT},
    )
    def post(self, request):
        run = adaptation.candidate_run_start(actor=request.user)
        return Response(CandidateRunSerializer(run).data, status=status.HTTP_201_CREATED)


@extend_schema(
    tags=["model versions"],
    summary="One candidate run with its live progress (doctor, admin)",
    responses={200: CandidateRunSerializer, **ERRORS, **NOT_FOUND},
)
class CandidateRunDetailView(APIBase, generics.RetrieveAPIView):
    permission_classes = [MODEL_READERS]
    serializer_class = CandidateRunSerializer

    def get_queryset(self):
        return classifier_selectors.candidate_runs()


@extend_schema(
    tags=["model versions"],
    summary="Cancel a queued or running candidate run (admin; audited)",
    request=None,
    responses={200: CandidateRunSerializer, **ERRORS, **NOT_FOUND, **CONFLICT},
)
class CandidateRunCancelView(APIBase, APIView):
    permission_classes = [IsAdmin]

    def post(self, request, pk: int):
        run = adaptation.candidate_run_cancel(actor=request.user, run=get_object_or_404(CandidateRun, pk=pk))
        return Response(CandidateRunSerializer(run).data)


@extend_schema(
    tags=["model versions"],
    summary="A version beside the model active when it was trained, on the held-out samples (doctor, admin)",
    description="Per-class recall, balanced accuracy, flagged fraction, accuracy of unflagged cells and the cells "
    "where they disagree; for a version not trained in the app, the metrics of its card.",
    responses={200: OpenApiTypes.OBJECT, **ERRORS, **NOT_FOUND},
)
class ModelVersionComparisonView(APIBase, APIView):
    permission_classes = [MODEL_READERS]

    def get(self, request, pk: int):
        version = get_object_or_404(classifier_selectors.model_versions(), pk=pk)
        return Response({"version": s.ModelVersionBriefSerializer(version).data,
                         "comparison": adaptation.comparison_of(version)})


@extend_schema(
    tags=["model versions"],
    summary="Run a version in shadow, or stop (admin; audited)",
    request=ShadowSerializer,
    responses={200: s.ModelVersionSerializer, **INVALID_INPUT, **ERRORS, **NOT_FOUND, **CONFLICT},
)
class ModelVersionShadowView(APIBase, APIView):
    permission_classes = [IsAdmin]

    def post(self, request, pk: int):
        version = get_object_or_404(ModelVersion, pk=pk)
        data = ShadowSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        if data.validated_data["shadow"]:
            version = adaptation.model_version_shadow_set(actor=request.user, version=version)
        else:
            version = adaptation.model_version_shadow_clear(actor=request.user, version=version)
        return Response(s.ModelVersionSerializer(version).data)


@extend_schema(
    tags=["model versions"],
    summary="Activate a model version, or roll back to one, as a signed decision (admin; audited)",
    description="Needs the admin's password (counted like a sign-in, as at sign-off) and a reason. Records who, "
    "when, the version replaced and the comparison the decision was based on.",
    request=SignedActivationSerializer,
    responses={200: ModelActivationSerializer, **INVALID_INPUT, **ERRORS, **NOT_FOUND, **CONFLICT},
)
class ModelVersionActivateView(APIBase, APIView):
    permission_classes = [IsAdmin]

    def post(self, request, pk: int):
        version = get_object_or_404(ModelVersion, pk=pk)
        data = SignedActivationSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            activation = adaptation.model_version_activate_signed(
                actor=request.user, version=version, password=data.validated_data["password"],
                reason=data.validated_data["reason"], ip_address=request_ip(request._request),
            )
        except adaptation.WrongPassword as exc:
            # Answered here rather than raised: the exception handler would roll the request back, and the
            # failed attempt's audit event (``model_activation_failed``) must stay. A 400 on the field.
            return Response({"detail": str(exc), "password": [str(exc)]}, status=status.HTTP_400_BAD_REQUEST)
        return Response(ModelActivationSerializer(activation).data)


@extend_schema(
    tags=["model versions"],
    summary="Signed activations and rollbacks, newest first (doctor, admin)",
    responses={200: ModelActivationSerializer(many=True), **LIST_ERRORS},
)
class ModelActivationListView(APIBase, generics.ListAPIView):
    permission_classes = [MODEL_READERS]
    serializer_class = ModelActivationSerializer
    filter_backends = []

    def get_queryset(self):
        return classifier_selectors.model_activations()

