"""Reads of the audit trail."""
from __future__ import annotations

from collections.abc import Iterable

from django.apps import apps
from django.db.models import Q, QuerySet

from .models import AppendOnlyModel, AuditEvent

CREATE = "create"
SAMPLE_TYPE = "cases.sample"  # the trail's name for samples (object types are labels, not imports)


def audit_events() -> QuerySet[AuditEvent]:
    return AuditEvent.objects.all()


def chained_models() -> list[type[AppendOnlyModel]]:
    """Every hash-chained table (the audit trail, and the signatures of the review app)."""
    return [m for m in apps.get_models() if issubclass(m, AppendOnlyModel)]


def events_about(
    *, objects: dict[str, Iterable], references: dict[str, Iterable] | None = None
) -> QuerySet[AuditEvent]:
    """The events of some records, oldest first: ``objects`` maps an object type ("cases.sample")
    to record ids; ``references`` maps a stored key ("image_id") to ids, and adds every record
    whose creation stored one of them there (a review of one of the cells, a signature of the
    sample), with all of its own events. Unknown ids find nothing."""
    wanted: dict[str, set[str]] = {}
    for object_type, ids in objects.items():
        wanted.setdefault(object_type, set()).update(str(i) for i in ids)
    refs = Q()
    for key, ids in (references or {}).items():
        ids = [int(i) for i in ids]
        if ids:
            refs |= Q(**{f"new_values__{key}__in": ids})
    if refs:
        created = AuditEvent.objects.filter(refs, action=CREATE).values_list("object_type", "object_id")
        for object_type, object_id in created:
            wanted.setdefault(object_type, set()).add(object_id)
    match = Q(pk__in=[])
    for object_type, ids in wanted.items():
        if ids:
            match |= Q(object_type=object_type, object_id__in=sorted(ids))
    return AuditEvent.objects.filter(match).order_by("timestamp", "pk")


def samples_for_accession(*, accession: str) -> list[tuple[str, str]]:
    """(id, accession number) of the samples whose number, as the trail recorded it at
    registration, contains ``accession``: the trail finds a sample without reading its table."""
    accession = accession.strip()
    if not accession:
        return []
    found = AuditEvent.objects.filter(object_type=SAMPLE_TYPE, action=CREATE, object_repr__icontains=accession)
    return list(found.order_by("pk").values_list("object_id", "object_repr")[:50])


def sample_trail(*, sample_ids: Iterable) -> QuerySet[AuditEvent]:
    """Every event of these samples, of their cells and fields, and of the records about those,
    as the trail itself knows them (what each cell and field was created for)."""
    ids = [int(i) for i in sample_ids]
    if not ids:
        return AuditEvent.objects.none()
    parts = AuditEvent.objects.filter(action=CREATE, new_values__sample_id__in=ids)
    images, fields = [], []
    for object_type, object_id in parts.values_list("object_type", "object_id"):
        if object_type == "cases.cellimage":
            images.append(object_id)
        elif object_type == "cases.field":
            fields.append(object_id)
    return events_about(
        objects={SAMPLE_TYPE: ids, "cases.cellimage": images, "cases.field": fields},
        references={"sample_id": ids, "image_id": images, "field_id": fields},
    )


def audit_actions() -> list[str]:
    return list(AuditEvent.objects.order_by("action").values_list("action", flat=True).distinct())
