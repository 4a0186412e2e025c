"""Serializers: output shapes, and input validation only.

Input serializers never ``save()``: the views pass ``validated_data`` to the services in
``cases.services`` / ``classifier.services``, which do every write.
"""
from __future__ import annotations

from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from cases.cell_classes import FINAL_CLASS_CHOICES
from cases.models import (
    Amendment,
    AuditEvent,
    CellImage,
    Patient,
    Priority,
    Sample,
    SampleStatus,
    Sex,
    Signature,
    SignatureMeaning,
    SpecimenType,
    Stain,
)
from cases.review_selectors import CLASS_LABELS, CLASSES, UNIDENTIFIED
from classifier.models import CELL_CLASSES, ModelVersion, Prediction


def _absolute(request, url: str) -> str:
    return request.build_absolute_uri(url) if request is not None else url


# Patients -------------------------------------------------------------------


class PatientSerializer(serializers.ModelSerializer):
    full_name = serializers.CharField(read_only=True)
    sample_count = serializers.IntegerField(read_only=True, required=False)

    class Meta:
        model = Patient
        fields = [
            "id", "mrn", "family_name", "given_name", "full_name", "date_of_birth", "sex",
            "sample_count", "created_at", "updated_at",
        ]
        read_only_fields = fields


class PatientCreateSerializer(serializers.ModelSerializer):
    sex = serializers.ChoiceField(choices=Sex.choices, default=Sex.UNKNOWN)

    class Meta:
        model = Patient
        fields = ["mrn", "family_name", "given_name", "date_of_birth", "sex"]


# Samples --------------------------------------------------------------------


class SampleSerializer(serializers.ModelSerializer):
    patient_mrn = serializers.CharField(source="patient.mrn", read_only=True)
    patient_name = serializers.CharField(source="patient.full_name", read_only=True)
    image_count = serializers.IntegerField(read_only=True, required=False)
    pending_count = serializers.IntegerField(
        read_only=True, required=False, help_text="Images still queued or being classified"
    )

    class Meta:
        model = Sample
        fields = [
            "id", "accession_number", "patient", "patient_mrn", "patient_name", "collected_at", "received_at",
            "specimen_type", "stain", "priority", "clinical_notes", "wbc_count", "status", "status_changed_at",
            "image_count", "pending_count", "created_at", "updated_at",
        ]
        read_only_fields = fields


class SampleCreateSerializer(serializers.Serializer):
    patient = serializers.PrimaryKeyRelatedField(queryset=Patient.objects.all())
    collected_at = serializers.DateTimeField()
    received_at = serializers.DateTimeField(required=False, allow_null=True, help_text="Defaults to now")
    specimen_type = serializers.ChoiceField(choices=SpecimenType.choices, default=SpecimenType.PERIPHERAL_BLOOD)
    stain = serializers.ChoiceField(choices=Stain.choices, default=Stain.MAY_GRUNWALD_GIEMSA)
    priority = serializers.ChoiceField(choices=Priority.choices, default=Priority.ROUTINE)
    clinical_notes = serializers.CharField(required=False, allow_blank=True, default="", max_length=5000)
    wbc_count = serializers.DecimalField(
        max_digits=6, decimal_places=2, min_value=0, required=False, allow_null=True, default=None,
        help_text="WBC count (×10⁹/L)",
    )


# Images and predictions -----------------------------------------------------


class ModelVersionBriefSerializer(serializers.ModelSerializer):
    class Meta:
        model = ModelVersion
        fields = ["id", "name"]
        read_only_fields = fields


class PredictionSerializer(serializers.ModelSerializer):
    # The values workers store (classifier.models.CELL_CLASSES), e.g. "EOSINOPHIL".
    predicted_class = serializers.ChoiceField(choices=[(c, c.capitalize()) for c in CELL_CLASSES], read_only=True)
    probabilities = serializers.DictField(child=serializers.FloatField(), read_only=True)
    model_version = ModelVersionBriefSerializer(read_only=True)
    heatmap_url = serializers.SerializerMethodField()

    class Meta:
        model = Prediction
        fields = [
            "id", "predicted_class", "probabilities", "confidence", "unidentified", "cell_found", "model_version",
            "heatmap_url", "created_at",
        ]
        read_only_fields = fields

    @extend_schema_field(serializers.URLField(allow_null=True))
    def get_heatmap_url(self, obj: Prediction) -> str | None:
        if not obj.heatmap:
            return None
        return _absolute(self.context.get("request"), reverse("api:prediction-heatmap", args=[obj.pk]))


class CellImageSerializer(serializers.ModelSerializer):
    uploaded_by = serializers.CharField(source="uploaded_by.username", read_only=True)
    file_url = serializers.SerializerMethodField()
    prediction = serializers.SerializerMethodField(help_text="The latest prediction, null until classified")

    class Meta:
        model = CellImage
        fields = [
            "id", "sample", "original_filename", "image_format", "size_bytes", "width", "height", "status",
            "error_message", "attempts", "uploaded_by", "uploaded_at", "file_url", "prediction",
        ]
        read_only_fields = fields

    @extend_schema_field(OpenApiTypes.URI)
    def get_file_url(self, obj: CellImage) -> str:
        return _absolute(self.context.get("request"), reverse("api:image-file", args=[obj.pk]))

    @extend_schema_field(PredictionSerializer(allow_null=True))
    def get_prediction(self, obj: CellImage):
        # Views prefetch predictions newest first into ``latest_predictions``.
        predictions = getattr(obj, "latest_predictions", None)
        if predictions is None:
            predictions = list(obj.predictions.select_related("model_version").order_by("-created_at")[:1])
        if not predictions:
            return None
        return PredictionSerializer(predictions[0], context=self.context).data


@extend_schema_field(OpenApiTypes.BINARY)
class UploadedFileField(serializers.FileField):
    """A file part of a multipart request (``string``/``binary`` in the schema)."""


class ImageUploadSerializer(serializers.Serializer):
    """Only documents the multipart request; files are read from ``request.FILES``."""

    images = serializers.ListField(
        child=UploadedFileField(), help_text="One or more cell images (JPEG, PNG, TIFF or BMP)"
    )


class RejectedFileSerializer(serializers.Serializer):
    file = serializers.CharField(help_text="The file name as uploaded")
    reason = serializers.CharField()


class UploadResultSerializer(serializers.Serializer):
    detail = serializers.CharField(required=False)
    accepted = CellImageSerializer(many=True)
    rejected = RejectedFileSerializer(many=True)


# Doctor review and sign-off ------------------------------------------------

AI_CLASS_CHOICES = [(c, CLASS_LABELS[c]) for c in CLASSES]
GROUP_CHOICES = [(UNIDENTIFIED, "Unidentified (low confidence)"), *AI_CLASS_CHOICES]
WORKLIST_STATUSES = [
    (st.value, st.label)
    for st in (SampleStatus.AWAITING_REVIEW, SampleStatus.AMENDED, SampleStatus.CLASSIFYING, SampleStatus.SIGNED)
]
MAX_VERSION = 2**31 - 1  # PositiveIntegerField's range on every supported database


@extend_schema_field({"type": "string", "pattern": "^(" + "|".join(CLASSES) + ")$"})
class AIClassField(serializers.ChoiceField):
    """One of the AI's four classes. Documented as a pattern: an enum would repeat the predictions'
    ``PredictedClassEnum`` under another name (a drf-spectacular warning, which ``check --deploy`` fails)."""

    def __init__(self, **kwargs):
        super().__init__(choices=AI_CLASS_CHOICES, **kwargs)


class WorklistQuerySerializer(serializers.Serializer):
    status = serializers.MultipleChoiceField(
        choices=WORKLIST_STATUSES, required=False,
        help_text="Repeatable; default: awaiting review and reopened for amendment",
    )
    received_from = serializers.DateField(required=False, help_text="Received on or after this date")
    received_to = serializers.DateField(required=False, help_text="Received on or before this date")


class WorklistItemSerializer(serializers.ModelSerializer):
    patient_mrn = serializers.CharField(source="patient.mrn", read_only=True)
    patient_name = serializers.CharField(source="patient.full_name", read_only=True)
    image_count = serializers.IntegerField(read_only=True)
    classified_count = serializers.IntegerField(read_only=True)
    reviewed_count = serializers.IntegerField(read_only=True)
    unidentified_count = serializers.IntegerField(read_only=True, help_text="Low-confidence cells not yet reviewed")
    review_url = serializers.SerializerMethodField()

    class Meta:
        model = Sample
        fields = [
            "id", "accession_number", "patient", "patient_mrn", "patient_name", "priority", "status",
            "collected_at", "received_at", "wbc_count", "image_count", "classified_count", "reviewed_count",
            "unidentified_count", "review_url",
        ]
        read_only_fields = fields

    @extend_schema_field(OpenApiTypes.URI)
    def get_review_url(self, obj: Sample) -> str:
        return _absolute(self.context.get("request"), reverse("api:sample-review", args=[obj.pk]))


# The differential row has a field called "class" (the shape of ``Differential.as_dict()``).
DifferentialRowSerializer = type(
    "DifferentialRowSerializer",
    (serializers.Serializer,),
    {
        "__doc__": "One cell class: AI vs the doctor's final count and %, absolute count (×10⁹/L) when known.",
        "class": serializers.CharField(help_text="One of " + ", ".join(CLASSES)),
        "label": serializers.CharField(),
        "ai_count": serializers.IntegerField(),
        "ai_percent": serializers.CharField(allow_null=True, help_text="Decimal as a string, e.g. \"50.0\""),
        "final_count": serializers.IntegerField(),
        "final_percent": serializers.CharField(allow_null=True),
        "absolute": serializers.CharField(allow_null=True, help_text="×10⁹/L; null without a WBC count"),
    },
)


class DifferentialSerializer(serializers.Serializer):
    rows = DifferentialRowSerializer(many=True)
    ai_total = serializers.IntegerField()
    final_total = serializers.IntegerField(help_text="Reviewed cells, excluded ones not counted")
    excluded = serializers.IntegerField()
    unreviewed = serializers.IntegerField()
    wbc_count = serializers.CharField(allow_null=True)


class ReviewCellSerializer(serializers.Serializer):
    image_id = serializers.IntegerField()
    original_filename = serializers.CharField()
    file_url = serializers.URLField()
    group = serializers.ChoiceField(choices=GROUP_CHOICES, help_text="The gallery group the cell is shown in")
    ai_class = AIClassField(allow_null=True)
    probabilities = serializers.DictField(child=serializers.FloatField(), allow_null=True)
    confidence = serializers.FloatField(allow_null=True)
    unidentified = serializers.BooleanField(help_text="Predicted below the model's confidence threshold")
    cell_found = serializers.BooleanField(
        allow_null=True,
        help_text="False: no white cell was found and the whole image was classified; "
        "null: the model version does not look for one",
    )
    model_version = serializers.CharField(allow_null=True)
    heatmap_url = serializers.URLField(allow_null=True)
    final_class = serializers.ChoiceField(choices=FINAL_CLASS_CHOICES, allow_null=True)
    comment = serializers.CharField(allow_blank=True)
    reviewed_by = serializers.CharField(allow_null=True, help_text="Printed name of the reviewer")
    reviewed_at = serializers.DateTimeField(allow_null=True)


class ReviewGroupSerializer(serializers.Serializer):
    key = serializers.CharField(help_text="UNIDENTIFIED or an AI class")
    label = serializers.CharField()
    unreviewed = serializers.IntegerField()
    image_ids = serializers.ListField(child=serializers.IntegerField())


class ReviewSerializer(serializers.Serializer):
    sample = SampleSerializer()
    can_edit = serializers.BooleanField(help_text="Awaiting review or reopened for amendment")
    groups = ReviewGroupSerializer(many=True, help_text="Unidentified first, then one group per AI class")
    cells = ReviewCellSerializer(many=True, help_text="In gallery order")
    differential = DifferentialSerializer()
    sign_off_blockers = serializers.ListField(
        child=serializers.CharField(), help_text="Why the caller cannot sign now; empty when sign-off is possible"
    )


class ReviewStateSerializer(serializers.Serializer):
    differential = DifferentialSerializer()
    sign_off_blockers = serializers.ListField(child=serializers.CharField())


class CellReviewRequestSerializer(serializers.Serializer):
    final_class = serializers.ChoiceField(choices=FINAL_CLASS_CHOICES, help_text="EXCLUDED: not counted")
    comment = serializers.CharField(
        required=False, allow_blank=True, max_length=5000, help_text="Omitted: the cell's comment is kept"
    )


class CellReviewResultSerializer(ReviewStateSerializer):
    cell = ReviewCellSerializer()


class GroupConfirmRequestSerializer(serializers.Serializer):
    ai_class = AIClassField(help_text="Never the unidentified group: those cells need one look each")


class GroupConfirmResultSerializer(ReviewStateSerializer):
    confirmed = serializers.IntegerField(help_text="Cells confirmed by this request")


class SampleCommentSerializer(serializers.Serializer):
    comment = serializers.CharField(allow_blank=True, max_length=5000)


class SignRequestSerializer(serializers.Serializer):
    password = serializers.CharField(
        max_length=4096, trim_whitespace=False, style={"input_type": "password"},
        help_text="The signer's password, entered again",
    )
    meaning = serializers.ChoiceField(choices=SignatureMeaning.choices, default=SignatureMeaning.REVIEWED_APPROVED)


class SignBlockedSerializer(serializers.Serializer):
    detail = serializers.CharField()
    sign_off_blockers = serializers.ListField(child=serializers.CharField())


class SignatureSerializer(serializers.ModelSerializer):
    signer = serializers.CharField(source="signer.username", read_only=True)
    is_amendment = serializers.BooleanField(read_only=True)
    snapshot = serializers.JSONField(read_only=True, help_text="The exact result that was signed")
    report_url = serializers.SerializerMethodField(help_text="PDF report of this version")

    class Meta:
        model = Signature
        fields = [
            "id", "sample", "version", "signer", "printed_name", "signed_at", "meaning", "is_amendment",
            "amendment_reason", "snapshot_sha256", "snapshot", "report_url",
        ]
        read_only_fields = fields

    @extend_schema_field(OpenApiTypes.URI)
    def get_report_url(self, obj: Signature) -> str:
        url = reverse("api:sample-report-pdf", args=[obj.sample_id]) + f"?version={obj.version}"
        return _absolute(self.context.get("request"), url)


class AmendRequestSerializer(serializers.Serializer):
    reason = serializers.CharField(max_length=5000, help_text="Why the signed result is reopened (mandatory)")


class AmendmentSerializer(serializers.ModelSerializer):
    requested_by = serializers.CharField(source="requested_by.username", read_only=True)
    previous_version = serializers.IntegerField(source="previous_signature.version", read_only=True)
    sample_status = serializers.CharField(source="sample.status", read_only=True, help_text="Now `amended`")

    class Meta:
        model = Amendment
        fields = ["id", "sample", "reason", "requested_by", "requested_at", "previous_version", "sample_status"]
        read_only_fields = fields


class ReportQuerySerializer(serializers.Serializer):
    version = serializers.IntegerField(
        required=False, min_value=1, max_value=MAX_VERSION, help_text="Signed version; default: the latest"
    )


class AgreementSerializer(serializers.Serializer):
    model_version = serializers.CharField()
    matrix = serializers.DictField(
        child=serializers.DictField(child=serializers.IntegerField()),
        help_text="AI class → final class (EXCLUDED included) → cells",
    )
    per_class = serializers.DictField(
        child=serializers.FloatField(allow_null=True), help_text="Share of an AI class's cells the doctors kept"
    )
    total = serializers.IntegerField()
    agreed = serializers.IntegerField()
    overall = serializers.FloatField(allow_null=True)


# Model versions, audit, tokens ---------------------------------------------


class ModelVersionSerializer(serializers.ModelSerializer):
    class Meta:
        model = ModelVersion
        fields = ["id", "name", "sha256", "metrics", "threshold", "is_active", "created_at"]
        read_only_fields = fields


class ModelVersionActivateSerializer(serializers.Serializer):
    reason = serializers.CharField(required=False, allow_blank=True, default="", max_length=1000)


class AuditEventSerializer(serializers.ModelSerializer):
    class Meta:
        model = AuditEvent
        fields = [
            "id", "timestamp", "actor", "actor_username", "action", "object_type", "object_id", "object_repr",
            "old_values", "new_values", "reason", "ip",
        ]
        read_only_fields = fields


class TokenRequestSerializer(serializers.Serializer):
    username = serializers.CharField(max_length=150)
    password = serializers.CharField(max_length=4096, trim_whitespace=False, style={"input_type": "password"})
    otp = serializers.CharField(
        max_length=32, required=False, allow_blank=True,
        help_text="Users enrolled in two-factor sign-in: the authenticator's code or an unused recovery code",
    )


class TokenSerializer(serializers.Serializer):
    token = serializers.CharField()
    expires_at = serializers.DateTimeField(help_text="After this the token is refused (401): sign in again")


class ErrorSerializer(serializers.Serializer):
    detail = serializers.CharField()
