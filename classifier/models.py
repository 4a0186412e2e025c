from django.conf import settings
from django.db import models
from django.utils import timezone

from audit.models import AppendOnlyQuerySet
from audit.services import register as audit_register
from cases.cell_classes import CELL_CLASS_LABELS, CELL_CLASSES
from cases.models import CellImage

CellClass = models.TextChoices("CellClass", [(c, (c, CELL_CLASS_LABELS[c])) for c in CELL_CLASSES])


class ModelVersion(models.Model):
    """A trained model file the workers may serve; exactly one is active."""

    name = models.CharField(max_length=100, unique=True)
    file_path = models.CharField(max_length=500, help_text="Path of the .keras file (relative to the repo or absolute)")
    card_path = models.CharField(max_length=500, blank=True)
    sha256 = models.CharField(max_length=64)
    metrics = models.JSONField(default=dict, blank=True, help_text="Metrics copied from the model card")
    threshold = models.FloatField(help_text="Calibrated confidence below which a cell is 'unidentified'")
    is_active = models.BooleanField(default=False)
    is_shadow = models.BooleanField(
        default=False, help_text="Classifies every new image beside the active model; never shown to reviewers"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["is_active"], condition=models.Q(is_active=True), name="one_active_model"),
            models.UniqueConstraint(fields=["is_shadow"], condition=models.Q(is_shadow=True), name="one_shadow_model"),
            models.CheckConstraint(
                condition=~(models.Q(is_active=True) & models.Q(is_shadow=True)), name="shadow_model_not_active"
            ),
        ]

    def __str__(self) -> str:
        return self.name + (" (active)" if self.is_active else " (shadow)" if self.is_shadow else "")


class Prediction(models.Model):
    """The AI's classification of one image by one model version (idempotent per pair)."""

    image = models.ForeignKey(CellImage, on_delete=models.PROTECT, related_name="predictions")
    model_version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="predictions")
    predicted_class = models.CharField(max_length=16, choices=CellClass.choices)
    probabilities = models.JSONField(help_text="Calibrated probability of every class")
    confidence = models.FloatField()
    unidentified = models.BooleanField(help_text="Confidence below the model's threshold: needs review")
    cell_found = models.BooleanField(
        null=True,
        help_text="False: no white cell was found and the whole image was classified; "
        "empty: the model version classifies the whole image and does not look for one",
    )
    heatmap = models.ImageField(upload_to="heatmaps/%Y/%m/", blank=True)
    inference_ms = models.FloatField()
    served = models.BooleanField(
        default=True,
        help_text="Made by the model the reviewers were served; False: made in shadow, never shown to a reviewer",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["image", "model_version"], name="one_prediction_per_image_and_model")
        ]

    def __str__(self) -> str:
        return f"{self.image_id}: {self.predicted_class} ({self.confidence:.2f})"


class CandidateRunStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


class CandidateRun(models.Model):
    """One training of a candidate model from the lab's confirmed cells (``classifier.adaptation``).

    ``cells`` is the training set as it was when the run was started ([image id, sample id,
    final class] per cell): the floor was checked on it and the worker trains on exactly it."""

    FINISHED = (CandidateRunStatus.SUCCEEDED, CandidateRunStatus.FAILED, CandidateRunStatus.CANCELLED)

    started_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True, help_text="When a worker began training")
    finished_at = models.DateTimeField(null=True, blank=True)
    status = models.CharField(max_length=16, choices=CandidateRunStatus.choices, default=CandidateRunStatus.QUEUED)
    base_version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="candidate_runs")
    result_version = models.OneToOneField(
        ModelVersion, on_delete=models.PROTECT, null=True, blank=True, related_name="candidate_run"
    )
    cells = models.JSONField(default=list, help_text="[image id, sample id, final class] of every confirmed cell")
    cell_counts = models.JSONField(default=dict, help_text="Confirmed cells per class when the run was started")
    holdout_sample_ids = models.JSONField(default=list, help_text="Samples held out whole for the comparison")
    progress = models.JSONField(default=dict, blank=True, help_text="stage, epoch/epochs, loss, eta_s, elapsed_s")
    failure_reason = models.TextField(blank=True)
    comparison = models.JSONField(default=dict, blank=True, help_text="Base vs candidate on the held-out samples")

    class Meta:
        ordering = ["-created_at", "-pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["status"],
                condition=models.Q(status__in=["queued", "running"]),
                name="one_unfinished_candidate_run",
            )
        ]

    def __str__(self) -> str:
        return f"Candidate run {self.pk} from {self.base_version.name} ({self.get_status_display().lower()})"

    @property
    def is_finished(self) -> bool:
        return self.status in self.FINISHED


class ActivationKind(models.TextChoices):
    ACTIVATION = "activation", "Activation"
    ROLLBACK = "rollback", "Rollback"


class ModelActivation(models.Model):
    """A signed decision to serve a model version: who, when, why, and the evidence it rested on.
    Append-only (also audited, so the hash-chained audit trail holds a copy of every row)."""

    version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="activations")
    previous_version = models.ForeignKey(
        ModelVersion, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    kind = models.CharField(max_length=16, choices=ActivationKind.choices)
    activated_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    printed_name = models.CharField(max_length=200)
    activated_at = models.DateTimeField(default=timezone.now)
    reason = models.TextField()
    comparison = models.JSONField(default=dict, blank=True, help_text="The comparison the decision was based on")
    signed_sha256 = models.CharField(max_length=64, help_text="sha256 of the canonical JSON of the decision")

    objects = AppendOnlyQuerySet.as_manager()

    class Meta:
        ordering = ["-activated_at", "-pk"]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} of {self.version.name} by {self.printed_name}"

    def save(self, *args, **kwargs):
        if not self._state.adding:
            raise PermissionError("Model activations are append-only: rows cannot be changed.")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise PermissionError("Model activations are append-only: rows cannot be deleted.")


audit_register(ModelVersion)
audit_register(Prediction)
audit_register(ModelActivation)
