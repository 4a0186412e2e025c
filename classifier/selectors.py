"""Reads of the classifier app."""
from __future__ import annotations

import datetime

from django.core.files.storage import default_storage
from django.db.models import Prefetch, QuerySet
from django.utils import timezone

from cases.models import CellImage, Field, FieldStatus, ImageStatus

from .models import CandidateRun, CandidateRunStatus, ModelActivation, ModelVersion, Prediction


def active_model_version() -> ModelVersion | None:
    return ModelVersion.objects.filter(is_active=True).first()


def shadow_model_version() -> ModelVersion | None:
    """The version that classifies new images beside the active one, unseen by reviewers."""
    return ModelVersion.objects.filter(is_shadow=True).first()


def model_versions() -> QuerySet[ModelVersion]:
    return ModelVersion.objects.select_related("candidate_run").order_by("-created_at", "-pk")


def candidate_runs() -> QuerySet[CandidateRun]:
    return CandidateRun.objects.select_related("started_by", "base_version", "result_version")


def candidate_run_unfinished() -> CandidateRun | None:
    return candidate_runs().filter(status__in=[CandidateRunStatus.QUEUED, CandidateRunStatus.RUNNING]).first()


def model_activations() -> QuerySet[ModelActivation]:
    return ModelActivation.objects.select_related("version", "previous_version", "activated_by")


def _stuck(rows, *, waiting: tuple[str, datetime.timedelta], working: tuple[str, datetime.timedelta]) -> QuerySet:
    """Rows left too long in the waiting or the working status, each ``(status, older_than)``."""
    now = timezone.now()
    return rows.filter(status=waiting[0], status_changed_at__lt=now - waiting[1]) | rows.filter(
        status=working[0], status_changed_at__lt=now - working[1]
    )


def images_to_sweep(
    *, queued_older_than: datetime.timedelta, classifying_older_than: datetime.timedelta
) -> QuerySet[CellImage]:
    """Images that should have been classified by now: lost messages, killed workers."""
    return _stuck(
        CellImage.objects, waiting=(ImageStatus.QUEUED, queued_older_than),
        working=(ImageStatus.CLASSIFYING, classifying_older_than),
    )


def fields_to_sweep(
    *, received_older_than: datetime.timedelta, detecting_older_than: datetime.timedelta
) -> QuerySet[Field]:
    """Fields that should have been detected by now: lost messages, killed workers."""
    return _stuck(
        Field.objects, waiting=(FieldStatus.RECEIVED, received_older_than),
        working=(FieldStatus.DETECTING, detecting_older_than),
    )


def _predictions_newest_first() -> QuerySet[Prediction]:
    # Served predictions only: a shadow model's prediction is never what a reviewer sees.
    return Prediction.objects.filter(served=True).select_related("model_version").order_by("-created_at", "-pk")


def images_with_latest_prediction(images: QuerySet[CellImage]) -> QuerySet[CellImage]:
    """``images`` with their predictions fetched in one query, for :func:`latest_prediction`."""
    return images.prefetch_related(
        Prefetch("predictions", queryset=_predictions_newest_first(), to_attr="predictions_newest_first")
    )


def latest_prediction(*, image: CellImage) -> Prediction | None:
    """The image's newest served prediction (the one the review shows; never a shadow model's),
    or None before classification."""
    prefetched = getattr(image, "predictions_newest_first", None)
    if prefetched is not None:
        return prefetched[0] if prefetched else None
    return _predictions_newest_first().filter(image=image).first()


MEDIA_PREFIXES = ("cells", "heatmaps", "fields")  # where uploads, Grad-CAM heatmaps and fields are stored


def _walk_storage(storage, path: str):
    dirs, files = storage.listdir(path)
    for name in files:
        yield f"{path}/{name}"
    for d in dirs:
        yield from _walk_storage(storage, f"{path}/{d}")


def orphan_media_files(*, older_than: datetime.timedelta, storage=None) -> list[str]:
    """Stored files no CellImage or Prediction refers to, last modified more than
    ``older_than`` ago (younger ones may belong to an upload whose transaction has not
    committed yet). Left behind when a request's transaction rolls back after its files
    were written."""
    storage = storage or default_storage
    referenced = set(CellImage.objects.values_list("file", flat=True))
    referenced |= set(Prediction.objects.exclude(heatmap="").values_list("heatmap", flat=True))
    referenced |= set(Field.objects.values_list("file", flat=True))
    cutoff = timezone.now() - older_than
    orphans = []
    for prefix in MEDIA_PREFIXES:
        if not storage.exists(prefix):
            continue
        for name in _walk_storage(storage, prefix):
            if name not in referenced and storage.get_modified_time(name) < cutoff:
                orphans.append(name)
    return sorted(orphans)
