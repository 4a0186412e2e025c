from django.db import models

from cases import audit
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
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["is_active"], condition=models.Q(is_active=True), name="one_active_model")
        ]

    def __str__(self) -> str:
        return self.name + (" (active)" if self.is_active else "")


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
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["image", "model_version"], name="one_prediction_per_image_and_model")
        ]

    def __str__(self) -> str:
        return f"{self.image_id}: {self.predicted_class} ({self.confidence:.2f})"


audit.register(ModelVersion)
audit.register(Prediction)
