from __future__ import annotations

import uuid
from pathlib import PurePosixPath

from django.conf import settings
from django.db import models
from django.utils import timezone

from audit.services import register as audit_register


class Sex(models.TextChoices):
    FEMALE = "F", "Female"
    MALE = "M", "Male"
    OTHER = "O", "Other"
    UNKNOWN = "U", "Unknown"


class Patient(models.Model):
    mrn = models.CharField("MRN", max_length=32, unique=True, help_text="Medical record number")
    family_name = models.CharField(max_length=100)
    given_name = models.CharField(max_length=100)
    date_of_birth = models.DateField()
    sex = models.CharField(max_length=1, choices=Sex.choices, default=Sex.UNKNOWN)
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+", null=True, blank=True
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["family_name", "given_name"]
        indexes = [models.Index(fields=["family_name", "given_name"])]

    @property
    def full_name(self) -> str:
        return f"{self.family_name.upper()}, {self.given_name}"

    def __str__(self) -> str:
        return f"{self.full_name} ({self.mrn})"


class SampleStatus(models.TextChoices):
    REGISTERED = "registered", "Registered"
    IMAGES_UPLOADED = "images_uploaded", "Images uploaded"
    CLASSIFYING = "classifying", "Classifying"
    AWAITING_REVIEW = "awaiting_review", "Awaiting review"
    SIGNED = "signed", "Signed"
    AMENDED = "amended", "Reopened for amendment"
    CANCELLED = "cancelled", "Cancelled"


S = SampleStatus
# The only status changes a sample may make; anything else is refused by the service.
ALLOWED_TRANSITIONS: dict[str, frozenset[str]] = {
    S.REGISTERED: frozenset({S.IMAGES_UPLOADED, S.CANCELLED}),
    S.IMAGES_UPLOADED: frozenset({S.CLASSIFYING, S.CANCELLED}),
    S.CLASSIFYING: frozenset({S.AWAITING_REVIEW, S.CANCELLED}),
    S.AWAITING_REVIEW: frozenset({S.CLASSIFYING, S.SIGNED, S.CANCELLED}),
    S.SIGNED: frozenset({S.AMENDED}),
    S.AMENDED: frozenset({S.CLASSIFYING, S.SIGNED}),
    S.CANCELLED: frozenset(),
}
# Statuses in which new images may be added to a sample.
UPLOAD_OPEN_STATUSES = frozenset({S.REGISTERED, S.IMAGES_UPLOADED, S.CLASSIFYING, S.AWAITING_REVIEW, S.AMENDED})
# Statuses in which a technician may correct the sample's details: until it is first signed.
EDITABLE_STATUSES = frozenset({S.REGISTERED, S.IMAGES_UPLOADED, S.CLASSIFYING, S.AWAITING_REVIEW})


class SpecimenType(models.TextChoices):
    PERIPHERAL_BLOOD = "peripheral_blood", "Peripheral blood smear"
    BONE_MARROW = "bone_marrow", "Bone marrow aspirate"
    BODY_FLUID = "body_fluid", "Body fluid cytospin"


class Stain(models.TextChoices):
    MAY_GRUNWALD_GIEMSA = "mgg", "May-Grünwald-Giemsa"
    WRIGHT_GIEMSA = "wright_giemsa", "Wright-Giemsa"
    WRIGHT = "wright", "Wright"
    GIEMSA = "giemsa", "Giemsa"


class Priority(models.TextChoices):
    ROUTINE = "routine", "Routine"
    STAT = "stat", "STAT"


class AccessionCounter(models.Model):
    """Per-year counter behind human-readable accession numbers (HV-2026-000001)."""

    year = models.PositiveIntegerField(primary_key=True)
    last_value = models.PositiveIntegerField(default=0)

    def __str__(self) -> str:
        return f"{self.year}: {self.last_value}"


class Sample(models.Model):
    accession_number = models.CharField(max_length=32, unique=True, editable=False)
    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="samples")
    collected_at = models.DateTimeField()
    received_at = models.DateTimeField(default=timezone.now)
    specimen_type = models.CharField(
        max_length=32, choices=SpecimenType.choices, default=SpecimenType.PERIPHERAL_BLOOD
    )
    stain = models.CharField(max_length=32, choices=Stain.choices, default=Stain.MAY_GRUNWALD_GIEMSA)
    priority = models.CharField(max_length=16, choices=Priority.choices, default=Priority.ROUTINE)
    clinical_notes = models.TextField(blank=True)
    # The plausible range is a rule of ``cases.services`` (WBC_COUNT_MIN/MAX); the check constraint
    # below keeps any other writer to it too.
    wbc_count = models.DecimalField("WBC count (×10⁹/L)", max_digits=6, decimal_places=2, null=True, blank=True)
    ordering_physician = models.CharField(max_length=200, blank=True)
    requesting_ward = models.CharField(max_length=100, blank=True)
    external_accession = models.CharField(
        "external accession / barcode number", max_length=64, blank=True,
        help_text="The number on the tube from the ordering system, if any; unique when given",
    )
    review_comment = models.TextField(blank=True, help_text="The reviewing doctor's comment on the sample")
    status = models.CharField(max_length=32, choices=SampleStatus.choices, default=SampleStatus.REGISTERED)
    status_changed_at = models.DateTimeField(default=timezone.now)
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+", null=True, blank=True
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-received_at"]
        permissions = [
            ("review_sample", "Can review the classified cells of a sample"),
            ("sign_sample", "Can sign a sample off electronically"),
        ]
        indexes = [models.Index(fields=["status", "priority", "received_at"])]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(wbc_count__isnull=True) | models.Q(wbc_count__gt=0, wbc_count__lte=500),
                name="sample_wbc_count_plausible",
            ),
            models.UniqueConstraint(
                fields=["external_accession"], condition=~models.Q(external_accession=""),
                name="unique_external_accession",
            ),
        ]

    def __str__(self) -> str:
        return self.accession_number

    @property
    def is_stat(self) -> bool:
        return self.priority == Priority.STAT

    @property
    def accepts_uploads(self) -> bool:
        return self.status in UPLOAD_OPEN_STATUSES

    @property
    def is_editable(self) -> bool:
        return self.status in EDITABLE_STATUSES

    @property
    def can_be_cancelled(self) -> bool:
        return SampleStatus.CANCELLED in ALLOWED_TRANSITIONS[self.status]


class ImageStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    CLASSIFYING = "classifying", "Classifying"
    CLASSIFIED = "classified", "Classified"
    FAILED = "failed", "Failed"


def cell_image_path(instance: CellImage, filename: str) -> str:
    # Random names: never the user's file name, never guessable; kept outside the static root.
    suffix = PurePosixPath(filename).suffix.lower()[:8]
    return f"cells/{timezone.now():%Y/%m}/{uuid.uuid4().hex}{suffix}"


class UploadKind(models.TextChoices):
    """What an uploaded file is: the technician says, or the system decides from the image."""

    AUTO = "auto", "Decide from the image"
    CELL = "cell", "Single-cell image"
    FIELD = "field", "Whole microscope field"


class FieldStatus(models.TextChoices):
    RECEIVED = "received", "Waiting for detection"
    DETECTING = "detecting", "Detecting white cells"
    DETECTED = "detected", "Detected"
    FAILED = "failed", "Failed"


# Field statuses that still hold the sample in "classifying" (the detector has not answered yet).
FIELD_PENDING_STATUSES = (FieldStatus.RECEIVED, FieldStatus.DETECTING)


def field_image_path(instance: Field, filename: str) -> str:
    suffix = PurePosixPath(filename).suffix.lower()[:8]
    return f"fields/{timezone.now():%Y/%m}/{uuid.uuid4().hex}{suffix}"


class Field(models.Model):
    """One microscope field uploaded whole: the detector finds its white cells (each becomes a
    ``CellImage`` cut from it) and estimates its red cells and platelets. A field without white
    cells is kept and counted."""

    sample = models.ForeignKey(Sample, on_delete=models.PROTECT, related_name="fields")
    file = models.FileField(upload_to=field_image_path)
    original_filename = models.CharField(max_length=255)
    image_format = models.CharField(max_length=16, help_text="Format found by decoding, e.g. JPEG")
    sha256 = models.CharField(max_length=64, db_index=True)
    size_bytes = models.PositiveIntegerField()
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    uploaded_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    uploaded_at = models.DateTimeField(auto_now_add=True)
    decision = models.CharField(max_length=300, blank=True, help_text="Why the upload was taken as a field")
    status = models.CharField(max_length=16, choices=FieldStatus.choices, default=FieldStatus.RECEIVED)
    status_changed_at = models.DateTimeField(default=timezone.now)
    error_message = models.TextField(blank=True)
    attempts = models.PositiveIntegerField(default=0)
    detector = models.CharField(max_length=64, blank=True, help_text="The detector that analysed the field")
    white_cells_found = models.PositiveIntegerField(null=True, blank=True)
    rbc_count = models.PositiveIntegerField("red cells (estimate)", null=True, blank=True)
    platelet_count = models.PositiveIntegerField("platelets (estimate)", null=True, blank=True)
    detection_ms = models.FloatField(null=True, blank=True)
    detected_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["uploaded_at", "pk"]
        constraints = [models.UniqueConstraint(fields=["sample", "sha256"], name="unique_field_per_sample")]
        indexes = [models.Index(fields=["status", "status_changed_at"])]

    def __str__(self) -> str:
        return f"{self.sample_id}/{self.original_filename} (field)"

    @property
    def is_pending(self) -> bool:
        return self.status in FIELD_PENDING_STATUSES


class CellOrigin(models.TextChoices):
    UPLOADED = "uploaded", "Uploaded as a single cell"
    DETECTED = "detected", "Found in a field by the detector"
    ADDED = "added", "Added on a field by a doctor"


class CellImage(models.Model):
    sample = models.ForeignKey(Sample, on_delete=models.PROTECT, related_name="images")
    file = models.FileField(upload_to=cell_image_path)
    original_filename = models.CharField(max_length=255)
    image_format = models.CharField(max_length=16, help_text="Format found by decoding, e.g. JPEG")
    sha256 = models.CharField(max_length=64, db_index=True)
    size_bytes = models.PositiveIntegerField()
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    uploaded_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    uploaded_at = models.DateTimeField(auto_now_add=True)
    status = models.CharField(max_length=16, choices=ImageStatus.choices, default=ImageStatus.QUEUED)
    status_changed_at = models.DateTimeField(default=timezone.now)
    error_message = models.TextField(blank=True)
    attempts = models.PositiveIntegerField(default=0)
    # Provenance of a cell cut from a field: the field and the box (field pixels, x1/y1 exclusive).
    origin = models.CharField(max_length=16, choices=CellOrigin.choices, default=CellOrigin.UPLOADED)
    field = models.ForeignKey(Field, on_delete=models.PROTECT, related_name="cells", null=True, blank=True)
    box_x0 = models.PositiveIntegerField(null=True, blank=True)
    box_y0 = models.PositiveIntegerField(null=True, blank=True)
    box_x1 = models.PositiveIntegerField(null=True, blank=True)
    box_y1 = models.PositiveIntegerField(null=True, blank=True)
    touches_edge = models.BooleanField(default=False, help_text="The field's edge cuts the cell")
    detection_score = models.FloatField(null=True, blank=True)
    added_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+", null=True, blank=True,
        help_text="The doctor who drew the box of a missed cell",
    )
    # A detection a doctor rejected (not a white cell): kept, out of the differential.
    rejected_at = models.DateTimeField(null=True, blank=True)
    rejected_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+", null=True, blank=True
    )
    rejection_reason = models.TextField(blank=True)

    class Meta:
        ordering = ["uploaded_at", "pk"]
        constraints = [
            models.UniqueConstraint(fields=["sample", "sha256"], name="unique_image_per_sample"),
            models.UniqueConstraint(
                fields=["field", "box_x0", "box_y0", "box_x1", "box_y1"], name="unique_box_per_field"
            ),
            models.CheckConstraint(
                condition=(
                    models.Q(origin=CellOrigin.UPLOADED, field__isnull=True, box_x0__isnull=True)
                    | (
                        ~models.Q(origin=CellOrigin.UPLOADED)
                        & models.Q(field__isnull=False, box_x0__isnull=False, box_y0__isnull=False,
                                   box_x1__isnull=False, box_y1__isnull=False)
                    )
                ),
                name="cell_from_field_has_box",
            ),
        ]
        indexes = [models.Index(fields=["status", "status_changed_at"])]

    def __str__(self) -> str:
        return f"{self.sample_id}/{self.original_filename}"

    @property
    def box(self) -> tuple[int, int, int, int] | None:
        if self.field_id is None:
            return None
        return (self.box_x0, self.box_y0, self.box_x1, self.box_y1)

    @property
    def box_width(self) -> int | None:
        return None if self.field_id is None else self.box_x1 - self.box_x0

    @property
    def box_height(self) -> int | None:
        return None if self.field_id is None else self.box_y1 - self.box_y0

    @property
    def is_rejected(self) -> bool:
        return self.rejected_at is not None


for _model in (Patient, Sample, Field, CellImage):
    audit_register(_model)
