"""Writes of the doctor's work: reviewing cells, comments, sign-off and amendments."""
from __future__ import annotations

import hashlib
import json

from django.db import transaction
from django.utils import timezone

from accounts.roles import Role, has_role
from accounts.services import password_recheck

from . import review_selectors as rs
from .audit import audit_context, record_event
from .cell_classes import EXCLUDED, FINAL_CLASS_CHOICES
from .models import (
    Amendment,
    CellImage,
    CellReview,
    ImageStatus,
    Sample,
    SampleStatus,
    Signature,
    SignatureMeaning,
)
from .services import NotAllowed, sample_transition

VALID_FINAL = {c for c, _ in FINAL_CLASS_CHOICES}


class SignOffBlocked(Exception):
    """Sign-off is refused; the message says why."""


class WrongPassword(SignOffBlocked):
    """The signer's password did not match, or password entry is locked out (one answer for both)."""


SIGN_REFUSED = (
    "The password is not correct, or password entry is locked after repeated failures; the sample was not signed."
)


def _require_doctor(actor) -> None:
    if not has_role(actor, Role.DOCTOR):
        raise NotAllowed("Only doctors review and sign samples.")


def _require_reviewable(sample: Sample) -> None:
    if sample.status not in rs.REVIEWABLE_STATUSES:
        raise NotAllowed(
            f"Sample {sample.accession_number} is {SampleStatus(sample.status).label.lower()}; "
            "only samples awaiting review or reopened for amendment can be changed."
        )


def cell_review(*, actor, image: CellImage, final_class: str, comment: str | None = None) -> CellReview:
    """Confirm or reclassify one cell (``EXCLUDED`` = not classified / excluded from the count)."""
    _require_doctor(actor)
    if final_class not in VALID_FINAL:
        raise ValueError(f"Unknown class {final_class!r}; expected one of {', '.join(sorted(VALID_FINAL))}.")
    with transaction.atomic(), audit_context(actor=actor):
        sample = Sample.objects.select_for_update().get(pk=image.sample_id)
        _require_reviewable(sample)
        if image.status != ImageStatus.CLASSIFIED:
            raise NotAllowed(f"Image {image.original_filename} has not been classified.")
        prediction = image.predictions.order_by("-created_at").first()
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


def group_confirm(*, actor, sample: Sample, ai_class: str) -> int:
    """Confirm the AI's class for every unreviewed cell of one group (not the unidentified one)."""
    _require_doctor(actor)
    if ai_class not in rs.CLASSES:
        raise ValueError("Only a class group can be confirmed in bulk; unidentified cells need one look each.")
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
    """Every reason the sample cannot be signed now (empty list: it can)."""
    reasons = []
    if sample.status not in rs.REVIEWABLE_STATUSES:
        reasons.append(f"the sample is {SampleStatus(sample.status).label.lower()}")
    if sample.images.filter(status__in=[ImageStatus.QUEUED, ImageStatus.CLASSIFYING]).exists():
        reasons.append("some images are still being classified")
    rows = rs.review_cells(sample=sample)
    if not rows:
        reasons.append("the sample has no classified cells")
    unreviewed = sum(1 for r in rows if r.review is None)
    unidentified = sum(1 for r in rows if r.group == rs.UNIDENTIFIED)
    if unidentified:
        reasons.append(f"{unidentified} cell(s) remain in the unidentified group")
    if unreviewed:
        reasons.append(f"{unreviewed} cell(s) are not reviewed")
    if rows and all(r.final_class == EXCLUDED for r in rows if r.review):
        reasons.append("every cell is excluded; nothing to report")
    if actor is not None and sample.images.filter(uploaded_by=actor).exists():
        reasons.append("you uploaded images of this sample; another doctor must sign it (four-eyes)")
    return reasons


def _snapshot(*, sample: Sample, rows) -> dict:
    diff = rs.differential(rows=rows, wbc_count=sample.wbc_count)
    return {
        "accession_number": sample.accession_number,
        "patient": {"mrn": sample.patient.mrn, "name": sample.patient.full_name},
        "differential": diff.as_dict(),
        "sample_comment": sample.review_comment,
        "cells": [
            {
                "image_id": r.image.pk,
                "file": r.image.original_filename,
                "ai_class": r.ai_class,
                "confidence": r.prediction.confidence if r.prediction else None,
                "unidentified": bool(r.prediction and r.prediction.unidentified),
                "model_version": r.prediction.model_version.name if r.prediction else None,
                "final_class": r.final_class,
                "comment": r.review.comment if r.review else "",
                "reviewed_by": r.review.reviewed_by.get_printed_name() if r.review else None,
            }
            for r in rows
        ],
        "model_versions": sorted({r.prediction.model_version.name for r in rows if r.prediction}),
    }


def sample_sign(
    *,
    actor,
    sample: Sample,
    password: str,
    meaning: str = SignatureMeaning.REVIEWED_APPROVED,
    ip_address: str | None = None,
) -> Signature:
    """Electronic signature: re-authentication with the password, four-eyes, every cell reviewed.

    The sample's state is checked before the password, so the answer for a sample that cannot be
    signed is the same whatever password was given (no password oracle). The password is counted
    like a sign-in (``accounts.services.password_recheck``): a wrong one is a failure for the
    doctor's username and ``ip_address``, and once locked every password gets ``WrongPassword``.
    """
    _require_doctor(actor)
    if meaning not in SignatureMeaning.values:
        raise ValueError("Unknown signature meaning.")
    blockers = sign_off_blockers(sample=Sample.objects.get(pk=sample.pk), actor=actor)
    if blockers:
        raise SignOffBlocked("Sign-off is blocked: " + "; ".join(blockers) + ".")
    # Outside the transaction below: a refusal raises, and the failure count and audit row must stay.
    if not password_recheck(user=actor, password=password, ip_address=ip_address):
        record_event(action="signature_failed", actor=actor, obj=sample, reason="wrong password or locked out")
        raise WrongPassword(SIGN_REFUSED)
    with transaction.atomic(), audit_context(actor=actor):
        locked = Sample.objects.select_for_update().select_related("patient").get(pk=sample.pk)
        blockers = sign_off_blockers(sample=locked, actor=actor)
        if blockers:
            raise SignOffBlocked("Sign-off is blocked: " + "; ".join(blockers) + ".")
        rows = rs.review_cells(sample=locked)
        snapshot = _snapshot(sample=locked, rows=rows)
        encoded = json.dumps(snapshot, sort_keys=True, separators=(",", ":")).encode()
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
            snapshot_sha256=hashlib.sha256(encoded).hexdigest(),
        )
        sample_transition(sample=locked, to_status=SampleStatus.SIGNED, actor=actor, reason="electronic signature")
    sample.status = locked.status
    return signature


def sample_amend(*, actor, sample: Sample, reason: str) -> Amendment:
    """Reopen a signed sample; the signed version stays readable, a new signature is needed."""
    _require_doctor(actor)
    if not reason or not reason.strip():
        raise ValueError("An amendment needs a reason.")
    with transaction.atomic(), audit_context(actor=actor, reason=reason.strip()):
        locked = Sample.objects.select_for_update().get(pk=sample.pk)
        if locked.status != SampleStatus.SIGNED:
            raise NotAllowed("Only a signed sample can be amended.")
        amendment = Amendment.objects.create(
            sample=locked,
            reason=reason.strip(),
            requested_by=actor,
            previous_signature=locked.signatures.order_by("-version").first(),
        )
        sample_transition(sample=locked, to_status=SampleStatus.AMENDED, actor=actor, reason=reason.strip())
    sample.status = locked.status
    return amendment
