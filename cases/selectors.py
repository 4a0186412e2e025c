"""Reads of the case records."""
from __future__ import annotations

from django.db.models import Count, Q, QuerySet

from audit import narrative
from audit import selectors as audit_selectors

from .models import CellImage, Field, FieldStatus, ImageStatus, Patient, Sample


def patients_matching(*, patients: QuerySet[Patient], query: str) -> QuerySet[Patient]:
    """``patients`` matching every word of ``query`` in their MRN, family or given name, in any
    order, case-insensitive and partial ("Adaeze Okafor", "okafor, ada" and "OKAFOR" all find
    Adaeze Okafor); all of them when the query is blank."""
    for word in query.replace(",", " ").split():
        patients = patients.filter(
            Q(mrn__icontains=word) | Q(family_name__icontains=word) | Q(given_name__icontains=word)
        )
    return patients


def patient_possible_duplicates(
    *, family_name: str, given_name: str, date_of_birth, exclude: Patient | None = None
) -> list[Patient]:
    """Registered patients with the same names (case and spacing ignored) and date of birth."""
    qs = Patient.objects.filter(
        family_name__iexact=family_name.strip(), given_name__iexact=given_name.strip(), date_of_birth=date_of_birth
    )
    if exclude is not None:
        qs = qs.exclude(pk=exclude.pk)
    return list(qs.order_by("pk"))


def patient_search(*, query: str = "") -> QuerySet[Patient]:
    qs = Patient.objects.annotate(sample_count=Count("samples"))
    return patients_matching(patients=qs, query=query).order_by("family_name", "given_name", "pk")


def samples_matching(*, samples: QuerySet[Sample], query: str) -> QuerySet[Sample]:
    """``samples`` whose accession number or external (barcode) number contains ``query``."""
    query = query.strip()
    if not query:
        return samples
    return samples.filter(Q(accession_number__icontains=query) | Q(external_accession__icontains=query))


def sample_list(
    *, status: str | None = None, patient: Patient | None = None, query: str = ""
) -> QuerySet[Sample]:
    qs = Sample.objects.select_related("patient").annotate(
        image_count=Count("images"),
        pending_count=Count("images", filter=Q(images__status__in=[ImageStatus.QUEUED, ImageStatus.CLASSIFYING])),
    )
    if status:
        qs = qs.filter(status=status)
    if patient is not None:
        qs = qs.filter(patient=patient)
    qs = samples_matching(samples=qs, query=query)
    return qs.order_by("-received_at")


def sample_history(*, sample: Sample) -> list:
    """Every audit event of the sample, its cells and fields, and of the records made about them
    (predictions, reviews, signatures, amendments), oldest first, each told in words
    (``audit.narrative``)."""
    image_ids = list(sample.images.values_list("pk", flat=True))
    field_ids = list(sample.fields.values_list("pk", flat=True))
    events = audit_selectors.events_about(
        objects={"cases.sample": [sample.pk], "cases.cellimage": image_ids, "cases.field": field_ids},
        references={"sample_id": [sample.pk], "image_id": image_ids, "field_id": field_ids},
    )
    return narrative.narrate(events, sample_id=sample.pk)


def sample_images(*, sample: Sample) -> QuerySet[CellImage]:
    return sample.images.select_related("uploaded_by").order_by("uploaded_at", "pk")


def sample_image_progress(*, sample: Sample) -> dict:
    counts = dict(
        sample.images.values_list("status").annotate(n=Count("pk")).values_list("status", "n")
    )
    total = sum(counts.values())
    done = counts.get(ImageStatus.CLASSIFIED, 0) + counts.get(ImageStatus.FAILED, 0)
    return {"total": total, "done": done, "by_status": {s: counts.get(s, 0) for s in ImageStatus.values}}


def sample_field_list(*, sample: Sample) -> QuerySet[Field]:
    """The sample's whole fields, oldest first, with how many cells each gave (rejected ones not counted)."""
    return (
        sample.fields.annotate(cell_count=Count("cells", filter=Q(cells__rejected_at__isnull=True)))
        .order_by("uploaded_at", "pk")
    )


def sample_field_progress(*, sample: Sample) -> dict:
    counts = dict(sample.fields.values_list("status").annotate(n=Count("pk")).values_list("status", "n"))
    total = sum(counts.values())
    done = counts.get(FieldStatus.DETECTED, 0) + counts.get(FieldStatus.FAILED, 0)
    return {"total": total, "done": done, "by_status": {s: counts.get(s, 0) for s in FieldStatus.values}}
