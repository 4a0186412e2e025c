from __future__ import annotations

import uuid
from pathlib import PurePosixPath

from django.conf import settings
from django.core.validators import MinValueValidator
from django.db import models, router, transaction
from django.utils import timezone

from . import audit
from .cell_classes import FINAL_CLASS_CHOICES


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
    wbc_count = models.DecimalField(
        "WBC count (×10⁹/L)",
        max_digits=6,
        decimal_places=2,
        null=True,
        blank=True,
        validators=[MinValueValidator(0)],
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

    def __str__(self) -> str:
        return self.accession_number

    @property
    def is_stat(self) -> bool:
        return self.priority == Priority.STAT

    @property
    def accepts_uploads(self) -> bool:
        return self.status in UPLOAD_OPEN_STATUSES


class ImageStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    CLASSIFYING = "classifying", "Classifying"
    CLASSIFIED = "classified", "Classified"
    FAILED = "failed", "Failed"


def cell_image_path(instance: CellImage, filename: str) -> str:
    # Random names: never the user's file name, never guessable; kept outside the static root.
    suffix = PurePosixPath(filename).suffix.lower()[:8]
    return f"cells/{timezone.now():%Y/%m}/{uuid.uuid4().hex}{suffix}"


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

    class Meta:
        ordering = ["uploaded_at", "pk"]
        constraints = [
            models.UniqueConstraint(fields=["sample", "sha256"], name="unique_image_per_sample"),
        ]
        indexes = [models.Index(fields=["status", "status_changed_at"])]

    def __str__(self) -> str:
        return f"{self.sample_id}/{self.original_filename}"


class AppendOnlyQuerySet(models.QuerySet):
    def _refuse(self, verb: str):
        raise PermissionError(f"{self.model._meta.verbose_name_plural} are append-only: rows cannot be {verb}.")

    def update(self, **kwargs):
        self._refuse("updated")

    def bulk_update(self, *args, **kwargs):
        self._refuse("updated")

    def delete(self):
        self._refuse("deleted")

    def bulk_create(self, *args, **kwargs):
        # bulk_create skips save(), where each row gets its place in the hash chain.
        raise PermissionError(f"{self.model._meta.verbose_name_plural} are hash-chained: create rows one at a time.")


class AppendOnlyModel(models.Model):
    """Rows are written once: never changed or deleted through the ORM (a PostgreSQL trigger
    refuses it for any client too, see the migrations). Each table is a hash chain: every row
    carries its place in it, the previous row's hash and its own (``cases.audit.chain_seal``), so
    ``manage.py verify_audit`` finds a row changed, deleted or inserted behind the ORM's back."""

    seq = models.PositiveBigIntegerField(unique=True, editable=False, help_text="Place in the table's hash chain")
    prev_hash = models.CharField(max_length=64, editable=False, help_text="The previous row's hash")
    hash = models.CharField(max_length=64, editable=False, help_text="sha256 of this row's fields, seq and prev_hash")

    objects = AppendOnlyQuerySet.as_manager()

    class Meta:
        abstract = True

    def save(self, *args, **kwargs):
        if not self._state.adding:
            raise PermissionError(f"{self._meta.verbose_name_plural} are append-only: rows cannot be changed.")
        using = kwargs.get("using") or router.db_for_write(type(self), instance=self)
        # The chain lock is held until this transaction (or the request's) commits.
        with transaction.atomic(using=using):
            audit.chain_seal(instance=self, using=using)
            super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise PermissionError(f"{self._meta.verbose_name_plural} are append-only: rows cannot be deleted.")


class AuditEvent(AppendOnlyModel):
    """One append-only audit row. On PostgreSQL a trigger also refuses UPDATE and DELETE."""

    timestamp = models.DateTimeField(default=timezone.now, db_index=True)
    # No database constraint: deleting a user must never touch the audit trail.
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        null=True,
        blank=True,
        related_name="+",
    )
    actor_username = models.CharField(max_length=150)
    action = models.CharField(max_length=32, db_index=True)
    object_type = models.CharField(max_length=100, db_index=True)
    object_id = models.CharField(max_length=64, blank=True, db_index=True)
    object_repr = models.CharField(max_length=200, blank=True)
    old_values = models.JSONField(default=dict, blank=True)
    new_values = models.JSONField(default=dict, blank=True)
    reason = models.TextField(blank=True)
    ip = models.GenericIPAddressField(null=True, blank=True)

    class Meta:
        ordering = ["-timestamp", "-pk"]
        default_permissions = ("view",)

    def __str__(self) -> str:
        return f"{self.timestamp:%Y-%m-%d %H:%M:%S} {self.actor_username} {self.action} {self.object_type}"


for _model in (Patient, Sample, CellImage):
    audit.register(_model)


# Review and sign-off --------------------------------------------------------

class CellReview(models.Model):
    """A doctor's verdict on one cell: the final class (or excluded) and a comment."""

    image = models.OneToOneField(CellImage, on_delete=models.PROTECT, related_name="review")
    final_class = models.CharField(max_length=16, choices=FINAL_CLASS_CHOICES)
    ai_class = models.CharField(max_length=16, blank=True, help_text="The AI's class when reviewed")
    ai_unidentified = models.BooleanField(default=False)
    comment = models.TextField(blank=True)
    reviewed_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    reviewed_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"{self.image_id}: {self.final_class}"

    @property
    def agrees_with_ai(self) -> bool:
        return self.final_class == self.ai_class


class SignatureMeaning(models.TextChoices):
    REVIEWED_APPROVED = "reviewed_and_approved", "Reviewed and approved"


class Signature(AppendOnlyModel):
    """An electronic signature: who, when, what it means, and the exact result signed.

    Signatures are never changed or deleted; an amendment adds a new one and the earlier
    ones stay readable with the result they signed (``snapshot``).
    """

    sample = models.ForeignKey(Sample, on_delete=models.PROTECT, related_name="signatures")
    signer = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    printed_name = models.CharField(max_length=200)
    meaning = models.CharField(max_length=32, choices=SignatureMeaning.choices)
    signed_at = models.DateTimeField(default=timezone.now)
    version = models.PositiveIntegerField(help_text="1 for the first sign-off, 2 after the first amendment …")
    amendment_reason = models.TextField(blank=True)
    snapshot = models.JSONField(help_text="The signed result: differential, cells, comments, model versions")
    snapshot_sha256 = models.CharField(max_length=64)

    class Meta:
        ordering = ["sample", "version"]
        constraints = [models.UniqueConstraint(fields=["sample", "version"], name="one_signature_per_version")]

    def __str__(self) -> str:
        return f"{self.sample} v{self.version} signed by {self.printed_name}"

    @property
    def is_amendment(self) -> bool:
        return self.version > 1


class Amendment(models.Model):
    """A signed sample reopened for correction, with the mandatory reason."""

    sample = models.ForeignKey(Sample, on_delete=models.PROTECT, related_name="amendments")
    reason = models.TextField()
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    requested_at = models.DateTimeField(default=timezone.now)
    previous_signature = models.ForeignKey(Signature, on_delete=models.PROTECT, related_name="+")

    def __str__(self) -> str:
        return f"Amendment of {self.sample} ({self.requested_at:%Y-%m-%d})"


for _model in (CellReview, Signature, Amendment):
    audit.register(_model)
