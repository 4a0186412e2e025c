"""Candidate runs and their versions as the training task leaves them (a factory: training itself
is too slow for the fast lane; tests/classifier/test_adaptation_task.py runs it for real)."""
from __future__ import annotations

import itertools

from accounts.roles import Role
from classifier.models import CandidateRun, CandidateRunStatus, ModelVersion

from ..factories import ModelVersionFactory, UserFactory

_names = itertools.count(1)

COMPARISON = {
    "base_version": "base",
    "holdout_sample_ids": [1],
    "note": "test",
    "n": 3,
    "classes": ["EOSINOPHIL", "LYMPHOCYTE", "MONOCYTE", "NEUTROPHIL", "BASOPHIL", "OTHER"],
    "active": {"recall": {"EOSINOPHIL": 0.5, "MONOCYTE": 1.0}, "balanced_accuracy": 0.75, "accuracy": 0.66,
               "flagged_fraction": 0.33, "unflagged_accuracy": 0.5, "other_flagged": None},
    "candidate": {"recall": {"EOSINOPHIL": 1.0, "MONOCYTE": 1.0}, "balanced_accuracy": 1.0, "accuracy": 1.0,
                  "flagged_fraction": 0.0, "unflagged_accuracy": 1.0, "other_flagged": None},
    "disagreements": [],
}


def make_candidate_run(*, base: ModelVersion | None = None, status: str = CandidateRunStatus.SUCCEEDED,
                       started_by=None, comparison: dict | None = None) -> CandidateRun:
    """A run from ``base`` (the active version, or a new one); a succeeded run has an inactive
    result version and a comparison."""
    n = next(_names)
    base = base or ModelVersion.objects.filter(is_active=True).first() or ModelVersionFactory(
        name=f"base-{n}", sha256="b" * 64, threshold=0.5, is_active=True
    )
    run = CandidateRun.objects.create(
        started_by=started_by or UserFactory(role=Role.ADMIN), base_version=base, status=status,
        cell_counts={"EOSINOPHIL": 60}, progress={"stage": "queued"},
    )
    if status == CandidateRunStatus.SUCCEEDED:
        run.result_version = ModelVersionFactory(name=f"{base.name}-lab-{run.pk}", sha256="c" * 64, threshold=0.6)
        run.comparison = {**COMPARISON, "base_version": base.name, **(comparison or {})}
        run.save()
    return run
