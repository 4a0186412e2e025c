"""Reads of the classifier app."""
from __future__ import annotations

import datetime

from django.db.models import QuerySet
from django.utils import timezone

from cases.models import CellImage, ImageStatus

from .models import ModelVersion, Prediction


def active_model_version() -> ModelVersion | None:
    return ModelVersion.objects.filter(is_active=True).first()


def images_to_sweep(
    *, queued_older_than: datetime.timedelta, classifying_older_than: datetime.timedelta
) -> QuerySet[CellImage]:
    """Images that should have been classified by now: lost messages, killed workers."""
    now = timezone.now()
    return CellImage.objects.filter(
        status=ImageStatus.QUEUED, status_changed_at__lt=now - queued_older_than
    ) | CellImage.objects.filter(status=ImageStatus.CLASSIFYING, status_changed_at__lt=now - classifying_older_than)


def latest_prediction(*, image: CellImage) -> Prediction | None:
    return image.predictions.select_related("model_version").order_by("-created_at").first()
