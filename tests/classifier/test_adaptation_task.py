"""One real candidate run, end to end: the Celery task on committed fixture cells from the served model."""
from __future__ import annotations

from pathlib import Path

import pytest
from django.conf import settings as conf
from django.test import Client
from django.urls import reverse

from accounts.roles import Role
from classifier import adaptation, services, tasks
from classifier.models import CandidateRunStatus
from classifier.preprocessing import load_image
from review import services as reviews
from training.adapt import AdaptConfig

from ..factories import PASSWORD, UserFactory, make_classified_sample

REPO = Path(conf.BASE_DIR)
MODELS = REPO / "classifier" / "models"
FIXTURES = REPO / "tests" / "fixtures"


def _fixture_cells() -> list[tuple[str, Path]]:
    cells = [(p.parent.name, p) for p in sorted((FIXTURES / "cells").glob("*/*.jpeg"))]
    cells += [("BASOPHIL", p) for p in sorted((FIXTURES / "pbc" / "basophil").glob("*.jpg"))]
    return cells


@pytest.mark.slow
@pytest.mark.django_db
def test_the_task_trains_a_candidate_that_registers_inactive_compares_and_activates(
    settings, technician, admin_user, monkeypatch
):
    settings.HV_ADAPT_MIN_CELLS_PER_CLASS = 2
    settings.HV_ADAPT_HOLDOUT_FRACTION = 0.25
    active = services.model_version_register(
        model_path=MODELS / "wbc-lite0-v3.keras", card_path=MODELS / "wbc-lite0-v3.json", activate=True
    )
    doctor = UserFactory(role=Role.DOCTOR)
    cells = _fixture_cells()
    for k in range(4):  # four signed samples, cells dealt round-robin so that each has most classes
        part = cells[k::4]
        sample = make_classified_sample(
            technician=technician, files=[(p.name, p.read_bytes()) for _, p in part],
            ai_classes=["NEUTROPHIL"] * len(part), model_name=active.name,
        )
        for image, (label, _) in zip(sample.images.order_by("pk"), part, strict=True):
            reviews.cell_review(actor=doctor, image=image, final_class=label)
        reviews.sample_sign(actor=doctor, sample=sample, password=PASSWORD)
    monkeypatch.setattr("classifier.adaptation._send_training_to_broker", lambda run_id: None)
    run = adaptation.candidate_run_start(actor=admin_user)
    tiny = AdaptConfig(epochs=2, views=1, batch_size=16)
    monkeypatch.setattr("classifier.adaptation.AdaptConfig", lambda epochs: tiny)

    assert tasks.train_candidate.run(run.pk) == CandidateRunStatus.SUCCEEDED

    run.refresh_from_db()
    version = run.result_version
    assert not version.is_active and version.card_path and services.resolve_path(version.file_path).exists()
    assert run.progress["stage"] == "done" and run.progress["epochs"] == 2
    assert run.holdout_sample_ids and run.comparison["n"] > 0
    card = adaptation.model_card(version)
    assert card["supersedes"] == "wbc-lite0-v3" and card["export"]["file"].endswith(".tflite")
    assert version.threshold == card["calibration"]["threshold"]
    page = Client()
    page.force_login(doctor)
    assert "Balanced accuracy" in page.get(reverse("model-comparison", args=[version.pk])).content.decode()
    activation = adaptation.model_version_activate_signed(
        actor=admin_user, version=version, password=PASSWORD, reason="end-to-end test"
    )
    assert activation.comparison["candidate_run"] == run.pk and activation.previous_version == active
    # the candidate serves through the production loader, with its own card
    served = services._load_active_classifier(version).predict(images=[load_image(cells[0][1].read_bytes())])
    assert len(served) == 1 and served[0].label in card["classes"]
