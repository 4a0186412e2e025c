"""The doctor's work: a verdict per cell, electronic signatures and amendments."""
from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone

from audit.models import AppendOnlyModel
from audit.services import register as audit_register
from cases.cell_classes import CELL_CLASS_LABELS, FINAL_CLASS_CHOICES
from cases.models import CellImage, Sample


class CellReview(models.Model):
    """A doctor's verdict on one cell: the final class (or excluded) and a comment."""

    image = models.OneToOneField(CellImage, on_delete=models.PROTECT, related_name="review")
    final_class = models.CharField(max_length=16, choices=FINAL_CLASS_CHOICES)
    ai_class = models.CharField(max_length=16, blank=True, help_text="The AI's class when reviewed")
    ai_unidentified = models.BooleanField(default=False)
    comment = models.TextField(blank=True)
    reviewed_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    reviewed_at = models.DateTimeField(default=timezone.now)

    class Meta:
        db_table = "cases_cellreview"  # tables keep the name of the app they came from

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
        db_table = "cases_signature"
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

    class Meta:
        db_table = "cases_amendment"

    def __str__(self) -> str:
        return f"Amendment of {self.sample} ({self.requested_at:%Y-%m-%d})"


class ReferenceRange(models.Model):
    """The lab's adult reference interval of one cell type, in percent of the white cells and absolute
    (×10⁹/L), with the source it was taken from. Edited by admins (Django admin, audited); a result
    outside it is flagged H or L in the review, the report and the FHIR export."""

    cell_class = models.CharField(max_length=16, choices=list(CELL_CLASS_LABELS.items()), unique=True)
    percent_low = models.DecimalField(max_digits=4, decimal_places=1)
    percent_high = models.DecimalField(max_digits=4, decimal_places=1)
    absolute_low = models.DecimalField(max_digits=5, decimal_places=2, help_text="×10⁹/L")
    absolute_high = models.DecimalField(max_digits=5, decimal_places=2, help_text="×10⁹/L")
    source = models.CharField(max_length=300, help_text="Where the interval comes from (book, edition, table)")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["cell_class"]
        constraints = [
            models.CheckConstraint(condition=models.Q(percent_low__lte=models.F("percent_high")),
                                   name="reference_percent_low_le_high"),
            models.CheckConstraint(condition=models.Q(absolute_low__lte=models.F("absolute_high")),
                                   name="reference_absolute_low_le_high"),
        ]

    def __str__(self) -> str:
        return f"{self.get_cell_class_display()}: {self.percent_low}-{self.percent_high} %"


for _model in (CellReview, Signature, Amendment, ReferenceRange):
    audit_register(_model)
