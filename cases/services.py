"""Writes to the case records. Views, forms, tasks and the API call these, nothing else writes."""
from __future__ import annotations

import datetime
from collections.abc import Iterable
from dataclasses import dataclass, field

from django.core.exceptions import ValidationError
from django.core.files import File
from django.core.files.base import ContentFile
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from accounts.roles import Role, has_role

from .audit import audit_context
from .models import (
    ALLOWED_TRANSITIONS,
    AccessionCounter,
    CellImage,
    ImageStatus,
    Patient,
    Sample,
    SampleStatus,
)
from .validation import FORMAT_EXTENSIONS, ImageRejected, read_image_file, validate_image_bytes


class InvalidTransition(Exception):
    def __init__(self, sample: Sample, to_status: str):
        self.from_status = sample.status
        self.to_status = to_status
        super().__init__(
            f"Sample {sample.accession_number} cannot go from "
            f"'{SampleStatus(sample.status).label}' to '{SampleStatus(to_status).label}'."
        )


class NotAllowed(Exception):
    """The acting user's role or relation to the record does not allow this action."""


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
    *, actor, mrn: str, family_name: str, given_name: str, date_of_birth: datetime.date, sex: str
) -> Patient:
    _require_role(actor, Role.TECHNICIAN)
    _validate_date_of_birth(date_of_birth=date_of_birth)
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
) -> Sample:
    _require_role(actor, Role.TECHNICIAN)
    received_at = received_at or timezone.now()
    _validate_sample_times(collected_at=collected_at, received_at=received_at)
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
            created_by=actor,
        )


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
        raise ValueError("A reason is required to cancel a sample.")
    return sample_transition(sample=sample, to_status=SampleStatus.CANCELLED, actor=actor, reason=reason)


# Images -------------------------------------------------------------------


@dataclass
class UploadResult:
    accepted: list[CellImage] = field(default_factory=list)
    rejected: list[ImageRejected] = field(default_factory=list)


def images_upload(*, actor, sample: Sample, files: Iterable[tuple[str, bytes | File]]) -> UploadResult:
    """Validate and store uploaded images; each bad file is rejected alone, the rest are kept.

    ``files`` yields (original file name, content as bytes or a file such as an upload); a file over
    the size limit is rejected without being read. Accepted images are queued for
    classification once the transaction commits.
    """
    _require_role(actor, Role.TECHNICIAN)
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

        if result.accepted:
            _after_images_added(sample=sample, actor=actor)
            ids = [img.pk for img in result.accepted]
            transaction.on_commit(lambda: _enqueue_classification(image_ids=ids))
    return result


def _after_images_added(*, sample: Sample, actor) -> None:
    # Registered samples wait for a worker ("images uploaded"); a worker moves them on to
    # "classifying". Samples already past that go back to classifying for the new images.
    if sample.status == SampleStatus.REGISTERED:
        sample_transition(sample=sample, to_status=SampleStatus.IMAGES_UPLOADED, actor=actor)
    elif sample.status in (SampleStatus.AWAITING_REVIEW, SampleStatus.AMENDED):
        sample_transition(sample=sample, to_status=SampleStatus.CLASSIFYING, actor=actor)


def _enqueue_classification(*, image_ids: list[int]) -> None:
    from classifier.services import enqueue_classification

    enqueue_classification(image_ids=image_ids)


def image_set_status(*, image: CellImage, status: str, error_message: str = "") -> CellImage:
    image.status = status
    image.error_message = error_message
    image.status_changed_at = timezone.now()
    image.save(update_fields=["status", "error_message", "status_changed_at"])
    return image


def sample_refresh_classification_status(*, sample: Sample) -> Sample:
    """Move a classifying sample to awaiting review once none of its images is still pending."""
    pending = sample.images.filter(status__in=[ImageStatus.QUEUED, ImageStatus.CLASSIFYING]).exists()
    if not pending and sample.status == SampleStatus.CLASSIFYING:
        sample_transition(sample=sample, to_status=SampleStatus.AWAITING_REVIEW)
    return sample


def orphan_media_delete(*, older_than: datetime.timedelta, storage=None) -> list[str]:
    """Delete the files :func:`cases.selectors.orphan_media_files` finds; returns their names.
    Each file is re-checked against the database right before it goes, so a row committed
    meanwhile keeps its file."""
    from django.core.files.storage import default_storage

    from classifier.models import Prediction

    from .selectors import orphan_media_files

    storage = storage or default_storage
    deleted = []
    for name in orphan_media_files(older_than=older_than, storage=storage):
        if CellImage.objects.filter(file=name).exists() or Prediction.objects.filter(heatmap=name).exists():
            continue
        storage.delete(name)
        deleted.append(name)
    return deleted
