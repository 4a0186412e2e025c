"""Writes of the classifier app: queueing and classifying images, the model registry.

The database is the source of truth for progress: an image is ``queued`` until a worker
stores its Prediction. Messages on the broker are only wake-up calls, so a lost message,
a killed worker or a broker that was down when the image was uploaded is repaired by the
periodic sweeper, and a redelivered message finds the prediction already stored.
"""
from __future__ import annotations

import datetime
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

from celery import current_app
from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import IntegrityError, transaction
from django.utils import timezone

from audit.services import audit_context
from cases import services as case_services
from cases.models import CellImage, Field, ImageStatus, Sample, SampleStatus

from . import selectors
from .export import ensure_export
from .inference import sha256_of
from .models import ModelVersion, Prediction

logger = logging.getLogger(__name__)


class NoActiveModel(Exception):
    """No model version is active: images stay queued until an admin activates one."""


class ModelFileMismatch(Exception):
    """The model file on disk is not the one registered (sha256 differs)."""


# Queueing -----------------------------------------------------------------


# Tasks are named, not imported: ``classifier.tasks`` wraps these services, so it sits above them.


def _send_to_broker(image_ids: list[int]) -> None:
    current_app.signature("classifier.classify_images", args=(list(image_ids),)).apply_async()


def _send_heatmaps_to_broker(prediction_ids: list[int]) -> None:
    current_app.signature("classifier.compute_heatmaps", args=(list(prediction_ids),)).apply_async()


def enqueue_heatmaps(*, prediction_ids: list[int]) -> None:
    """Ask for the Grad-CAM heatmaps of stored predictions (the low-priority ``heatmaps``
    queue). A lost message only costs a heatmap: the review page works without one."""
    try:
        _send_heatmaps_to_broker(prediction_ids)
    except Exception:  # noqa: BLE001 - broker down: the heatmap stays missing, nothing clinical is lost
        logger.exception("Could not enqueue heatmaps for predictions %s", prediction_ids)


def enqueue_classification(*, image_ids: list[int]) -> None:
    """Send images to the workers in batches. Called from ``transaction.on_commit``.

    If the broker is unreachable the images stay 'queued' in the database and the
    periodic sweeper sends them again: an accepted upload is never lost.
    """
    size = settings.HV_CLASSIFY_BATCH_SIZE
    for start in range(0, len(image_ids), size):
        batch = image_ids[start : start + size]
        try:
            _send_to_broker(batch)
        except Exception:  # broker down: the sweeper re-enqueues later
            logger.exception("Could not enqueue images %s; the sweeper will send them again", batch)


def resend_or_fail_stuck(*, stuck: list[tuple[int, int, int]], rows, fail, send) -> list[int]:
    """Fail the stuck ``(pk, attempts, sample_id)`` rows tried too often, touch and re-send the rest."""
    resend = []
    for pk, attempts, sample_id in stuck:
        if attempts >= settings.HV_MAX_CLASSIFY_ATTEMPTS:
            fail(pk=pk, attempts=attempts)
            _refresh_sample(sample_id=sample_id)
        else:
            resend.append(pk)
    if resend:
        # Touch them so the next sweep waits a full period before sending them again.
        rows.filter(pk__in=resend).update(status_changed_at=timezone.now())
        send(resend)
    return resend


def sweep_stuck_images(
    *,
    queued_older_than: datetime.timedelta | None = None,
    classifying_older_than: datetime.timedelta | None = None,
) -> int:
    """Re-enqueue images stuck in queued/classifying; give up on ones that failed too often."""
    if queued_older_than is None:
        queued_older_than = datetime.timedelta(seconds=settings.HV_SWEEP_QUEUED_AFTER_S)
    if classifying_older_than is None:
        classifying_older_than = datetime.timedelta(seconds=settings.HV_SWEEP_CLASSIFYING_AFTER_S)
    stuck = list(
        selectors.images_to_sweep(
            queued_older_than=queued_older_than, classifying_older_than=classifying_older_than
        ).values_list("pk", "attempts", "sample_id")
    )

    def fail(*, pk: int, attempts: int) -> None:
        case_services.image_set_status(
            image=CellImage.objects.get(pk=pk),
            status=ImageStatus.FAILED,
            error_message=f"Classification did not complete after {attempts} attempts.",
        )

    resend = resend_or_fail_stuck(
        stuck=stuck, rows=CellImage.objects, fail=fail, send=lambda pks: enqueue_classification(image_ids=pks)
    )
    if stuck:
        logger.info("Sweeper: %d stuck image(s), %d re-enqueued", len(stuck), len(resend))
    return len(resend)


# Classification -----------------------------------------------------------


@dataclass(frozen=True)
class ClassifyOutcome:
    classified: list[int]
    failed: list[int]
    skipped: list[int]


def _load_active_classifier(version: ModelVersion):
    from classifier.inference import load_classifier

    model_path = resolve_path(version.file_path)
    card_path = resolve_path(version.card_path) if version.card_path else None
    clf = load_classifier(model_path=model_path, card_path=card_path)
    if clf.sha256 != version.sha256:
        raise ModelFileMismatch(
            f"{model_path} has sha256 {clf.sha256[:12]}…, but model version {version.name} "
            f"was registered with {version.sha256[:12]}…"
        )
    return clf


def preload_active_model() -> None:
    """Load the active model into this process (worker start-up), the exported graph for
    classification and the Keras model for the heatmap pass, so that neither the first image
    nor the first heatmap waits seconds for a model to load; never fails the worker."""
    try:
        version = selectors.active_model_version()
        if version is not None:
            _load_active_classifier(version).model  # noqa: B018 - loads Keras for Grad-CAM now
    except Exception:  # noqa: BLE001 - the task will retry loading and report the error
        logger.exception("Could not preload the active model")


def _claim(*, image_ids: list[int], version: ModelVersion) -> list[CellImage]:
    """Mark the images this task will classify; skip those already done by this version.

    Under load, one upload's task finds others still queued: it fills its batch up to
    ``HV_CLASSIFY_BATCH_SIZE`` with the oldest queued images (their own messages then find them
    done and are skipped), so the model runs on batches instead of one image per task."""
    with transaction.atomic():
        images = list(
            CellImage.objects.select_for_update()
            .filter(pk__in=image_ids, status__in=[ImageStatus.QUEUED, ImageStatus.CLASSIFYING])
            .exclude(predictions__model_version=version)
            .order_by("pk")
        )
        room = settings.HV_CLASSIFY_BATCH_SIZE - len(images)
        if room > 0:
            images += list(
                CellImage.objects.select_for_update()
                .filter(status=ImageStatus.QUEUED)
                .exclude(pk__in=image_ids)
                .exclude(predictions__model_version=version)
                .order_by("pk")[:room]
            )
        now = timezone.now()
        for image in images:
            image.status = ImageStatus.CLASSIFYING
            image.status_changed_at = now
            image.attempts += 1
        CellImage.objects.bulk_update(images, ["status", "status_changed_at", "attempts"])
    for sample_id in {img.sample_id for img in images}:
        sample = Sample.objects.get(pk=sample_id)
        if sample.status == SampleStatus.IMAGES_UPLOADED:
            case_services.sample_transition(sample=sample, to_status=SampleStatus.CLASSIFYING)
    return images


def _refresh_sample(*, sample_id: int) -> None:
    case_services.sample_refresh_classification_status(sample=Sample.objects.get(pk=sample_id))


def _fail(*, image: CellImage, message: str) -> None:
    case_services.image_set_status(image=image, status=ImageStatus.FAILED, error_message=message)


def _prediction_from(result, *, image: CellImage, version: ModelVersion, served: bool) -> Prediction:
    """An unsaved Prediction of ``version`` for ``image`` from one classifier result."""
    return Prediction(
        image=image,
        model_version=version,
        predicted_class=result.label,
        probabilities=result.probabilities,
        confidence=result.confidence,
        unidentified=result.unidentified,
        cell_found=result.cell_found,
        inference_ms=result.inference_ms,
        served=served,
    )


def _store(*, image: CellImage, version: ModelVersion, result) -> None:
    with transaction.atomic():
        try:
            with transaction.atomic():
                prediction = _prediction_from(result, image=image, version=version, served=True)
                if result.heatmap_png:
                    prediction.heatmap.save(f"{image.pk}-{version.pk}.png", ContentFile(result.heatmap_png), save=False)
                prediction.save()
        except IntegrityError:
            # A redelivered or duplicate task stored it first: keep that one.
            if not Prediction.objects.filter(image=image, model_version=version).exists():
                raise
            if prediction.heatmap:
                prediction.heatmap.delete(save=False)
        case_services.image_set_status(image=image, status=ImageStatus.CLASSIFIED)


def classify_images(*, image_ids: list[int]) -> ClassifyOutcome:
    """Classify a batch of images with the active model and store one Prediction each.

    Idempotent: images already classified by the active model are skipped. An image that
    cannot be decoded ends as failed with a readable error; the rest of the batch goes on.
    Errors that may pass (database, storage, model loading) propagate so the task retries.
    """
    from classifier.preprocessing import load_image

    version = selectors.active_model_version()
    if version is None:
        raise NoActiveModel("No active model version; an admin must activate one.")
    with audit_context(reason=f"classified by {version.name}"):
        images = _claim(image_ids=image_ids, version=version)
        skipped = sorted(set(image_ids) - {img.pk for img in images})
        if not images:
            return ClassifyOutcome(classified=[], failed=[], skipped=skipped)

        classifier = _load_active_classifier(version)
        decoded, ready, failed = [], [], []
        for image in images:
            try:
                with image.file.open("rb") as fh:
                    decoded.append(load_image(fh.read()))
                ready.append(image)
            except FileNotFoundError:
                raise  # storage hiccup: retry the task
            except Exception as exc:  # noqa: BLE001 - a bad image must not stop the batch
                _fail(image=image, message=f"The image could not be read for classification: {exc}")
                failed.append(image.pk)

        if ready:
            started = time.perf_counter()
            results = classifier.predict(images=decoded, with_heatmap=False)
            logger.info("Classified %d image(s) in %.0f ms", len(ready), (time.perf_counter() - started) * 1000)
            for image, result in zip(ready, results, strict=True):
                _store(image=image, version=version, result=result)
            _classify_in_shadow(images=ready, decoded=decoded)
        for sample_id in {img.sample_id for img in images}:
            _refresh_sample(sample_id=sample_id)
            _request_heatmaps_when_classified(sample_id=sample_id)
    return ClassifyOutcome(classified=[i.pk for i in ready], failed=failed, skipped=skipped)


def _classify_in_shadow(*, images: list[CellImage], decoded: list) -> None:
    """Classify the images again with the shadow version, if there is one, and store its
    predictions unserved (``served=False``: never shown to a reviewer, see
    ``selectors.latest_prediction``). Evidence only: any failure is logged, never the task's."""
    shadow = selectors.shadow_model_version()
    if shadow is None or not images:
        return
    try:
        results = _load_active_classifier(shadow).predict(images=decoded, with_heatmap=False)
        with audit_context(reason=f"classified in shadow by {shadow.name}"):
            for image, result in zip(images, results, strict=True):
                try:
                    with transaction.atomic():
                        _prediction_from(result, image=image, version=shadow, served=False).save(force_insert=True)
                except IntegrityError:
                    pass  # a redelivered task: the shadow prediction is stored already
    except Exception:  # noqa: BLE001 - the shadow model must never cost the served classification
        logger.exception("Shadow classification by %s failed for images %s", shadow.name, [i.pk for i in images])


def _request_heatmaps_when_classified(*, sample_id: int) -> None:
    """The Grad-CAM second pass starts once no image of the sample waits for classification,
    so that heatmaps never delay a classification; it goes out in batches of
    ``HV_CLASSIFY_BATCH_SIZE`` so that a worker returns to the classification queue between them."""
    if CellImage.objects.filter(sample_id=sample_id, status__in=[ImageStatus.QUEUED, ImageStatus.CLASSIFYING]).exists():
        return
    ids = list(
        Prediction.objects.filter(image__sample_id=sample_id, heatmap="", served=True)
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    size = settings.HV_CLASSIFY_BATCH_SIZE
    for start in range(0, len(ids), size):
        enqueue_heatmaps(prediction_ids=ids[start : start + size])


def compute_heatmaps(*, prediction_ids: list[int]) -> int:
    """Store the Grad-CAM heatmap of each prediction that has none, computed by the model
    version that made the prediction, for the class it suggested. Idempotent; an image that
    cannot be read is skipped (its prediction simply keeps no heatmap). Returns how many were stored."""
    from classifier.preprocessing import load_image

    pending = list(
        Prediction.objects.filter(pk__in=prediction_ids, heatmap="").select_related("image", "model_version")
    )
    done = 0
    by_version: dict[int, list[Prediction]] = {}
    for prediction in pending:
        by_version.setdefault(prediction.model_version_id, []).append(prediction)
    for group in by_version.values():
        clf = _load_active_classifier(group[0].model_version)
        images, ready = [], []
        for prediction in group:
            try:
                with prediction.image.file.open("rb") as fh:
                    images.append(load_image(fh.read()))
                ready.append(prediction)
            except FileNotFoundError:
                raise  # storage hiccup: the task retries
            except Exception:  # noqa: BLE001 - an unreadable image has no heatmap, nothing else changes
                logger.exception("No heatmap for prediction %s: image unreadable", prediction.pk)
        pngs = clf.heatmaps(images=images, labels=[p.predicted_class for p in ready])
        for prediction, png in zip(ready, pngs, strict=True):
            with transaction.atomic(), audit_context(reason="Grad-CAM heatmap computed"):
                locked = Prediction.objects.select_for_update().get(pk=prediction.pk)
                if locked.heatmap:
                    continue
                locked.heatmap.save(f"{locked.image_id}-{locked.model_version_id}.png", ContentFile(png), save=False)
                locked.save(update_fields=["heatmap"])
                done += 1
    return done


def mark_failed_after_retries(*, image_ids: list[int], error: str) -> None:
    """The task gave up: images still pending end as failed with the error, never silently."""
    for image in CellImage.objects.filter(pk__in=image_ids, status__in=[ImageStatus.QUEUED, ImageStatus.CLASSIFYING]):
        _fail(image=image, message=f"Classification failed after retries: {error}")
        _refresh_sample(sample_id=image.sample_id)


# Model registry -----------------------------------------------------------


def resolve_path(path: str) -> Path:
    p = Path(path)
    return p if p.is_absolute() else Path(settings.BASE_DIR) / p


def model_version_register(*, model_path: Path, card_path: Path, actor=None, activate: bool = False) -> ModelVersion:
    """Register a model file with its JSON card; its sha256 must match the card."""
    card = json.loads(card_path.read_text())
    sha = sha256_of(model_path)
    if card.get("sha256") and card["sha256"] != sha:
        raise ModelFileMismatch(f"{model_path.name}: sha256 {sha} does not match its card ({card['sha256']})")
    try:
        ensure_export(model_path=model_path, card_path=card_path)  # the graph serving runs; made once
    except ValueError as exc:
        raise ModelFileMismatch(str(exc)) from exc
    base = Path(settings.BASE_DIR)

    def rel(p: Path) -> str:
        p = p.resolve()
        return str(p.relative_to(base)) if p.is_relative_to(base) else str(p)

    with transaction.atomic(), audit_context(actor=actor):
        version, _ = ModelVersion.objects.update_or_create(
            name=card.get("name") or model_path.stem,
            defaults={
                "file_path": rel(model_path),
                "card_path": rel(card_path),
                "sha256": sha,
                "metrics": card.get("metrics", {}),
                "threshold": float(card.get("calibration", {}).get("threshold", card.get("threshold", 0.0))),
            },
        )
        if activate:
            model_version_activate(version=version, actor=actor)
    return version


def model_version_activate(*, version: ModelVersion, actor=None, reason: str = "") -> ModelVersion:
    """Make ``version`` the one workers serve (workers pick it up on their next task). Installation
    and tests only: a user activates through ``classifier.adaptation.model_version_activate_signed``."""
    with transaction.atomic(), audit_context(actor=actor, reason=reason):
        for other in ModelVersion.objects.select_for_update().filter(is_active=True).exclude(pk=version.pk):
            other.is_active = False
            other.save(update_fields=["is_active"])
        version.is_active = True
        version.is_shadow = False  # a served model is no longer in shadow
        version.save(update_fields=["is_active", "is_shadow"])
    return version


# Stored files -------------------------------------------------------------


def orphan_media_delete(*, older_than: datetime.timedelta, storage=None) -> list[str]:
    """Delete the files :func:`classifier.selectors.orphan_media_files` finds; returns their names.
    Each file is re-checked against the database right before it goes, so a row committed
    meanwhile keeps its file."""
    storage = storage or default_storage
    deleted = []
    for name in selectors.orphan_media_files(older_than=older_than, storage=storage):
        if (
            CellImage.objects.filter(file=name).exists()
            or Prediction.objects.filter(heatmap=name).exists()
            or Field.objects.filter(file=name).exists()
        ):
            continue
        storage.delete(name)
        deleted.append(name)
    return deleted
