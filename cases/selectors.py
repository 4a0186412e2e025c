"""Reads of the case records."""
from __future__ import annotations

import datetime

from django.db.models import Count, Q, QuerySet
from django.utils import timezone

from .models import AuditEvent, CellImage, ImageStatus, Patient, Sample


def patient_search(*, query: str = "") -> QuerySet[Patient]:
    qs = Patient.objects.annotate(sample_count=Count("samples"))
    query = query.strip()
    if query:
        qs = qs.filter(
            Q(mrn__icontains=query) | Q(family_name__icontains=query) | Q(given_name__icontains=query)
        )
    return qs.order_by("family_name", "given_name", "pk")


def sample_list(*, status: str | None = None, patient: Patient | None = None) -> QuerySet[Sample]:
    qs = Sample.objects.select_related("patient").annotate(
        image_count=Count("images"),
        pending_count=Count("images", filter=Q(images__status__in=[ImageStatus.QUEUED, ImageStatus.CLASSIFYING])),
    )
    if status:
        qs = qs.filter(status=status)
    if patient is not None:
        qs = qs.filter(patient=patient)
    return qs.order_by("-received_at")


def sample_images(*, sample: Sample) -> QuerySet[CellImage]:
    return sample.images.select_related("uploaded_by").order_by("uploaded_at", "pk")


def sample_image_progress(*, sample: Sample) -> dict:
    counts = dict(
        sample.images.values_list("status").annotate(n=Count("pk")).values_list("status", "n")
    )
    total = sum(counts.values())
    done = counts.get(ImageStatus.CLASSIFIED, 0) + counts.get(ImageStatus.FAILED, 0)
    return {"total": total, "done": done, "by_status": {s: counts.get(s, 0) for s in ImageStatus.values}}


def audit_events() -> QuerySet[AuditEvent]:
    return AuditEvent.objects.all()


MEDIA_PREFIXES = ("cells", "heatmaps")  # where uploads and Grad-CAM heatmaps are stored


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
    from django.core.files.storage import default_storage

    from classifier.models import Prediction

    storage = storage or default_storage
    referenced = set(CellImage.objects.values_list("file", flat=True))
    referenced |= set(Prediction.objects.exclude(heatmap="").values_list("heatmap", flat=True))
    cutoff = timezone.now() - older_than
    orphans = []
    for prefix in MEDIA_PREFIXES:
        if not storage.exists(prefix):
            continue
        for name in _walk_storage(storage, prefix):
            if name not in referenced and storage.get_modified_time(name) < cutoff:
                orphans.append(name)
    return sorted(orphans)
