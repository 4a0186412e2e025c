"""Serializers: output shapes, and input validation only.

Input serializers never ``save()``: the views pass ``validated_data`` to the services in
``cases.services`` / ``classifier.services``, which do every write.
"""
from __future__ import annotations

from django.urls import reverse
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from cases.models import (
    AuditEvent,
    CellImage,
    Patient,
    Priority,
    Sample,
    Sex,
    SpecimenType,
    Stain,
)
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

    def validate_date_of_birth(self, value):
        if value > timezone.localdate():
            raise serializers.ValidationError("The date of birth cannot be in the future.")
        return value


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

    def validate(self, attrs):
        received = attrs.get("received_at") or timezone.now()
        if attrs["collected_at"] > received:
            raise serializers.ValidationError(
                {"collected_at": "The collection time cannot be after the time the sample was received."}
            )
        return attrs


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
            "id", "predicted_class", "probabilities", "confidence", "unidentified", "model_version",
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


class TokenSerializer(serializers.Serializer):
    token = serializers.CharField()


class ErrorSerializer(serializers.Serializer):
    detail = serializers.CharField()
