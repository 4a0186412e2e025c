"""Writes of the doctor's work: reviewing cells, comments, sign-off and amendments."""
from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from accounts.roles import Role, has_role
from accounts.services import password_recheck
from audit.services import audit_context, record_event
from cases.cell_classes import EXCLUDED, FINAL_CLASS_CHOICES
from cases.errors import InvalidState, NotAllowed
from cases.models import FIELD_PENDING_STATUSES, CellImage, Field, ImageStatus, Sample, SampleStatus
from cases.services import CellCut, field_cell_store, sample_transition
from classifier.fields import crop_png
from classifier.selectors import latest_prediction

from . import selectors as rs
from .models import Amendment, CellReview, ReferenceRange, Signature, SignatureMeaning

VALID_FINAL = {c for c, _ in FINAL_CLASS_CHOICES}


class SignOffBlocked(InvalidState):
    """Sign-off is refused; the message says why (409, with the reasons)."""


class WrongPassword(Exception):
    """The signer's password did not match, or password entry is locked out (one answer for both)."""


SIGN_REFUSED = (
    "The password is not correct, or password entry is locked after repeated failures; the sample was not signed."
)


def _require_doctor(actor) -> None:
    if not has_role(actor, Role.DOCTOR):
        raise NotAllowed("Only doctors review and sign samples.")


def _require_reviewable(sample: Sample) -> None:
    if sample.status not in rs.REVIEWABLE_STATUSES:
        raise InvalidState(
            f"Sample {sample.accession_number} is {SampleStatus(sample.status).label.lower()}; "
            "only samples awaiting review or reopened for amendment can be changed."
        )


def cell_review(*, actor, image: CellImage, final_class: str, comment: str | None = None) -> CellReview:
    """Confirm or reclassify one cell (``EXCLUDED`` = not classified / excluded from the count)."""
    _require_doctor(actor)
    if final_class not in VALID_FINAL:
        raise ValidationError(
            {"final_class": f"Unknown class {final_class!r}; expected one of {', '.join(sorted(VALID_FINAL))}."}
        )
    with transaction.atomic(), audit_context(actor=actor):
        sample = Sample.objects.select_for_update().get(pk=image.sample_id)
        _require_reviewable(sample)
        if image.status != ImageStatus.CLASSIFIED:
            raise InvalidState(f"Image {image.original_filename} has not been classified.")
        prediction = latest_prediction(image=image)
        review = CellReview.objects.filter(image=image).first()
        if review is None:
            review = CellReview(image=image, reviewed_by=actor)
            review.ai_class = prediction.predicted_class if prediction else ""
            review.ai_unidentified = bool(prediction and prediction.unidentified)
        review.final_class = final_class
        if comment is not None:
            review.comment = comment.strip()
        review.reviewed_by = actor
        review.reviewed_at = timezone.now()
        review.save()
    return review


def cell_comment_set(*, actor, image: CellImage, comment: str) -> CellReview:
    """Change only the comment of a reviewed cell: its class and review status stay as they are.
    An unreviewed cell has no verdict to comment on yet (the comment goes with its verdict)."""
    _require_doctor(actor)
    with transaction.atomic(), audit_context(actor=actor):
        _require_reviewable(Sample.objects.select_for_update().get(pk=image.sample_id))
        review = CellReview.objects.select_for_update().filter(image=image).first()
        if review is None:
            raise ValidationError(
                {"comment": "This cell is not reviewed yet: classify or confirm it, and the comment is saved with it."}
            )
        review.comment = comment.strip()
        review.save(update_fields=["comment"])
    return review


def group_confirm(*, actor, sample: Sample, ai_class: str) -> int:
    """Confirm the AI's class for every unreviewed cell of one group (not the unidentified one)."""
    _require_doctor(actor)
    if ai_class not in rs.CLASSES:
        raise ValidationError(
            {"ai_class": "Only a class group can be confirmed in bulk; unidentified cells need one look each."}
        )
    count = 0
    with transaction.atomic():
        # Checked here too, not only per cell: a locked sample with nothing left to confirm is refused.
        _require_reviewable(Sample.objects.select_for_update().get(pk=sample.pk))
        for row in rs.review_cells(sample=sample):
            if row.review is None and row.group == ai_class:
                cell_review(actor=actor, image=row.image, final_class=ai_class)
                count += 1
    return count


def sample_comment_set(*, actor, sample: Sample, comment: str) -> Sample:
    _require_doctor(actor)
    with transaction.atomic(), audit_context(actor=actor):
        locked = Sample.objects.select_for_update().get(pk=sample.pk)
        _require_reviewable(locked)
        locked.review_comment = comment.strip()
        locked.save(update_fields=["review_comment", "updated_at"])
    sample.review_comment = locked.review_comment
    return sample


def sign_off_blockers(*, sample: Sample, actor=None) -> list[str]:
    """Every reason the sample cannot be signed now (empty list: it can). Too few cells counted is
    not one of them: the doctor may sign with a reason (:func:`minimum_count_shortfall`)."""
    reasons = []
    if sample.status not in rs.REVIEWABLE_STATUSES:
        reasons.append(f"the sample is {SampleStatus(sample.status).label.lower()}")
    if sample.images.filter(status__in=[ImageStatus.QUEUED, ImageStatus.CLASSIFYING]).exists():
        reasons.append("some images are still being classified")
    if sample.fields.filter(status__in=FIELD_PENDING_STATUSES).exists():
        reasons.append("some fields are still being searched for white cells")
    rows = rs.review_cells(sample=sample)
    if not rows:
        reasons.append("the sample has no classified cells")
    unreviewed = sum(1 for r in rows if r.review is None)
    unidentified = sum(1 for r in rows if r.group == rs.UNIDENTIFIED)
    excluded = sum(1 for r in rows if r.final_class == EXCLUDED)
    if unidentified:
        reasons.append(f"{unidentified} cell(s) remain in the unidentified group")
    if unreviewed:
        reasons.append(f"{unreviewed} cell(s) are not reviewed")
    if rows and excluded == len(rows):
        reasons.append("every cell is excluded; nothing to report")
    if actor is not None and sample.images.filter(uploaded_by=actor).exists():
        reasons.append("you uploaded images of this sample; another doctor must sign it (four-eyes)")
    return reasons


def minimum_count_shortfall(*, counted: int, unreviewed: int = 0) -> str:
    """Why ``counted`` cells are too few for the lab (``HV_MIN_CELLS_FOR_SIGNOFF``), or "" when enough.
    During the review, cells still ``unreviewed`` may yet be counted: "" while they could make it."""
    minimum = settings.HV_MIN_CELLS_FOR_SIGNOFF
    if counted + unreviewed >= minimum:
        return ""
    pending = f" ({unreviewed} more still to review)" if unreviewed else ""
    return (
        f"Only {counted} cell(s) counted{pending}; the lab's minimum for a differential is {minimum}. "
        "Count more cells, or give the reason for signing anyway (it is printed on the report)."
    )


STALE_RESULT = (
    "The result changed since you loaded the page (another change was saved); reload the page, "
    "check the result and sign again."
)


def _check_signable(*, sample: Sample, actor, result_sha256: str | None, count_override_reason: str) -> dict:
    """The sign-off rules in order: blockers (409), the result the doctor saw (409), the minimum
    count (400 on ``count_override_reason``). Answers the current result snapshot."""
    blockers = sign_off_blockers(sample=sample, actor=actor)
    if blockers:
        raise SignOffBlocked("Sign-off is blocked: " + "; ".join(blockers) + ".")
    snapshot = rs.result_snapshot(sample=sample)
    if result_sha256 is not None and result_sha256 != rs.result_sha256(snapshot):
        raise InvalidState(STALE_RESULT)
    shortfall = minimum_count_shortfall(counted=snapshot["differential"]["final_total"])
    if shortfall and not count_override_reason:
        raise ValidationError({"count_override_reason": shortfall})
    return snapshot


def sample_sign(
    *,
    actor,
    sample: Sample,
    password: str,
    meaning: str = SignatureMeaning.REVIEWED_APPROVED,
    ip_address: str | None = None,
    result_sha256: str | None = None,
    count_override_reason: str = "",
) -> Signature:
    """Electronic signature: re-authentication with the password, four-eyes, every cell reviewed.

    ``result_sha256`` is the hash of the result the doctor saw (the review page sends the one it
    shows); when given and the result on the server is another, the signature is refused
    (``InvalidState``). Fewer cells than ``HV_MIN_CELLS_FOR_SIGNOFF`` need ``count_override_reason``
    (``ValidationError`` on that field), which the snapshot keeps and the report prints.

    The sample's state is checked before the password, so the answer for a sample that cannot be
    signed is the same whatever password was given (no password oracle). The password is counted
    like a sign-in (``accounts.services.password_recheck``): a wrong one is a failure for the
    doctor's username and ``ip_address``, and once locked every password gets ``WrongPassword``.
    """
    _require_doctor(actor)
    if meaning not in SignatureMeaning.values:
        raise ValidationError({"meaning": "Unknown signature meaning."})
    count_override_reason = (count_override_reason or "").strip()
    _check_signable(sample=Sample.objects.select_related("patient").get(pk=sample.pk), actor=actor,
                    result_sha256=result_sha256, count_override_reason=count_override_reason)
    # Outside the transaction below: a refusal raises, and the failure count and audit row must stay.
    if not password_recheck(user=actor, password=password, ip_address=ip_address):
        record_event(action="signature_failed", actor=actor, obj=sample, reason="wrong password or locked out")
        raise WrongPassword(SIGN_REFUSED)
    with transaction.atomic(), audit_context(actor=actor):
        locked = Sample.objects.select_for_update().select_related("patient").get(pk=sample.pk)
        snapshot = _check_signable(sample=locked, actor=actor, result_sha256=result_sha256,
                                   count_override_reason=count_override_reason)
        counted = snapshot["differential"]["final_total"]
        if minimum_count_shortfall(counted=counted):
            # Signed below the lab's minimum: the reason is part of the signed record.
            snapshot["minimum_count"] = {
                "required": settings.HV_MIN_CELLS_FOR_SIGNOFF, "counted": counted,
                "override_reason": count_override_reason,
            }
        last = locked.signatures.order_by("-version").first()
        amendment = locked.amendments.order_by("-requested_at").first() if last else None
        signature = Signature.objects.create(
            sample=locked,
            signer=actor,
            printed_name=actor.get_printed_name(),
            meaning=meaning,
            version=(last.version + 1) if last else 1,
            amendment_reason=amendment.reason if amendment else "",
            snapshot=snapshot,
            snapshot_sha256=rs.result_sha256(snapshot),
        )
        sample_transition(sample=locked, to_status=SampleStatus.SIGNED, actor=actor, reason="electronic signature")
    sample.status = locked.status
    return signature


def sample_amend(*, actor, sample: Sample, reason: str) -> Amendment:
    """Reopen a signed sample; the signed version stays readable, a new signature is needed."""
    _require_doctor(actor)
    if not reason or not reason.strip():
        raise ValidationError({"reason": "An amendment needs a reason."})
    with transaction.atomic(), audit_context(actor=actor, reason=reason.strip()):
        locked = Sample.objects.select_for_update().get(pk=sample.pk)
        if locked.status != SampleStatus.SIGNED:
            raise InvalidState("Only a signed sample can be amended.")
        amendment = Amendment.objects.create(
            sample=locked,
            reason=reason.strip(),
            requested_by=actor,
            previous_signature=locked.signatures.order_by("-version").first(),
        )
        sample_transition(sample=locked, to_status=SampleStatus.AMENDED, actor=actor, reason=reason.strip())
    sample.status = locked.status
    return amendment


# Whole fields: cells the detector missed or found wrongly ----------------------------

MIN_BOX_SIDE = 8  # field px: a smaller box is a slip of the mouse, not a cell


def _clean_box(*, field: Field, box) -> tuple[int, int, int, int]:
    try:
        x0, y0, x1, y1 = (int(round(float(v))) for v in box)
    except (TypeError, ValueError):
        raise ValidationError({"box": "A box is four numbers: x0, y0, x1, y1 (field pixels)."}) from None
    # Clipped to the field (a box dragged past its edge ends at the edge), corners in either order.
    x0, x1 = sorted(min(max(0, v), field.width) for v in (x0, x1))
    y0, y1 = sorted(min(max(0, v), field.height) for v in (y0, y1))
    if x1 - x0 < MIN_BOX_SIDE or y1 - y0 < MIN_BOX_SIDE:
        raise ValidationError(
            {"box": f"The box must lie on the {field.width}x{field.height} field and be at least "
                    f"{MIN_BOX_SIDE} px on each side."}
        )
    return x0, y0, x1, y1


def field_cell_add(*, actor, field: Field, box) -> CellImage:
    """A white cell the detector missed: the doctor's box on ``field`` becomes a cell (origin
    "added", audited) that the queue classifies like any other; the sample goes back to
    classifying until it is, and sign-off waits for its review like every cell's."""
    _require_doctor(actor)
    box = _clean_box(field=field, box=box)
    sample = Sample.objects.get(pk=field.sample_id)
    _require_reviewable(sample)
    with field.file.open("rb") as fh:
        content = crop_png(field_image=fh.read(), box=box)
    edge = box[0] == 0 or box[1] == 0 or box[2] >= field.width or box[3] >= field.height
    with transaction.atomic():
        _require_reviewable(Sample.objects.select_for_update().get(pk=sample.pk))
        return field_cell_store(field=field, cut=CellCut(box=box, touches_edge=edge, content=content), actor=actor)


def field_cell_reject(*, actor, image: CellImage, reason: str = "") -> CellImage:
    """A detection that is not a white cell: kept with who rejected it, when and why (audited),
    and out of the differential and the sign-off count from now on."""
    _require_doctor(actor)
    if image.field_id is None:
        raise InvalidState("Only a cell found on a field can be rejected; exclude an uploaded cell instead.")
    with transaction.atomic(), audit_context(actor=actor, reason=reason.strip() or "not a white cell"):
        _require_reviewable(Sample.objects.select_for_update().get(pk=image.sample_id))
        locked = CellImage.objects.select_for_update().get(pk=image.pk)
        if locked.rejected_at is not None:
            raise InvalidState(f"{locked.original_filename} is already rejected.")
        locked.rejected_at = timezone.now()
        locked.rejected_by = actor
        locked.rejection_reason = reason.strip()
        locked.save(update_fields=["rejected_at", "rejected_by", "rejection_reason"])
    return locked


def field_cell_restore(*, actor, image: CellImage) -> CellImage:
    """Undo a rejection: the cell counts again (audited)."""
    _require_doctor(actor)
    with transaction.atomic(), audit_context(actor=actor, reason="rejection withdrawn"):
        _require_reviewable(Sample.objects.select_for_update().get(pk=image.sample_id))
        locked = CellImage.objects.select_for_update().get(pk=image.pk)
        if locked.rejected_at is None:
            raise InvalidState(f"{locked.original_filename} is not rejected.")
        locked.rejected_at = None
        locked.rejected_by = None
        locked.rejection_reason = ""
        locked.save(update_fields=["rejected_at", "rejected_by", "rejection_reason"])
    return locked


# Reference ranges ----------------------------------------------------------------


def reference_range_update(
    *, actor, reference_range: ReferenceRange, percent_low, percent_high, absolute_low, absolute_high, source: str
) -> ReferenceRange:
    """An admin changes the lab's reference interval of one cell type (audited). Signed reports keep
    the interval they were signed with (it is in their snapshot)."""
    if not has_role(actor, Role.ADMIN):
        raise NotAllowed("Only admins change the lab's reference ranges.")
    errors = {}
    if percent_low > percent_high:
        errors["percent_high"] = "The upper limit must not be below the lower one."
    if absolute_low > absolute_high:
        errors["absolute_high"] = "The upper limit must not be below the lower one."
    if not (source or "").strip():
        errors["source"] = "Name the source of the interval (book, edition, table, or the lab's own study)."
    if errors:
        raise ValidationError(errors)
    with transaction.atomic(), audit_context(actor=actor):
        locked = ReferenceRange.objects.select_for_update().get(pk=reference_range.pk)
        locked.percent_low, locked.percent_high = percent_low, percent_high
        locked.absolute_low, locked.absolute_high = absolute_low, absolute_high
        locked.source = source.strip()
        locked.save()
    return locked
