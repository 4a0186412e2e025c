"""Serializers: output shapes, and input validation only.

Input serializers never ``save()``: the views pass ``validated_data`` to the services
(``cases.services``, ``classifier.services``, ``review.services``), which do every write and own
every rule; a ``ValidationError`` they raise, keyed by field, comes back as a 400 on that field.
"""
from __future__ import annotations

from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from audit.models import AuditEvent
from cases.cell_classes import CELL_CLASS_LABELS, CELL_CLASSES, EXCLUDED, FINAL_CLASS_CHOICES
from cases.models import (
    CellImage,
    CellOrigin,
    Field,
    ImageStatus,
    Patient,
    Priority,
    Sample,
    SampleStatus,
    Sex,
    SpecimenType,
    Stain,
    UploadKind,
)
from classifier.models import ModelVersion, Prediction
from classifier.selectors import latest_prediction
from review.models import Amendment, Signature, SignatureMeaning
from review.selectors import UNIDENTIFIED, field_cells


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
    confirm_duplicate = serializers.BooleanField(
        default=False,
        help_text="A patient with the same name and date of birth is refused (400 on this field) "
        "unless this is true: the caller confirms a different person.",
    )

    class Meta:
        model = Patient
        fields = ["mrn", "family_name", "given_name", "date_of_birth", "sex", "confirm_duplicate"]


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
            "specimen_type", "stain", "priority", "clinical_notes", "wbc_count", "ordering_physician",
            "requesting_ward", "external_accession", "status", "status_changed_at",
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
        max_digits=6, decimal_places=2, required=False, allow_null=True, default=None,
        help_text="WBC count (×10⁹/L): greater than 0, at most 500",
    )
    ordering_physician = serializers.CharField(required=False, allow_blank=True, default="", max_length=200)
    requesting_ward = serializers.CharField(required=False, allow_blank=True, default="", max_length=100)
    external_accession = serializers.CharField(
        required=False, allow_blank=True, default="", max_length=64,
        help_text="The ordering system's accession or barcode number; unique when given",
    )


class SampleUpdateSerializer(serializers.Serializer):
    """The details a technician may correct until the sample is signed; send only those that change."""

    collected_at = serializers.DateTimeField(required=False)
    received_at = serializers.DateTimeField(required=False)
    specimen_type = serializers.ChoiceField(choices=SpecimenType.choices, required=False)
    stain = serializers.ChoiceField(choices=Stain.choices, required=False)
    priority = serializers.ChoiceField(choices=Priority.choices, required=False)
    clinical_notes = serializers.CharField(required=False, allow_blank=True, max_length=5000)
    wbc_count = serializers.DecimalField(
        max_digits=6, decimal_places=2, required=False, allow_null=True,
        help_text="WBC count (×10⁹/L): greater than 0, at most 500",
    )
    ordering_physician = serializers.CharField(required=False, allow_blank=True, max_length=200)
    requesting_ward = serializers.CharField(required=False, allow_blank=True, max_length=100)
    external_accession = serializers.CharField(required=False, allow_blank=True, max_length=64)
    reason = serializers.CharField(
        required=False, allow_blank=True, default="", max_length=500, help_text="Kept in the audit trail"
    )


class SampleCancelSerializer(serializers.Serializer):
    reason = serializers.CharField(max_length=500, help_text="Why the sample is cancelled (required)")


# Images and predictions -----------------------------------------------------


class ModelVersionBriefSerializer(serializers.ModelSerializer):
    class Meta:
        model = ModelVersion
        fields = ["id", "name"]
        read_only_fields = fields


class PredictionSerializer(serializers.ModelSerializer):
    # The values workers store (classifier.models.CELL_CLASSES), e.g. "EOSINOPHIL".
    predicted_class = serializers.ChoiceField(choices=list(CELL_CLASS_LABELS.items()), read_only=True)
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
        prediction = latest_prediction(image=obj)  # prefetched by classifier.selectors.images_with_latest_prediction
        return None if prediction is None else PredictionSerializer(prediction, context=self.context).data


@extend_schema_field(OpenApiTypes.BINARY)
class UploadedFileField(serializers.FileField):
    """A file part of a multipart request (``string``/``binary`` in the schema)."""


class ImageUploadSerializer(serializers.Serializer):
    """Only documents the multipart request; files are read from ``request.FILES``."""

    images = serializers.ListField(
        child=UploadedFileField(), help_text="One or more cell images or whole fields (JPEG, PNG, TIFF or BMP)"
    )
    kind = serializers.ChoiceField(
        choices=UploadKind.choices, required=False, default=UploadKind.AUTO,
        help_text="`cell`, `field`, or `auto` (default): decide each file from its image "
        "(the answer's `decisions` says what was decided and why)",
    )


class RejectedFileSerializer(serializers.Serializer):
    file = serializers.CharField(help_text="The file name as uploaded")
    reason = serializers.CharField()


class UploadDecisionSerializer(serializers.Serializer):
    file = serializers.CharField(source="filename", help_text="The file name as uploaded")
    kind = serializers.ChoiceField(choices=[("cell", "Single cell"), ("field", "Whole field")])
    reason = serializers.CharField(help_text="What the system (or the technician) decided, and why")


class FieldSummarySerializer(serializers.ModelSerializer):
    """A whole field as uploaded; its cells come once the detector has run (``GET /fields/<id>/``)."""

    detail_url = serializers.SerializerMethodField()

    class Meta:
        model = Field
        fields = ["id", "sample", "original_filename", "image_format", "width", "height", "decision", "status",
                  "detail_url"]
        read_only_fields = fields

    @extend_schema_field(OpenApiTypes.URI)
    def get_detail_url(self, obj: Field) -> str:
        return _absolute(self.context.get("request"), reverse("api:field-detail", args=[obj.pk]))


class UploadResultSerializer(serializers.Serializer):
    detail = serializers.CharField(required=False)
    accepted = CellImageSerializer(many=True, help_text="Single-cell images, queued for classification")
    fields = FieldSummarySerializer(many=True, help_text="Whole fields, queued for white-cell detection")
    decisions = UploadDecisionSerializer(many=True, help_text="For each accepted file: cell or field, and why")
    rejected = RejectedFileSerializer(many=True)


# Doctor review and sign-off ------------------------------------------------

AI_CLASS_CHOICES = list(CELL_CLASS_LABELS.items())
GROUP_CHOICES = [(UNIDENTIFIED, "Unidentified (low confidence)"), *AI_CLASS_CHOICES, (EXCLUDED, "Excluded")]
WORKLIST_STATUSES = [
    (st.value, st.label)
    for st in (SampleStatus.AWAITING_REVIEW, SampleStatus.AMENDED, SampleStatus.CLASSIFYING, SampleStatus.SIGNED)
]
MAX_VERSION = 2**31 - 1  # PositiveIntegerField's range on every supported database


@extend_schema_field({"type": "string", "pattern": "^(" + "|".join(CELL_CLASSES) + ")$"})
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
        "class": serializers.CharField(help_text="One of " + ", ".join(CELL_CLASSES)),
        "label": serializers.CharField(),
        "ai_count": serializers.IntegerField(),
        "ai_percent": serializers.CharField(allow_null=True, help_text="Decimal as a string, e.g. \"50.0\""),
        "final_count": serializers.IntegerField(),
        "final_percent": serializers.CharField(allow_null=True),
        "absolute": serializers.CharField(allow_null=True, help_text="×10⁹/L; null without a WBC count"),
        "percent_low": serializers.CharField(allow_null=True, help_text="Reference range (adults), %"),
        "percent_high": serializers.CharField(allow_null=True),
        "absolute_low": serializers.CharField(allow_null=True, help_text="Reference range (adults), ×10⁹/L"),
        "absolute_high": serializers.CharField(allow_null=True),
        "percent_flag": serializers.CharField(allow_blank=True, help_text="\"H\" above, \"L\" below the range, "
                                                                          "\"\" inside it or without one"),
        "absolute_flag": serializers.CharField(allow_blank=True, help_text="As percent_flag, for the absolute count"),
    },
)


class DifferentialSerializer(serializers.Serializer):
    rows = DifferentialRowSerializer(many=True)
    ai_total = serializers.IntegerField()
    final_total = serializers.IntegerField(help_text="Reviewed cells, excluded ones not counted")
    excluded = serializers.IntegerField()
    unreviewed = serializers.IntegerField()
    wbc_count = serializers.CharField(allow_null=True)
    reference_sources = serializers.ListField(child=serializers.CharField(), help_text="Where the ranges come from")


class MinimumCountSerializer(serializers.Serializer):
    required = serializers.IntegerField(help_text="The lab's minimum of counted cells (HV_MIN_CELLS_FOR_SIGNOFF)")
    counted = serializers.IntegerField()
    shortfall = serializers.CharField(allow_blank=True, help_text="Empty when enough cells are counted")


class ReviewCellSerializer(serializers.Serializer):
    """One cell under review (a ``review.selectors.CellRow``): its one shape, for API clients and the review page."""

    image_id = serializers.IntegerField(source="image.pk")
    original_filename = serializers.CharField(source="image.original_filename")
    file_url = serializers.SerializerMethodField()
    group = serializers.ChoiceField(choices=GROUP_CHOICES, help_text="The gallery group the cell is shown in")
    ai_class = AIClassField(allow_null=True)
    probabilities = serializers.DictField(
        source="prediction.probabilities", child=serializers.FloatField(), allow_null=True
    )
    confidence = serializers.FloatField(source="prediction.confidence", allow_null=True)
    unidentified = serializers.BooleanField(help_text="Predicted below the model's confidence threshold")
    cell_found = serializers.BooleanField(
        source="prediction.cell_found",
        allow_null=True,
        help_text="False: no white cell was found and the whole image was classified; "
        "null: the model version does not look for one",
    )
    model_version = serializers.CharField(source="prediction.model_version.name", allow_null=True)
    heatmap_url = serializers.SerializerMethodField()
    final_class = serializers.ChoiceField(choices=FINAL_CLASS_CHOICES, allow_null=True)
    reclassified = serializers.BooleanField(help_text="The doctor's class differs from the AI's")
    comment = serializers.CharField(allow_blank=True)
    reviewed_by = serializers.CharField(allow_null=True, help_text="Printed name of the reviewer")
    reviewed_at = serializers.DateTimeField(source="review.reviewed_at", allow_null=True)

    @extend_schema_field(OpenApiTypes.URI)
    def get_file_url(self, row) -> str:
        return _absolute(self.context.get("request"), reverse("api:image-file", args=[row.image.pk]))

    @extend_schema_field(serializers.URLField(allow_null=True))
    def get_heatmap_url(self, row) -> str | None:
        if row.prediction is None or not row.prediction.heatmap:
            return None
        return _absolute(self.context.get("request"), reverse("api:prediction-heatmap", args=[row.prediction.pk]))


class ReviewGroupSerializer(serializers.Serializer):
    key = serializers.CharField(help_text="UNIDENTIFIED or an AI class")
    label = serializers.CharField()
    unreviewed = serializers.IntegerField()
    image_ids = serializers.ListField(child=serializers.IntegerField())


class ReviewSerializer(serializers.Serializer):
    sample = SampleSerializer()
    can_edit = serializers.BooleanField(help_text="Awaiting review or reopened for amendment")
    sample_comment = serializers.CharField(allow_blank=True, help_text="The doctor's comment on the sample")
    groups = ReviewGroupSerializer(many=True, help_text="Unidentified first, then one group per AI class")
    cells = ReviewCellSerializer(many=True, help_text="In gallery order")
    differential = DifferentialSerializer()
    sign_off_blockers = serializers.ListField(
        child=serializers.CharField(), help_text="Why the caller cannot sign now; empty when sign-off is possible"
    )
    result_sha256 = serializers.CharField(help_text="Hash of the result as it would be signed now")
    minimum_count = MinimumCountSerializer()


class ReviewStateSerializer(serializers.Serializer):
    differential = DifferentialSerializer()
    sign_off_blockers = serializers.ListField(child=serializers.CharField())
    result_sha256 = serializers.CharField(help_text="Hash of the result as it would be signed now; send it to sign")
    minimum_count = MinimumCountSerializer()


class CellReviewRequestSerializer(serializers.Serializer):
    final_class = serializers.ChoiceField(
        choices=FINAL_CLASS_CHOICES, required=False, help_text="EXCLUDED: not counted; omitted: only the comment"
    )
    comment = serializers.CharField(
        required=False, allow_blank=True, max_length=5000, help_text="Omitted: the cell's comment is kept"
    )

    def validate(self, attrs):
        if "final_class" not in attrs and "comment" not in attrs:
            raise serializers.ValidationError({"final_class": "Give final_class, comment, or both."})
        return attrs


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
    result_sha256 = serializers.RegexField(
        r"^[0-9a-f]{64}$", required=False,
        help_text="The result_sha256 of the review state the signer saw; a different result is refused (409)",
    )
    count_override_reason = serializers.CharField(
        required=False, allow_blank=True, max_length=2000,
        help_text="Why the sample is signed with fewer cells than the lab's minimum (printed on the report)",
    )


class SignBlockedSerializer(serializers.Serializer):
    detail = serializers.CharField()
    sign_off_blockers = serializers.ListField(
        child=serializers.CharField(),
        required=False,
        help_text="What blocks sign-off; absent when the 409 is for another reason (the result changed, the state)",
    )


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
    served = serializers.BooleanField(
        default=True, help_text="False: the version's predictions made in shadow, never shown to a reviewer"
    )


# Model versions, audit, tokens ---------------------------------------------


class ModelVersionSerializer(serializers.ModelSerializer):
    class Meta:
        model = ModelVersion
        fields = ["id", "name", "sha256", "metrics", "threshold", "is_active", "is_shadow", "created_at"]
        read_only_fields = fields


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


# Whole fields ---------------------------------------------------------------


class FieldCellSerializer(serializers.Serializer):
    """One cell cut from a field (a ``review.selectors.CellRow``): its box, where it came from, the
    AI's class and the doctor's verdict; rejected detections included, flagged."""

    image_id = serializers.IntegerField(source="image.pk")
    original_filename = serializers.CharField(source="image.original_filename")
    origin = serializers.ChoiceField(source="image.origin", choices=CellOrigin.choices)
    box = serializers.ListField(
        source="image.box", child=serializers.IntegerField(),
        help_text="x0, y0, x1, y1 in field pixels (x1, y1 exclusive)",
    )
    touches_edge = serializers.BooleanField(source="image.touches_edge", help_text="The field's edge cuts the cell")
    detection_score = serializers.FloatField(source="image.detection_score", allow_null=True)
    status = serializers.ChoiceField(source="image.status", choices=ImageStatus.choices)
    ai_class = AIClassField(allow_null=True)
    confidence = serializers.FloatField(source="prediction.confidence", allow_null=True)
    final_class = serializers.ChoiceField(choices=FINAL_CLASS_CHOICES, allow_null=True)
    rejected = serializers.BooleanField(source="image.is_rejected", help_text="A doctor rejected it: not a white cell")
    rejected_by = serializers.CharField(source="image.rejected_by.username", allow_null=True, default=None)
    rejected_at = serializers.DateTimeField(source="image.rejected_at", allow_null=True)
    rejection_reason = serializers.CharField(source="image.rejection_reason", allow_blank=True)
    added_by = serializers.CharField(source="image.added_by.username", allow_null=True, default=None)
    file_url = serializers.SerializerMethodField()

    @extend_schema_field(OpenApiTypes.URI)
    def get_file_url(self, row) -> str:
        return _absolute(self.context.get("request"), reverse("api:image-file", args=[row.image.pk]))


class FieldSerializer(serializers.ModelSerializer):
    uploaded_by = serializers.CharField(source="uploaded_by.username", read_only=True)
    rbc_count = serializers.IntegerField(read_only=True, allow_null=True, help_text="Red cells in the field (estimate)")
    platelet_count = serializers.IntegerField(
        read_only=True, allow_null=True, help_text="Platelets in the field (estimate)"
    )
    file_url = serializers.SerializerMethodField()
    cells = serializers.SerializerMethodField(help_text="Every cell cut from the field, rejected ones included")

    class Meta:
        model = Field
        fields = [
            "id", "sample", "original_filename", "image_format", "size_bytes", "width", "height", "decision",
            "status", "error_message", "attempts", "detector", "white_cells_found", "rbc_count", "platelet_count",
            "detection_ms", "uploaded_by", "uploaded_at", "detected_at", "file_url", "cells",
        ]
        read_only_fields = fields

    @extend_schema_field(OpenApiTypes.URI)
    def get_file_url(self, obj: Field) -> str:
        return _absolute(self.context.get("request"), reverse("api:field-file", args=[obj.pk]))

    @extend_schema_field(FieldCellSerializer(many=True))
    def get_cells(self, obj: Field):
        return FieldCellSerializer(field_cells(field=obj), many=True, context=self.context).data


class FieldCellAddSerializer(serializers.Serializer):
    box = serializers.ListField(
        child=serializers.FloatField(), min_length=4, max_length=4,
        help_text="x0, y0, x1, y1 in field pixels: the box around the missed white cell",
    )


class FieldCellRejectSerializer(serializers.Serializer):
    reason = serializers.CharField(required=False, allow_blank=True, default="", max_length=500)


class DetectionAgreementSerializer(serializers.Serializer):
    detector = serializers.CharField()
    period = serializers.DateField(help_text="First day of the month the fields were uploaded")
    fields = serializers.IntegerField()
    detected = serializers.IntegerField(help_text="White cells the detector found")
    rejected = serializers.IntegerField(help_text="Detections doctors rejected (false positives)")
    added = serializers.IntegerField(help_text="White cells doctors added (misses)")
    precision = serializers.FloatField(allow_null=True, help_text="Share of detections kept")
    recall = serializers.FloatField(allow_null=True, help_text="Share of the white cells the detector found")
