"""Writes of whole-field analysis: queueing fields for the white-cell detector, running it, and
healing fields that a lost message or a killed worker left behind.

Like image classification, the database is the truth: a field is ``received`` until a worker has
stored its detections (``cases.services.field_detection_store``, idempotent), the broker only wakes
workers, and :func:`sweep_stuck_fields` re-sends what waited too long. Each white cell found becomes
a ``CellImage`` cut from the field (``classifier.detection.crop_cell``), which the classification
queue then classifies like an uploaded cell.
"""
from __future__ import annotations

import datetime
import io
import logging

from celery import current_app
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from cases import services as case_services
from cases.models import FIELD_PENDING_STATUSES, Field, FieldStatus, Sample, SampleStatus

from . import selectors
from .detection import FieldImageError, crop_cell, detect_field, looks_like_field
from .preprocessing import load_image
from .services import resend_or_fail_stuck

logger = logging.getLogger(__name__)


def crop_png(*, field_image, box: tuple[int, int, int, int]) -> bytes:
    """The classifier's crop of the cell in ``box`` as PNG bytes (lossless: the stored cell is
    exactly what ``crop_cell`` made)."""
    buf = io.BytesIO()
    crop_cell(field_image, box).save(buf, format="PNG")
    return buf.getvalue()


def upload_kind(*, data: bytes) -> tuple[bool, str]:
    """Whole field or single cell, and why (``classifier.detection.looks_like_field``); an image
    the detector cannot analyse (too small) is a single cell."""
    try:
        return tuple(looks_like_field(data))
    except FieldImageError as exc:
        return False, f"single cell: {exc}"


# Queueing -----------------------------------------------------------------


def _send_fields_to_broker(field_ids: list[int]) -> None:
    current_app.signature("classifier.detect_fields", args=(list(field_ids),)).apply_async()


def enqueue_detection(*, field_ids: list[int]) -> None:
    """Send fields to the workers, one per message (a field takes ~0.1 s). Called after commit;
    with the broker down the fields stay ``received`` and the sweeper sends them later."""
    for pk in field_ids:
        try:
            _send_fields_to_broker([pk])
        except Exception:  # noqa: BLE001 - broker down: the sweeper re-enqueues later
            logger.exception("Could not enqueue field %s; the sweeper will send it again", pk)


def sweep_stuck_fields(
    *,
    received_older_than: datetime.timedelta | None = None,
    detecting_older_than: datetime.timedelta | None = None,
) -> int:
    """Re-enqueue fields stuck waiting for or in detection; fail those tried too often."""
    if received_older_than is None:
        received_older_than = datetime.timedelta(seconds=settings.HV_SWEEP_QUEUED_AFTER_S)
    if detecting_older_than is None:
        detecting_older_than = datetime.timedelta(seconds=settings.HV_SWEEP_CLASSIFYING_AFTER_S)
    stuck = list(
        selectors.fields_to_sweep(
            received_older_than=received_older_than, detecting_older_than=detecting_older_than
        ).values_list("pk", "attempts", "sample_id")
    )

    def fail(*, pk: int, attempts: int) -> None:
        case_services.field_set_status(
            field=Field.objects.get(pk=pk), status=FieldStatus.FAILED,
            error_message=f"White-cell detection did not complete after {attempts} attempts.",
        )

    resend = resend_or_fail_stuck(
        stuck=stuck, rows=Field.objects, fail=fail, send=lambda pks: enqueue_detection(field_ids=pks)
    )
    if stuck:
        logger.info("Sweeper: %d stuck field(s), %d re-enqueued", len(stuck), len(resend))
    return len(resend)


# Detection ----------------------------------------------------------------


def _refresh_sample(*, sample_id: int) -> None:
    case_services.sample_refresh_classification_status(sample=Sample.objects.get(pk=sample_id))


def _claim(*, field_id: int) -> Field | None:
    with transaction.atomic():
        field = Field.objects.select_for_update().filter(pk=field_id, status__in=FIELD_PENDING_STATUSES).first()
        if field is None:
            return None
        field.status = FieldStatus.DETECTING
        field.status_changed_at = timezone.now()
        field.attempts += 1
        field.save(update_fields=["status", "status_changed_at", "attempts"])
    sample = Sample.objects.get(pk=field.sample_id)
    if sample.status == SampleStatus.IMAGES_UPLOADED:
        case_services.sample_transition(sample=sample, to_status=SampleStatus.CLASSIFYING)
    return field


def detect_fields(*, field_ids: list[int]) -> dict[str, list[int]]:
    """Find the white cells of each field, store each as a cell cut from it and the field's red
    cell and platelet estimates. Idempotent: a field already detected is skipped. A field the
    detector cannot read ends as failed with the reason; errors that may pass (database, storage)
    propagate so that the task retries."""
    outcome: dict[str, list[int]] = {"detected": [], "failed": [], "skipped": []}
    for pk in field_ids:
        field = _claim(field_id=pk)
        if field is None:
            outcome["skipped"].append(pk)
            continue
        with field.file.open("rb") as fh:  # FileNotFoundError: storage hiccup, the task retries
            data = fh.read()
        try:
            image = load_image(data)
            found = detect_field(image)
            cuts = [
                case_services.CellCut(
                    box=cell.box, touches_edge=cell.touches_edge, score=cell.score,
                    content=crop_png(field_image=image, box=cell.box),
                )
                for cell in found.white_cells
            ]
        except (FieldImageError, OSError, SyntaxError) as exc:  # unreadable or unanalysable: not retried
            case_services.field_set_status(
                field=field, status=FieldStatus.FAILED, error_message=f"The field could not be analysed: {exc}"
            )
            outcome["failed"].append(pk)
        else:
            case_services.field_detection_store(
                field=field, detector=found.detector, rbc_count=found.rbc_count,
                platelet_count=found.platelet_count, elapsed_ms=found.elapsed_ms, cells=cuts,
            )
            logger.info("Field %s: %d white cell(s) in %.0f ms", pk, len(cuts), found.elapsed_ms)
            outcome["detected"].append(pk)
        _refresh_sample(sample_id=field.sample_id)
    return outcome


def mark_fields_failed_after_retries(*, field_ids: list[int], error: str) -> None:
    """The task gave up: fields still pending end as failed with the error, never silently."""
    for field in Field.objects.filter(pk__in=field_ids, status__in=FIELD_PENDING_STATUSES):
        case_services.field_set_status(
            field=field, status=FieldStatus.FAILED, error_message=f"Detection failed after retries: {error}"
        )
        _refresh_sample(sample_id=field.sample_id)
