"""REST API views: authenticate, check the role, parse input, call a service or selector.

Every write goes through the services of ``accounts``, ``cases``, ``classifier`` and ``review``;
errors they raise are mapped to HTTP statuses once, by ``api.exceptions.api_exception_handler``.
"""
from __future__ import annotations

import json

from axes.helpers import get_cool_off
from django.contrib.auth import authenticate, user_logged_in, user_logged_out
from django.http import JsonResponse
from django.shortcuts import get_object_or_404
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import generics, status
from rest_framework.pagination import PageNumberPagination
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import APIView

from accounts import selectors as account_selectors
from accounts import services as account_services
from audit.selectors import audit_events
from cases import downloads, selectors, services
from cases.models import CellImage, Sample, UploadKind
from classifier import selectors as classifier_selectors
from classifier.downloads import heatmap_response
from classifier.models import ModelVersion, Prediction

from . import serializers as s
from .authentication import token_expires_at
from .exceptions import api_exception_handler
from .filters import AuditEventFilter, PatientFilter, SampleFilter
from .parsers import JSONParser
from .permissions import TECHNICIAN_WRITES, IsAdmin, IsClinicalStaff, IsDoctor, IsTechnician
from .services import api_token_issue, api_tokens_revoke
from .throttling import HVScopedRateThrottle

ERRORS = {
    401: OpenApiResponse(s.ErrorSerializer, description="Not signed in"),
    403: OpenApiResponse(s.ErrorSerializer, description="Signed in, but the role does not allow this"),
}
UNSUPPORTED = {415: OpenApiResponse(s.ErrorSerializer, description="Unsupported or malformed request body type")}
INVALID_INPUT = {
    400: OpenApiResponse(OpenApiTypes.OBJECT, description="Invalid input (field → messages)"),
    **UNSUPPORTED,
}
NOT_FOUND = {404: OpenApiResponse(s.ErrorSerializer, description="No such record")}
LIST_ERRORS = {
    400: OpenApiResponse(OpenApiTypes.OBJECT, description="Invalid filter value (field → messages)"),
    404: OpenApiResponse(s.ErrorSerializer, description="No such page"),
    **ERRORS,
}


class Pagination(PageNumberPagination):
    page_size_query_param = "page_size"
    max_page_size = 200


class APIBase:
    # Defaults of every API view (no docstring: it would become every operation's description).
    # REST_FRAMEWORK's list (expiring token first, so anonymous requests get 401 with
    # WWW-Authenticate); named here because api/urls.py hands it to the schema views too.

    authentication_classes = api_settings.DEFAULT_AUTHENTICATION_CLASSES
    pagination_class = Pagination

    def get_exception_handler(self):
        return api_exception_handler


class BinaryRenderer(BaseRenderer):
    """Lets clients ask for ``image/*``; errors are still written as JSON."""

    media_type = "image/*"
    format = "image"
    charset = None
    render_style = "binary"

    def render(self, data, accepted_media_type=None, renderer_context=None):
        if data is None:
            return b""
        return json.dumps(data).encode()


# Auth -----------------------------------------------------------------------


@extend_schema(
    tags=["auth"],
    summary="Obtain an API token with username, password and (two-factor users) a one-time code",
    description=(
        "Failed sign-ins are counted per username and per client IP (`HV_LOGIN_FAILURE_LIMIT`, "
        "`HV_LOGIN_IP_FAILURE_LIMIT`); past either limit the sign-in is locked (429). Rate limited (scope "
        "`api-login`). A user enrolled in two-factor sign-in also sends `otp`: the 6-digit code of the "
        "authenticator app or an unused recovery code; a wrong or missing code is a failed sign-in (400, the "
        "same answer as a wrong password). With `HV_REQUIRE_2FA` on, doctors and admins not yet enrolled get 403 "
        "until they enrol on the web page. Each sign-in issues a new token (the previous one stops working). Send "
        "it as `Authorization: Token <token>`. It expires at `expires_at` (`HV_API_TOKEN_TTL_HOURS` after it was "
        "issued), and is revoked when the password changes or the user signs out of the web page."
    ),
    request=s.TokenRequestSerializer,
    responses={
        200: s.TokenSerializer,
        400: OpenApiResponse(
            OpenApiTypes.OBJECT, description="Wrong username, password or one-time code, or missing fields"
        ),
        403: OpenApiResponse(s.ErrorSerializer, description="Two-factor enrolment required first (web page)"),
        **UNSUPPORTED,
        429: OpenApiResponse(s.ErrorSerializer, description="Locked out after failures, or rate limited"),
    },
    auth=[],
)
class ObtainTokenView(APIBase, APIView):
    authentication_classes = []
    permission_classes = [AllowAny]
    parser_classes = [JSONParser, FormParser, MultiPartParser]
    throttle_classes = [HVScopedRateThrottle]
    throttle_scope = "api-login"

    def post(self, request):
        data = s.TokenRequestSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        django_request = request._request  # axes flags lockouts on the Django request
        user = authenticate(
            request=django_request,
            username=data.validated_data["username"],
            password=data.validated_data["password"],
        )
        if user is not None and user.is_active and account_selectors.two_factor_enrolled(user=user):
            device = account_services.sign_in_second_factor(
                request=django_request, user=user, token=data.validated_data.get("otp", "")
            )
            user = user if device is not None else None
        if getattr(django_request, "axes_locked_out", False):
            django_request.axes_locked_out = False  # answered here in JSON, not by AxesMiddleware's page
            cool_off = get_cool_off(django_request)
            return Response(
                {"detail": "Too many failed sign-ins: the account is locked for now. Try later or ask an admin."},
                status=status.HTTP_429_TOO_MANY_REQUESTS,
                headers={"Retry-After": str(int(cool_off.total_seconds()))} if cool_off else None,
            )
        if user is None or not user.is_active:
            return Response(
                {"detail": "Unable to sign in with the given username, password and one-time code."},
                status=status.HTTP_400_BAD_REQUEST,
            )
        if account_selectors.two_factor_required(user=user) and not account_selectors.two_factor_enrolled(user=user):
            return Response(
                {"detail": "Two-factor sign-in is required for your role: enrol on the web page first."},
                status=status.HTTP_403_FORBIDDEN,
            )
        token = api_token_issue(user=user)
        # Audited as a sign-in; the lockout clears this username's failures.
        user_logged_in.send(sender=type(user), request=django_request, user=user)
        return Response({"token": token.key, "expires_at": token_expires_at(token)})


@extend_schema(
    tags=["auth"],
    summary="Revoke the caller's API token (sign out of the API)",
    request=None,
    responses={204: OpenApiResponse(description="Token deleted; a new sign-in issues a new one"), **ERRORS},
)
class RevokeTokenView(APIBase, APIView):
    permission_classes = [IsAuthenticated]

    def post(self, request):
        if api_tokens_revoke(user=request.user):
            user_logged_out.send(sender=type(request.user), request=request._request, user=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)


# Patients -------------------------------------------------------------------


@extend_schema(tags=["patients"])
class PatientListCreateView(APIBase, generics.ListAPIView):
    permission_classes = [TECHNICIAN_WRITES]
    serializer_class = s.PatientSerializer
    filterset_class = PatientFilter

    def get_queryset(self):
        return selectors.patient_search()

    @extend_schema(
        summary="List and search patients", responses={200: s.PatientSerializer(many=True), **LIST_ERRORS}
    )
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    @extend_schema(
        summary="Register a patient (technician)",
        request=s.PatientCreateSerializer,
        responses={201: s.PatientSerializer, **INVALID_INPUT, **ERRORS},
    )
    def post(self, request):
        data = s.PatientCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        patient = services.patient_create(actor=request.user, **data.validated_data)
        patient = self.get_queryset().get(pk=patient.pk)
        return Response(s.PatientSerializer(patient, context=self.get_serializer_context()).data, status=201)


@extend_schema(tags=["patients"], summary="One patient", responses={200: s.PatientSerializer, **ERRORS, **NOT_FOUND})
class PatientDetailView(APIBase, generics.RetrieveAPIView):
    permission_classes = [IsClinicalStaff]
    serializer_class = s.PatientSerializer

    def get_queryset(self):
        return selectors.patient_search()


# Samples --------------------------------------------------------------------


@extend_schema(tags=["samples"])
class SampleListCreateView(APIBase, generics.ListAPIView):
    permission_classes = [TECHNICIAN_WRITES]
    serializer_class = s.SampleSerializer
    filterset_class = SampleFilter

    def get_queryset(self):
        return selectors.sample_list()

    @extend_schema(
        summary="List samples, filtered by status, priority, patient, dates",
        responses={200: s.SampleSerializer(many=True), **LIST_ERRORS},
    )
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    @extend_schema(
        summary="Register a sample (technician)",
        request=s.SampleCreateSerializer,
        responses={201: s.SampleSerializer, **INVALID_INPUT, **ERRORS},
    )
    def post(self, request):
        data = s.SampleCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        sample = services.sample_create(actor=request.user, **data.validated_data)
        sample = self.get_queryset().get(pk=sample.pk)
        return Response(s.SampleSerializer(sample, context=self.get_serializer_context()).data, status=201)


CONFLICT = {409: OpenApiResponse(s.ErrorSerializer, description="The sample's status does not allow this")}


@extend_schema(tags=["samples"])
class SampleDetailView(APIBase, generics.RetrieveAPIView):
    permission_classes = [TECHNICIAN_WRITES]
    serializer_class = s.SampleSerializer

    def get_queryset(self):
        return selectors.sample_list()

    @extend_schema(summary="One sample", responses={200: s.SampleSerializer, **ERRORS, **NOT_FOUND})
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    @extend_schema(
        summary="Correct a sample's details (technician, until it is signed; audited with the reason)",
        request=s.SampleUpdateSerializer,
        responses={200: s.SampleSerializer, **INVALID_INPUT, **ERRORS, **NOT_FOUND, **CONFLICT},
    )
    def patch(self, request, pk: int):
        sample = get_object_or_404(Sample, pk=pk)
        data = s.SampleUpdateSerializer(data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        changes = dict(data.validated_data)
        reason = changes.pop("reason", "")
        services.sample_update(actor=request.user, sample=sample, reason=reason, **changes)
        sample = self.get_queryset().get(pk=pk)
        return Response(s.SampleSerializer(sample, context=self.get_serializer_context()).data)


@extend_schema(
    tags=["samples"],
    summary="Cancel a sample, with a reason (technician or doctor; not once signed)",
    request=s.SampleCancelSerializer,
    responses={200: s.SampleSerializer, **INVALID_INPUT, **ERRORS, **NOT_FOUND, **CONFLICT},
)
class SampleCancelView(APIBase, APIView):
    permission_classes = [IsTechnician | IsDoctor]

    def post(self, request, pk: int):
        sample = get_object_or_404(Sample, pk=pk)
        data = s.SampleCancelSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        services.sample_cancel(actor=request.user, sample=sample, reason=data.validated_data["reason"])
        sample = selectors.sample_list().get(pk=pk)
        return Response(s.SampleSerializer(sample, context={"request": request}).data)


# Images ---------------------------------------------------------------------


@extend_schema(tags=["images"])
class SampleImagesView(APIBase, generics.ListAPIView):
    permission_classes = [TECHNICIAN_WRITES]
    serializer_class = s.CellImageSerializer
    parser_classes = [MultiPartParser]
    throttle_scope = "api-upload"
    filter_backends = []

    def get_throttles(self):
        return [HVScopedRateThrottle()] if self.request.method == "POST" else []

    def get_sample(self) -> Sample:
        return get_object_or_404(Sample, pk=self.kwargs["pk"])

    def get_queryset(self):
        return classifier_selectors.images_with_latest_prediction(selectors.sample_images(sample=self.get_sample()))

    @extend_schema(
        summary="Images of a sample with their latest prediction",
        responses={200: s.CellImageSerializer(many=True), **LIST_ERRORS},
    )
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    @extend_schema(
        summary="Upload cell images or whole fields (technician; multipart, field `images`, many files)",
        description=(
            "Each file is decoded (its name and MIME type are ignored) and accepted or rejected on its own. "
            "201 when at least one file was accepted, 400 when none was; every rejection names the file "
            "and the reason. `kind` says what the files are: `cell`, `field`, or `auto` (the default) to decide "
            "each from its image; `decisions` says for each accepted file what it was taken for and why. "
            "Single-cell images (`accepted`) are queued for classification; whole fields (`fields`) for "
            "white-cell detection, after which each cell found is classified (`GET /fields/<id>/`). "
            "Rate limited (scope `api-upload`). "
            "A request over `HV_MAX_UPLOAD_REQUEST_BYTES` (all files together) is refused with 413 before it is read."
        ),
        request={"multipart/form-data": s.ImageUploadSerializer},
        responses={
            201: s.UploadResultSerializer,
            400: OpenApiResponse(s.UploadResultSerializer, description="No file was accepted"),
            **UNSUPPORTED,
            **ERRORS,
            **NOT_FOUND,
            413: OpenApiResponse(s.ErrorSerializer, description="The request is over the per-request upload limit"),
            429: OpenApiResponse(s.ErrorSerializer, description="Rate limited"),
        },
    )
    def post(self, request, pk: int):
        sample = self.get_sample()
        files = request.FILES.getlist("images")
        if not files:
            detail = "Choose at least one image file (multipart field 'images')."
            body = {"detail": detail, "accepted": [], "fields": [], "decisions": [], "rejected": []}
            return Response(body, status=status.HTTP_400_BAD_REQUEST)
        kind = request.data.get("kind") or UploadKind.AUTO
        result = services.images_upload(
            actor=request.user, sample=sample, files=((f.name, f) for f in files), kind=kind
        )
        context = self.get_serializer_context()
        body = {
            "accepted": s.CellImageSerializer(result.accepted, many=True, context=context).data,
            "fields": s.FieldSummarySerializer(result.fields, many=True, context=context).data,
            "decisions": s.UploadDecisionSerializer(result.decisions, many=True).data,
            "rejected": [{"file": r.filename, "reason": r.reason} for r in result.rejected],
        }
        if not result.accepted and not result.fields:
            body = {"detail": "No image was accepted.", **body}
            return Response(body, status=status.HTTP_400_BAD_REQUEST)
        return Response(body, status=status.HTTP_201_CREATED)


@extend_schema(
    tags=["images"],
    summary="Download the image file (streamed; access checked and audited)",
    responses={(200, "image/*"): OpenApiTypes.BINARY, **ERRORS, **NOT_FOUND},
)
class ImageFileView(APIBase, APIView):
    permission_classes = [IsClinicalStaff]
    renderer_classes = [JSONRenderer, BinaryRenderer]

    def get(self, request, pk: int):
        return downloads.image_file_response(actor=request.user, image=get_object_or_404(CellImage, pk=pk))


@extend_schema(
    tags=["images"],
    summary="Download a prediction's Grad-CAM heatmap (PNG)",
    responses={(200, "image/png"): OpenApiTypes.BINARY, **ERRORS, **NOT_FOUND},
)
class PredictionHeatmapView(APIBase, APIView):
    permission_classes = [IsClinicalStaff]
    renderer_classes = [JSONRenderer, BinaryRenderer]

    def get(self, request, pk: int):
        return heatmap_response(actor=request.user, prediction=get_object_or_404(Prediction, pk=pk))


# Model versions -------------------------------------------------------------


@extend_schema(
    tags=["model versions"],
    summary="Registered model versions",
    responses={200: s.ModelVersionSerializer(many=True), **LIST_ERRORS},
)
class ModelVersionListView(APIBase, generics.ListAPIView):
    permission_classes = [IsClinicalStaff]
    serializer_class = s.ModelVersionSerializer
    queryset = ModelVersion.objects.order_by("-created_at", "-pk")
    filter_backends = []


# Audit ----------------------------------------------------------------------


@extend_schema(
    tags=["audit"],
    summary="The audit trail (admin), filterable",
    responses={200: s.AuditEventSerializer(many=True), **LIST_ERRORS},
)
class AuditEventListView(APIBase, generics.ListAPIView):
    permission_classes = [IsAdmin]
    serializer_class = s.AuditEventSerializer
    filterset_class = AuditEventFilter

    def get_queryset(self):
        return audit_events()



@csrf_exempt  # it writes nothing; a CSRF 403 page would hide the JSON 404
def not_found(request, *args, **kwargs):
    """Any other path under /api/v1/: a JSON 404, never Django's HTML page."""
    return JsonResponse({"detail": "Not found."}, status=404)
