"""Writes to the case records. Views, forms, tasks and the API call these, nothing else writes."""
from __future__ import annotations

import datetime
import decimal
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from django.core.exceptions import ValidationError
from django.core.files import File
from django.core.files.base import ContentFile
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from accounts.roles import Role, has_role
from audit.services import audit_context

from . import selectors
from .errors import InvalidState, InvalidTransition, NotAllowed
from .models import (
    ALLOWED_TRANSITIONS,
    FIELD_PENDING_STATUSES,
    AccessionCounter,
    CellImage,
    CellOrigin,
    Field,
    FieldStatus,
    ImageStatus,
    Patient,
    Sample,
    SampleStatus,
    UploadKind,
)
from .signals import fields_added, images_added, upload_kind_requested
from .validation import FORMAT_EXTENSIONS, ImageRejected, read_image_file, validate_image_bytes


def _require_role(user, *roles: Role) -> None:
    if not has_role(user, *roles):
        raise NotAllowed("Your role does not allow this action.")


# Dates a record may carry. Nobody alive was born before 1900, and no sample of this lab predates
# 2000 (accession numbers carry the year received); "now" allows for a client clock a little ahead.
EARLIEST_BIRTH_DATE = datetime.date(1900, 1, 1)
EARLIEST_SAMPLE_TIME = datetime.datetime(2000, 1, 1, tzinfo=datetime.UTC)
CLOCK_SKEW = datetime.timedelta(minutes=5)


def _validate_date_of_birth(*, date_of_birth: datetime.date) -> None:
    if date_of_birth > timezone.localdate():
        raise ValidationError({"date_of_birth": "The date of birth cannot be in the future."})
    if date_of_birth < EARLIEST_BIRTH_DATE:
        raise ValidationError({"date_of_birth": f"The date of birth cannot be before {EARLIEST_BIRTH_DATE:%Y-%m-%d}."})


# A WBC count is positive, and none above this (×10⁹/L) is a real count rather than a typing error.
WBC_COUNT_MAX = decimal.Decimal("500")


def _validate_wbc_count(*, wbc_count) -> None:
    if wbc_count is None:
        return
    if wbc_count <= 0:
        raise ValidationError({"wbc_count": "The WBC count must be greater than 0 ×10⁹/L."})
    if wbc_count > WBC_COUNT_MAX:
        raise ValidationError(
            {"wbc_count": f"A WBC count above {WBC_COUNT_MAX} ×10⁹/L is not plausible; check the value."}
        )


def _clean_external_accession(*, external_accession: str, sample: Sample | None = None) -> str:
    """The ordering system's number, stripped; refused if another sample already carries it."""
    value = (external_accession or "").strip()
    if value:
        taken = Sample.objects.filter(external_accession=value)
        if sample is not None:
            taken = taken.exclude(pk=sample.pk)
        other = taken.first()
        if other is not None:
            raise ValidationError(
                {"external_accession": f"Sample {other.accession_number} already has the external number {value}."}
            )
    return value


def _validate_sample_times(*, collected_at: datetime.datetime, received_at: datetime.datetime) -> None:
    latest = timezone.now() + CLOCK_SKEW
    errors = {}
    for name, what, value in (
        ("collected_at", "collection time", collected_at),
        ("received_at", "time the sample was received", received_at),
    ):
        if value > latest:
            errors[name] = f"The {what} cannot be in the future."
        elif value < EARLIEST_SAMPLE_TIME:
            errors[name] = f"The {what} cannot be before {EARLIEST_SAMPLE_TIME:%Y-%m-%d}."
    if not errors and collected_at > received_at:
        errors["collected_at"] = "The collection time cannot be after the time the sample was received."
    if errors:
        raise ValidationError(errors)


# Patients -----------------------------------------------------------------


def patient_create(
    *,
    actor,
    mrn: str,
    family_name: str,
    given_name: str,
    date_of_birth: datetime.date,
    sex: str,
    confirm_duplicate: bool = False,
) -> Patient:
    """Register a patient. A patient with the same name and date of birth is likely the same
    person: refused (error on ``confirm_duplicate``) unless the caller confirms it is not."""
    _require_role(actor, Role.TECHNICIAN)
    _validate_date_of_birth(date_of_birth=date_of_birth)
    if not confirm_duplicate:
        twins = selectors.patient_possible_duplicates(
            family_name=family_name, given_name=given_name, date_of_birth=date_of_birth
        )
        if twins:
            listed = "; ".join(f"{p.full_name}, MRN {p.mrn}" for p in twins)
            raise ValidationError(
                {"confirm_duplicate": ValidationError(
                    f"A patient with the same name and date of birth is already registered ({listed}). "
                    "Open that record, or confirm that this is a different person.",
                    code="possible_duplicate",
                )}
            )
    with audit_context(actor=actor):
        return Patient.objects.create(
            mrn=mrn.strip(),
            family_name=family_name.strip(),
            given_name=given_name.strip(),
            date_of_birth=date_of_birth,
            sex=sex,
            created_by=actor,
        )


def patient_update(*, actor, patient: Patient, reason: str = "", **changes) -> Patient:
    _require_role(actor, Role.TECHNICIAN)
    allowed = {"mrn", "family_name", "given_name", "date_of_birth", "sex"}
    unknown = set(changes) - allowed
    if unknown:
        raise ValueError(f"Unknown patient fields: {', '.join(sorted(unknown))}")
    if "date_of_birth" in changes:
        _validate_date_of_birth(date_of_birth=changes["date_of_birth"])
    for name, value in changes.items():
        setattr(patient, name, value.strip() if isinstance(value, str) else value)
    with audit_context(actor=actor, reason=reason):
        patient.save()
    return patient


# Samples ------------------------------------------------------------------


def next_accession_number(*, when: datetime.datetime | None = None) -> str:
    """HV-YYYY-NNNNNN, gap-free per year, safe under concurrent registrations."""
    year = (when or timezone.now()).year
    with transaction.atomic():
        AccessionCounter.objects.get_or_create(year=year)
        AccessionCounter.objects.filter(year=year).update(last_value=F("last_value") + 1)
        value = AccessionCounter.objects.select_for_update().get(year=year).last_value
    return f"HV-{year}-{value:06d}"


def sample_create(
    *,
    actor,
    patient: Patient,
    collected_at: datetime.datetime,
    received_at: datetime.datetime | None = None,
    specimen_type: str,
    stain: str,
    priority: str,
    clinical_notes: str = "",
    wbc_count=None,
    ordering_physician: str = "",
    requesting_ward: str = "",
    external_accession: str = "",
) -> Sample:
    _require_role(actor, Role.TECHNICIAN)
    received_at = received_at or timezone.now()
    _validate_sample_times(collected_at=collected_at, received_at=received_at)
    _validate_wbc_count(wbc_count=wbc_count)
    external_accession = _clean_external_accession(external_accession=external_accession)
    with transaction.atomic(), audit_context(actor=actor):
        return Sample.objects.create(
            accession_number=next_accession_number(when=received_at),
            patient=patient,
            collected_at=collected_at,
            received_at=received_at,
            specimen_type=specimen_type,
            stain=stain,
            priority=priority,
            clinical_notes=clinical_notes,
            wbc_count=wbc_count,
            ordering_physician=ordering_physician.strip(),
            requesting_ward=requesting_ward.strip(),
            external_accession=external_accession,
            created_by=actor,
        )


# What a technician may correct on a registered sample (the patient is not: cancel and register anew).
SAMPLE_EDITABLE_FIELDS = frozenset({
    "collected_at", "received_at", "specimen_type", "stain", "priority", "clinical_notes", "wbc_count",
    "ordering_physician", "requesting_ward", "external_accession",
})


def sample_update(*, actor, sample: Sample, reason: str = "", **changes) -> Sample:
    """Correct a sample's details until it is first signed (audited with ``reason``)."""
    _require_role(actor, Role.TECHNICIAN)
    unknown = set(changes) - SAMPLE_EDITABLE_FIELDS
    if unknown:
        raise ValueError(f"Unknown or unchangeable sample fields: {', '.join(sorted(unknown))}")
    with transaction.atomic():
        locked = Sample.objects.select_for_update().get(pk=sample.pk)
        if not locked.is_editable:
            raise InvalidState(
                f"Sample {locked.accession_number} is {SampleStatus(locked.status).label.lower()}; "
                "its details can only be corrected before it is signed."
            )
        if changes.get("received_at", locked.received_at) is None:
            changes["received_at"] = locked.received_at
        if "collected_at" in changes or "received_at" in changes:
            _validate_sample_times(
                collected_at=changes.get("collected_at", locked.collected_at),
                received_at=changes.get("received_at", locked.received_at),
            )
        if "wbc_count" in changes:
            _validate_wbc_count(wbc_count=changes["wbc_count"])
        if "external_accession" in changes:
            changes["external_accession"] = _clean_external_accession(
                external_accession=changes["external_accession"], sample=locked
            )
        for name, value in changes.items():
            setattr(locked, name, value.strip() if isinstance(value, str) else value)
        with audit_context(actor=actor, reason=reason.strip()):
            locked.save()
    for name in changes:
        setattr(sample, name, getattr(locked, name))
    return sample


def sample_transition(*, sample: Sample, to_status: str, actor=None, reason: str = "") -> Sample:
    """Move a sample to ``to_status`` if the transition table allows it (row-locked)."""
    with transaction.atomic():
        locked = Sample.objects.select_for_update().get(pk=sample.pk)
        if to_status not in ALLOWED_TRANSITIONS[locked.status]:
            raise InvalidTransition(locked, to_status)
        locked.status = to_status
        locked.status_changed_at = timezone.now()
        with audit_context(actor=actor, reason=reason):
            locked.save(update_fields=["status", "status_changed_at", "updated_at"])
    sample.status = locked.status
    sample.status_changed_at = locked.status_changed_at
    return sample


def sample_cancel(*, actor, sample: Sample, reason: str) -> Sample:
    _require_role(actor, Role.TECHNICIAN, Role.DOCTOR)
    if not reason.strip():
        raise ValidationError({"reason": "A reason is required to cancel a sample."})
    return sample_transition(sample=sample, to_status=SampleStatus.CANCELLED, actor=actor, reason=reason)


# Images -------------------------------------------------------------------


@dataclass(frozen=True)
class UploadDecision:
    """What an accepted file was taken as (``UploadKind.CELL`` or ``FIELD``), and why."""

    filename: str
    kind: str
    reason: str


@dataclass
class UploadResult:
    accepted: list[CellImage] = field(default_factory=list)
    rejected: list[ImageRejected] = field(default_factory=list)
    fields: list[Field] = field(default_factory=list)
    decisions: list[UploadDecision] = field(default_factory=list)


def _decide_kind(*, kind: str, data: bytes) -> tuple[bool, str]:
    """(is it a field, why) for one validated upload."""
    if kind == UploadKind.FIELD:
        return True, "field: the technician uploaded it as a whole field"
    if kind == UploadKind.CELL:
        return False, "single cell: the technician uploaded it as a single-cell image"
    for _receiver, answer in upload_kind_requested.send(sender=Field, data=data):
        if answer is not None:
            return bool(answer[0]), str(answer[1])
    return False, "single cell: no field detector is installed"


def images_upload(
    *, actor, sample: Sample, files: Iterable[tuple[str, bytes | File]], kind: str = UploadKind.AUTO
) -> UploadResult:
    """Validate and store uploaded images; each bad file is rejected alone, the rest are kept.

    ``files`` yields (original file name, content as bytes or a file such as an upload); a file over
    the size limit is rejected without being read. ``kind`` says what the files are: single cells,
    whole fields, or ``auto`` to decide each from its image (``result.decisions`` says what was
    decided and why). Accepted cell images are queued for classification, fields for white-cell
    detection, once the transaction commits.
    """
    _require_role(actor, Role.TECHNICIAN)
    if kind not in UploadKind.values:
        raise ValidationError({"kind": f"Unknown kind {kind!r}; expected one of {', '.join(UploadKind.values)}."})
    result = UploadResult()
    # ``files`` is consumed lazily: one file's bytes in memory at a time, whatever the batch size.
    sample.refresh_from_db(fields=["status"])
    if not sample.accepts_uploads:
        label = SampleStatus(sample.status).label.lower()
        for name, _ in files:
            result.rejected.append(
                ImageRejected(name, f"sample {sample.accession_number} is {label} and accepts no new images")
            )
        return result

    seen = set(CellImage.objects.filter(sample=sample).values_list("sha256", flat=True))
    seen |= set(Field.objects.filter(sample=sample).values_list("sha256", flat=True))
    with audit_context(actor=actor):
        for name, content in files:
            try:
                data = read_image_file(filename=name, content=content)
                valid = validate_image_bytes(filename=name, data=data)
            except ImageRejected as exc:
                # A new one, without the traceback and context: their frames hold the file's bytes,
                # so keeping them would keep every rejected file of the request in memory.
                result.rejected.append(ImageRejected(exc.filename, exc.reason))
                continue
            if valid.sha256 in seen:
                result.rejected.append(ImageRejected(name, "the same image is already in this sample"))
                continue
            is_field, reason = _decide_kind(kind=kind, data=data)
            if is_field:
                stored = _field_store(actor=actor, sample=sample, name=name, valid=valid, reason=reason)
                if stored is None:
                    result.rejected.append(ImageRejected(name, "the same image is already in this sample"))
                    continue
                seen.add(valid.sha256)
                result.fields.append(stored)
                result.decisions.append(UploadDecision(name, UploadKind.FIELD, reason))
                continue
            try:
                with transaction.atomic():
                    image = CellImage(
                        sample=sample,
                        original_filename=name[:255],
                        image_format=valid.image_format,
                        sha256=valid.sha256,
                        size_bytes=len(data),
                        width=valid.width,
                        height=valid.height,
                        uploaded_by=actor,
                    )
                    # Stored as what it decoded as: the user's extension (".html", ".svg") is never kept.
                    image.file.save(f"cell{FORMAT_EXTENSIONS[valid.image_format]}", ContentFile(data), save=False)
                    image.save()
            except IntegrityError:
                image.file.delete(save=False)  # the row was not stored: neither is its file
                # A concurrent upload stored the same image first; anything else is a real error.
                if not CellImage.objects.filter(sample=sample, sha256=valid.sha256).exists():
                    raise
                result.rejected.append(ImageRejected(name, "the same image is already in this sample"))
                continue
            seen.add(valid.sha256)
            result.accepted.append(image)
            result.decisions.append(UploadDecision(name, UploadKind.CELL, reason))

        if result.accepted or result.fields:
            _after_images_added(sample=sample, actor=actor)
        if result.accepted:
            ids = [img.pk for img in result.accepted]
            transaction.on_commit(lambda: images_added.send(sender=Sample, image_ids=ids))
        if result.fields:
            field_ids = [f.pk for f in result.fields]
            transaction.on_commit(lambda: fields_added.send(sender=Sample, field_ids=field_ids))
    return result


def _field_store(*, actor, sample: Sample, name: str, valid, reason: str) -> Field | None:
    """Store one validated upload as a field waiting for detection; None if a concurrent upload
    stored the same image first."""
    try:
        with transaction.atomic():
            stored = Field(
                sample=sample,
                original_filename=name[:255],
                image_format=valid.image_format,
                sha256=valid.sha256,
                size_bytes=len(valid.data),
                width=valid.width,
                height=valid.height,
                uploaded_by=actor,
                decision=reason[:300],
            )
            stored.file.save(f"field{FORMAT_EXTENSIONS[valid.image_format]}", ContentFile(valid.data), save=False)
            stored.save()
    except IntegrityError:
        stored.file.delete(save=False)
        if not Field.objects.filter(sample=sample, sha256=valid.sha256).exists():
            raise
        return None
    return stored


def _after_images_added(*, sample: Sample, actor) -> None:
    # Registered samples wait for a worker ("images uploaded"); a worker moves them on to
    # "classifying". Samples already past that go back to classifying for the new images.
    if sample.status == SampleStatus.REGISTERED:
        sample_transition(sample=sample, to_status=SampleStatus.IMAGES_UPLOADED, actor=actor)
    elif sample.status in (SampleStatus.AWAITING_REVIEW, SampleStatus.AMENDED):
        sample_transition(sample=sample, to_status=SampleStatus.CLASSIFYING, actor=actor)


def image_set_status(*, image: CellImage, status: str, error_message: str = "") -> CellImage:
    image.status = status
    image.error_message = error_message
    image.status_changed_at = timezone.now()
    image.save(update_fields=["status", "error_message", "status_changed_at"])
    return image


def sample_refresh_classification_status(*, sample: Sample) -> Sample:
    """Move a classifying sample to awaiting review once none of its images is still pending
    and every field has been through the detector."""
    pending = (
        sample.images.filter(status__in=[ImageStatus.QUEUED, ImageStatus.CLASSIFYING]).exists()
        or sample.fields.filter(status__in=FIELD_PENDING_STATUSES).exists()
    )
    if not pending and sample.status == SampleStatus.CLASSIFYING:
        sample_transition(sample=sample, to_status=SampleStatus.AWAITING_REVIEW)
    return sample


# Fields -------------------------------------------------------------------


@dataclass(frozen=True)
class CellCut:
    """One white cell cut from a field: its box (field pixels, x1/y1 exclusive), whether the field's
    edge cuts it, the detector's score (None for a box a doctor drew) and the crop's image bytes."""

    box: tuple[int, int, int, int]
    touches_edge: bool
    content: bytes
    score: float | None = None


def field_set_status(*, field: Field, status: str, error_message: str = "") -> Field:
    field.status = status
    field.error_message = error_message
    field.status_changed_at = timezone.now()
    field.save(update_fields=["status", "error_message", "status_changed_at"])
    return field


def _cell_from_field(*, field: Field, cut: CellCut, name: str, origin: str, added_by=None) -> CellImage:
    valid = validate_image_bytes(filename=name, data=cut.content)
    x0, y0, x1, y1 = (int(v) for v in cut.box)
    image = CellImage(
        sample_id=field.sample_id,
        original_filename=name[:255],
        image_format=valid.image_format,
        sha256=valid.sha256,
        size_bytes=len(cut.content),
        width=valid.width,
        height=valid.height,
        # The technician who uploaded the field uploaded its cells (the four-eyes rule reads this).
        uploaded_by_id=field.uploaded_by_id,
        origin=origin,
        field=field,
        box_x0=x0, box_y0=y0, box_x1=x1, box_y1=y1,
        touches_edge=cut.touches_edge,
        detection_score=cut.score,
        added_by=added_by,
    )
    image.file.save(f"cell{FORMAT_EXTENSIONS[valid.image_format]}", ContentFile(cut.content), save=False)
    try:
        with transaction.atomic():
            image.save()
    except IntegrityError:
        image.file.delete(save=False)
        raise
    return image


def field_detection_store(
    *,
    field: Field,
    detector: str,
    rbc_count: int,
    platelet_count: int,
    elapsed_ms: float,
    cells: Sequence[CellCut],
) -> list[CellImage]:
    """Store what the detector found in ``field``: its counts and one ``CellImage`` per white cell
    (origin "detected", with its box), queued for classification after commit. Idempotent: a field
    already detected keeps its cells and nothing is stored (returns [])."""
    stem = PurePosixPath(field.original_filename).stem or "field"
    with transaction.atomic(), audit_context(reason=f"white cells detected by {detector}"):
        locked = Field.objects.select_for_update().get(pk=field.pk)
        if locked.status not in FIELD_PENDING_STATUSES:
            return []
        stored = [
            _cell_from_field(field=locked, cut=cut, name=f"{stem}-cell{i}.png", origin=CellOrigin.DETECTED)
            for i, cut in enumerate(cells, start=1)
        ]
        locked.detector = detector
        locked.white_cells_found = len(cells)
        locked.rbc_count = rbc_count
        locked.platelet_count = platelet_count
        locked.detection_ms = elapsed_ms
        locked.detected_at = timezone.now()
        locked.status = FieldStatus.DETECTED
        locked.error_message = ""
        locked.status_changed_at = locked.detected_at
        locked.save()
        if stored:
            ids = [img.pk for img in stored]
            transaction.on_commit(lambda: images_added.send(sender=Sample, image_ids=ids))
    field.refresh_from_db()
    return stored


def field_cell_store(*, field: Field, cut: CellCut, actor) -> CellImage:
    """Store a white cell a doctor marked on ``field`` (origin "added"), queued for classification
    like any other cell; the sample goes back to classifying until it is. The caller (the doctor's
    review service) checks the role and the sample's state."""
    stem = PurePosixPath(field.original_filename).stem or "field"
    with transaction.atomic(), audit_context(actor=actor, reason="white cell added on the field by a doctor"):
        sample = Sample.objects.select_for_update().get(pk=field.sample_id)
        n = field.cells.count() + 1
        try:
            image = _cell_from_field(
                field=field, cut=cut, name=f"{stem}-added{n}.png", origin=CellOrigin.ADDED, added_by=actor
            )
        except IntegrityError:
            raise ValidationError({"box": "This box, or one giving the same crop, is already a cell of this field."})
        _after_images_added(sample=sample, actor=actor)
        transaction.on_commit(lambda: images_added.send(sender=Sample, image_ids=[image.pk]))
    return image
