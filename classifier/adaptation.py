"""Fitting the model to this lab (issue 16): candidate runs, the shadow model, signed activation.

The training itself is ``training.adapt`` (no Django in it); this module is the app around it:

* ``candidate_run_start`` (an admin) checks the floor on the doctor-confirmed cells of signed
  samples, stores that training set on a ``CandidateRun`` and queues ``classifier.train_candidate``
  on the ``training`` queue, so classification never waits behind it.
* ``candidate_run_execute`` (the task) holds out whole samples, fine-tunes from the run's base
  version with ``train_candidate``, writes progress to the run row, and ends the run as succeeded
  (a registered, inactive ``ModelVersion`` with its card and the comparison) or failed with a reason.
* ``model_version_shadow_set`` / ``model_version_shadow_clear``: one version at a time classifies
  every new image beside the active one (``classifier.services``); reviewers never see it.
* ``model_version_activate_signed``: activation and rollback need the password, as a sign-off
  does, and a reason; a ``ModelActivation`` row records who, when, and the comparison.

The confirmed cells are the doctors' verdicts, which the review app owns; the classifier asks for
them with the ``classifier.signals.confirmed_cells_wanted`` signal (the apps depend one way).
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from celery import current_app
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.files.storage import default_storage
from django.db import transaction
from django.utils import timezone

from accounts.roles import Role, has_role
from accounts.services import password_recheck
from audit.services import audit_context, record_event
from cases.cell_classes import CELL_CLASSES
from cases.errors import InvalidState, NotAllowed
from cases.models import CellImage
from training.adapt import (
    AdaptConfig,
    CandidateFailed,
    LabeledCell,
    Progress,
    Replay,
    check_floor,
    split_by_sample,
    train_candidate,
)

from . import selectors, services
from .models import ActivationKind, CandidateRun, CandidateRunStatus, ModelActivation, ModelVersion
from .signals import confirmed_cells_wanted

logger = logging.getLogger(__name__)

OTHER = "OTHER"  # the model's "none of the five" output (training.labs.OTHER)
ACTIVATION_REFUSED = (
    "The password is not correct, or password entry is locked after repeated failures; "
    "the model version was not activated."
)


class WrongPassword(Exception):
    """The password did not match, or password entry is locked out (one answer for both)."""


class RunCancelled(Exception):
    """An admin cancelled the run while it trained (raised from the progress callback)."""


@dataclass(frozen=True)
class ConfirmedCell:
    """A cell of a signed sample with the doctor's final class (never an excluded cell)."""

    image_id: int
    sample_id: int
    label: str


@dataclass(frozen=True)
class Readiness:
    """The confirmed cells per class against the floor; ``shortfalls`` empty: a run may start."""

    counts: dict[str, int]
    floor: int
    shortfalls: list[str]

    @property
    def ready(self) -> bool:
        return not self.shortfalls


def _require_admin(actor) -> None:
    if not has_role(actor, Role.ADMIN):
        raise NotAllowed("Only admins train, shadow and activate model versions.")


# The training set ---------------------------------------------------------------------------


def confirmed_cells() -> list[ConfirmedCell]:
    """Every doctor-confirmed cell of a signed sample, from the app that owns the verdicts."""
    responses = confirmed_cells_wanted.send(sender=CandidateRun)
    if not responses:
        raise RuntimeError("No app answers classifier.signals.confirmed_cells_wanted (review app missing?)")
    return [cell for _, answer in responses for cell in answer]


def model_card(version: ModelVersion) -> dict:
    if not version.card_path:
        return {}
    path = services.resolve_path(version.card_path)
    return json.loads(path.read_text()) if path.exists() else {}


def _cell_classes(card: dict) -> list[str]:
    """The cell classes a model suggests (its outputs but OTHER); the five without a card."""
    classes = card.get("classes") or list(CELL_CLASSES)
    return [c for c in classes if c != OTHER]


def readiness(*, cells: list[ConfirmedCell] | None = None, version: ModelVersion | None = None) -> Readiness:
    """The floor rule (``HV_ADAPT_MIN_CELLS_PER_CLASS`` confirmed cells of every class the active
    model suggests), with ``training.adapt.check_floor``'s messages."""
    cells = confirmed_cells() if cells is None else cells
    version = version or selectors.active_model_version()
    classes = _cell_classes(model_card(version)) if version else list(CELL_CLASSES)
    counts = Counter(c.label for c in cells)
    floor = settings.HV_ADAPT_MIN_CELLS_PER_CLASS
    short = check_floor({c: counts.get(c, 0) for c in classes}, floor=floor, classes=classes)
    return Readiness({c: counts.get(c, 0) for c in classes}, floor, [str(s) for s in short])


# Starting, running and cancelling a candidate ---------------------------------------------


def _send_training_to_broker(run_id: int) -> None:
    current_app.signature("classifier.train_candidate", args=(run_id,)).apply_async()


def candidate_run_enqueue(*, run_id: int) -> None:
    """Wake a training worker (after commit). A lost message leaves the run queued; starting it
    again is refused while it is, so an admin cancels it and starts a new one."""
    try:
        _send_training_to_broker(run_id)
    except Exception:  # noqa: BLE001 - the run stays queued and says so on its page
        logger.exception("Could not enqueue candidate run %s", run_id)


def candidate_run_start(*, actor) -> CandidateRun:
    """Queue the training of a candidate from the active model on the lab's confirmed cells.

    Refused (``ValidationError`` on ``cells``) while any class the model suggests has fewer confirmed
    cells than the floor, saying how many more each needs; refused (``InvalidState``) without an
    active model or while another run is unfinished."""
    _require_admin(actor)
    with transaction.atomic(), audit_context(actor=actor):
        base = ModelVersion.objects.select_for_update().filter(is_active=True).first()
        if base is None:
            raise InvalidState("No model version is active: there is nothing to fine-tune from.")
        unfinished = selectors.candidate_run_unfinished()
        if unfinished is not None:
            raise InvalidState(f"Candidate run {unfinished.pk} is still {unfinished.status}: one run at a time.")
        classes = set(_cell_classes(model_card(base)))
        cells = [c for c in confirmed_cells() if c.label in classes]
        ready = readiness(cells=cells, version=base)
        if not ready.ready:
            raise ValidationError(
                {"cells": ["Not enough confirmed cells to train a candidate.", *ready.shortfalls]}
            )
        run = CandidateRun.objects.create(
            started_by=actor,
            base_version=base,
            cells=[[c.image_id, c.sample_id, c.label] for c in cells],
            cell_counts=ready.counts,
            progress={"stage": "queued"},
        )
        record_event(
            action="candidate_run_started", obj=run, new_values={"base_version": base.name, "cells": ready.counts}
        )
        transaction.on_commit(lambda: candidate_run_enqueue(run_id=run.pk))
    return run


def candidate_run_cancel(*, actor, run: CandidateRun) -> CandidateRun:
    """Stop a queued or running candidate; a running one stops at its next progress report."""
    _require_admin(actor)
    with transaction.atomic(), audit_context(actor=actor):
        locked = CandidateRun.objects.select_for_update().get(pk=run.pk)
        if locked.is_finished:
            raise InvalidState(f"Candidate run {locked.pk} has already {locked.status}.")
        locked.status = CandidateRunStatus.CANCELLED
        locked.finished_at = timezone.now()
        locked.failure_reason = f"Cancelled by {actor.get_printed_name()}."
        locked.save(update_fields=["status", "finished_at", "failure_reason"])
        record_event(action="candidate_run_cancelled", obj=locked)
    return locked


class _ProgressWriter:
    """``train_candidate``'s progress callback: writes the run row at most once a second (every
    epoch and stage change always), and stops the training once the run was cancelled."""

    def __init__(self, run_id: int, *, min_interval_s: float = 1.0):
        self.run_id, self.min_interval_s = run_id, min_interval_s
        self.last_write, self.last_stage, self.last_epoch = 0.0, None, -1

    def __call__(self, p: Progress) -> None:
        now = time.monotonic()
        if p.stage == self.last_stage and p.epoch == self.last_epoch and now - self.last_write < self.min_interval_s:
            return
        self.last_write, self.last_stage, self.last_epoch = now, p.stage, p.epoch
        progress = {
            "stage": p.stage, "elapsed_s": round(p.elapsed_s, 1), "done": p.done, "total": p.total,
            "epoch": p.epoch, "epochs": p.epochs, "loss": p.loss,
            "eta_s": None if p.eta_s is None else round(p.eta_s, 1),
        }
        # A plain UPDATE (no audit row per tick) that only lands while the run is still running.
        updated = CandidateRun.objects.filter(pk=self.run_id, status=CandidateRunStatus.RUNNING).update(
            progress=_json_safe(progress)
        )
        if not updated:
            raise RunCancelled()


def _labeled_cells(run: CandidateRun) -> list[LabeledCell]:
    """The run's cells with their stored images (a cell deleted since the start is left out)."""
    files = dict(CellImage.objects.filter(pk__in=[c[0] for c in run.cells]).values_list("pk", "file"))
    cells = []
    for image_id, sample_id, label in run.cells:
        if image_id in files:
            with default_storage.open(files[image_id], "rb") as fh:
                cells.append(LabeledCell(fh.read(), label, str(sample_id), str(image_id)))
    return cells


def _json_safe(value):
    """NaN and infinities as null: the comparison and progress are stored as JSON."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


def _replay_for(model_path: Path) -> Replay | None:
    """The base model's replay set (``NAME.replay.npz`` beside it), if it has one."""
    path = model_path.with_suffix(".replay.npz")
    return Replay.load(path) if path.exists() else None


def candidates_dir() -> Path:
    return Path(settings.HV_CANDIDATE_MODELS_DIR or Path(settings.MEDIA_ROOT) / "models")


def candidate_run_execute(*, run_id: int, config: AdaptConfig | None = None) -> CandidateRun:
    """Train the run's candidate (the ``classifier.train_candidate`` task). Idempotent: a run that
    is not queued is left as it is. Every outcome is recorded on the run; nothing is raised for
    a failed training, so the task never retries a run."""
    with transaction.atomic():
        run = CandidateRun.objects.select_for_update().select_related("base_version").get(pk=run_id)
        if run.status != CandidateRunStatus.QUEUED:
            return run
        run.status = CandidateRunStatus.RUNNING
        run.started_at = timezone.now()
        run.progress = {"stage": "starting"}
        run.save(update_fields=["status", "started_at", "progress"])
    try:
        version, comparison, held = _train(run, config=config)
    except RunCancelled:
        run.refresh_from_db()
        return run
    except CandidateFailed as exc:
        return _finish_failed(run, exc.reason)
    except Exception as exc:  # noqa: BLE001 - any error ends the run with its reason, never silently
        logger.exception("Candidate run %s failed", run_id)
        return _finish_failed(run, f"Unexpected error: {type(exc).__name__}: {exc}")
    with transaction.atomic(), audit_context(actor=run.started_by, reason=f"candidate run {run.pk}"):
        locked = CandidateRun.objects.select_for_update().get(pk=run.pk)
        if locked.status != CandidateRunStatus.RUNNING:
            return locked  # cancelled while saving: the registered version stays inactive
        locked.status = CandidateRunStatus.SUCCEEDED
        locked.finished_at = timezone.now()
        locked.result_version = version
        locked.comparison = comparison
        locked.holdout_sample_ids = held
        locked.progress = {**locked.progress, "stage": "done", "eta_s": 0}
        locked.save()
        record_event(
            action="candidate_run_succeeded", obj=locked, new_values={"result_version": version.name}
        )
    return locked


def _train(run: CandidateRun, *, config: AdaptConfig | None) -> tuple[ModelVersion, dict, list[int]]:
    base = run.base_version
    card = model_card(base)
    if not card:
        raise CandidateFailed(f"{base.name} has no model card: its classes and preprocessing are unknown.")
    base_path = services.resolve_path(base.file_path)
    cells = _labeled_cells(run)
    fit, held = split_by_sample(cells, holdout_fraction=settings.HV_ADAPT_HOLDOUT_FRACTION, seed=run.pk)
    held_ids = sorted({int(c.group) for c in held})
    CandidateRun.objects.filter(pk=run.pk).update(holdout_sample_ids=held_ids)
    name = f"{base.name}-lab-{run.pk}"
    out_dir = candidates_dir() / name
    result = train_candidate(
        base_model=base_path,
        base_card=card,
        train_cells=fit,
        holdout_cells=held,
        replay=_replay_for(base_path),
        name=name,
        out_dir=out_dir,
        progress=_ProgressWriter(run.pk),
        time_budget_s=settings.HV_ADAPT_TIME_BUDGET_S,
        seed=run.pk,
        config=config or AdaptConfig(epochs=settings.HV_ADAPT_EPOCHS),
    )
    comparison = _json_safe({
        "base_version": base.name,
        "holdout_sample_ids": held_ids,
        "note": result.card["adaptation"]["comparison_note"],
        **result.comparison.to_dict(),
    })
    version = services.model_version_register(
        model_path=result.model_path, card_path=result.card_path, actor=run.started_by
    )
    return version, comparison, held_ids


def _finish_failed(run: CandidateRun, reason: str) -> CandidateRun:
    with transaction.atomic(), audit_context(actor=run.started_by, reason=reason[:500]):
        locked = CandidateRun.objects.select_for_update().get(pk=run.pk)
        if locked.is_finished:
            return locked
        locked.status = CandidateRunStatus.FAILED
        locked.finished_at = timezone.now()
        locked.failure_reason = reason
        locked.save(update_fields=["status", "finished_at", "failure_reason"])
        record_event(action="candidate_run_failed", obj=locked, new_values={"reason": reason})
    return locked


# Shadow -------------------------------------------------------------------------------------


def model_version_shadow_set(*, actor, version: ModelVersion) -> ModelVersion:
    """Run ``version`` in shadow: it classifies every new image beside the active model, unseen by
    reviewers. At most one version is in shadow; setting another replaces it."""
    _require_admin(actor)
    with transaction.atomic(), audit_context(actor=actor, reason="shadow on"):
        locked = ModelVersion.objects.select_for_update().get(pk=version.pk)
        if locked.is_active:
            raise InvalidState(f"{locked.name} is the active model; only another version can run in shadow.")
        for other in ModelVersion.objects.select_for_update().filter(is_shadow=True).exclude(pk=locked.pk):
            other.is_shadow = False
            other.save(update_fields=["is_shadow"])
            record_event(action="model_shadow_off", obj=other, reason=f"replaced by {locked.name}")
        if not locked.is_shadow:
            locked.is_shadow = True
            locked.save(update_fields=["is_shadow"])
            record_event(action="model_shadow_on", obj=locked)
    return locked


def model_version_shadow_clear(*, actor, version: ModelVersion) -> ModelVersion:
    _require_admin(actor)
    with transaction.atomic(), audit_context(actor=actor, reason="shadow off"):
        locked = ModelVersion.objects.select_for_update().get(pk=version.pk)
        if locked.is_shadow:
            locked.is_shadow = False
            locked.save(update_fields=["is_shadow"])
            record_event(action="model_shadow_off", obj=locked)
    return locked


# Signed activation and rollback -------------------------------------------------------------


def comparison_of(version: ModelVersion) -> dict:
    """The evidence an activation of ``version`` rests on: its candidate run's comparison on the
    held-out samples, or, for a version not trained here, the metrics of its card."""
    run = getattr(version, "candidate_run", None) if version.pk else None
    if run is not None and run.comparison:
        return {"source": f"candidate run {run.pk}", "candidate_run": run.pk, **run.comparison}
    return {"source": "model card", "metrics": version.metrics}


def model_version_activate_signed(
    *, actor, version: ModelVersion, password: str, reason: str, ip_address: str | None = None
) -> ModelActivation:
    """Serve ``version`` from now on, as a signed decision: the admin's password (counted like a
    sign-in, as at sign-off) and a reason; the ``ModelActivation`` row keeps who, when, the previous
    version and the comparison, with the sha256 of all of it. Activating an older version than the
    one served is a rollback and works the same way. Predictions keep the version that made them."""
    _require_admin(actor)
    reason = (reason or "").strip()
    if not reason:
        raise ValidationError({"reason": "An activation needs a reason."})
    if ModelVersion.objects.filter(pk=version.pk, is_active=True).exists():
        raise InvalidState(f"{version.name} is already the active model.")
    # Outside the transaction below: a refusal raises, and the failure count and audit row must stay.
    if not password_recheck(user=actor, password=password, ip_address=ip_address):
        record_event(action="model_activation_failed", actor=actor, obj=version, reason="wrong password or locked out")
        raise WrongPassword(ACTIVATION_REFUSED)
    with transaction.atomic(), audit_context(actor=actor, reason=reason):
        previous = ModelVersion.objects.select_for_update().filter(is_active=True).first()
        locked = ModelVersion.objects.select_for_update().get(pk=version.pk)
        if locked.is_active:
            raise InvalidState(f"{locked.name} is already the active model.")
        was_served = ModelActivation.objects.filter(version=locked).exists()
        older = previous is not None and locked.created_at < previous.created_at
        kind = ActivationKind.ROLLBACK if (was_served or older) else ActivationKind.ACTIVATION
        comparison = comparison_of(locked)
        services.model_version_activate(version=locked, actor=actor, reason=reason)
        activation = ModelActivation(
            version=locked,
            previous_version=previous,
            kind=kind,
            activated_by=actor,
            printed_name=actor.get_printed_name(),
            activated_at=timezone.now(),
            reason=reason,
            comparison=comparison,
        )
        activation.signed_sha256 = activation_hash(activation)
        activation.save()
        record_event(
            action=f"model_{'rolled_back' if kind == ActivationKind.ROLLBACK else 'activated'}",
            obj=locked,
            new_values={"previous_version": previous.name if previous else None, "activation": activation.pk},
        )
    return activation


def activation_hash(activation: ModelActivation) -> str:
    """sha256 of the canonical JSON of what was decided: recomputed, it shows a row left as signed."""
    payload = {
        "version": activation.version_id,
        "version_sha256": activation.version.sha256,
        "previous_version": activation.previous_version_id,
        "kind": activation.kind,
        "activated_by": activation.activated_by_id,
        "printed_name": activation.printed_name,
        "activated_at": activation.activated_at.isoformat(),
        "reason": activation.reason,
        "comparison": activation.comparison,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
