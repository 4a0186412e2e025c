"""Celery tasks: thin wrappers around classifier.services."""
from __future__ import annotations

import logging

from celery import shared_task
from django.db import DatabaseError, InterfaceError, OperationalError

from . import adaptation, fields, services

logger = logging.getLogger(__name__)

# Errors that may pass: the database or storage was briefly unreachable, the model file
# was being replaced, or no model is active yet.
TRANSIENT = (OperationalError, InterfaceError, DatabaseError, OSError, services.NoActiveModel, MemoryError)


@shared_task(
    bind=True,
    name="classifier.classify_images",
    acks_late=True,
    reject_on_worker_lost=True,
    max_retries=5,
)
def classify_images(self, image_ids: list[int]) -> dict:
    try:
        outcome = services.classify_images(image_ids=image_ids)
    except TRANSIENT as exc:
        if self.request.retries >= self.max_retries:
            services.mark_failed_after_retries(image_ids=image_ids, error=str(exc))
            raise
        countdown = min(60, 2 ** (self.request.retries + 1))
        logger.warning("Transient error on %s (%s); retry in %ss", image_ids, exc, countdown)
        raise self.retry(exc=exc, countdown=countdown)
    return {"classified": outcome.classified, "failed": outcome.failed, "skipped": outcome.skipped}


@shared_task(name="classifier.sweep_stuck_images", acks_late=True)
def sweep_stuck_images() -> int:
    # One periodic sweep for both queues: stuck cell images and stuck fields.
    return services.sweep_stuck_images() + fields.sweep_stuck_fields()


@shared_task(bind=True, name="classifier.detect_fields", acks_late=True, reject_on_worker_lost=True, max_retries=5)
def detect_fields(self, field_ids: list[int]) -> dict:
    """White-cell detection of whole fields (classification queue); the cells found are then
    queued for classification."""
    try:
        return fields.detect_fields(field_ids=field_ids)
    except TRANSIENT as exc:
        if self.request.retries >= self.max_retries:
            fields.mark_fields_failed_after_retries(field_ids=field_ids, error=str(exc))
            raise
        raise self.retry(exc=exc, countdown=min(60, 2 ** (self.request.retries + 1))) from exc


@shared_task(bind=True, name="classifier.compute_heatmaps", acks_late=True, max_retries=3)
def compute_heatmaps(self, prediction_ids: list[int]) -> int:
    """Second, low-priority pass (queue ``heatmaps``): Grad-CAM of already stored predictions."""
    try:
        return services.compute_heatmaps(prediction_ids=prediction_ids)
    except TRANSIENT as exc:
        raise self.retry(exc=exc, countdown=min(60, 2 ** (self.request.retries + 2))) from exc


@shared_task(name="classifier.train_candidate", acks_late=False)
def train_candidate(run_id: int) -> str:
    """A candidate model from the lab's confirmed cells (queue ``training``, minutes of CPU). Acked
    on receipt: a run is never trained twice, and one lost with its worker stays visible on its page."""
    return adaptation.candidate_run_execute(run_id=run_id).status
