"""Candidate runs (issue 16): the floor, who may start one, the task's outcomes, progress, cancel."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse
from rest_framework.test import APIClient

from accounts.roles import Role
from audit.models import AuditEvent
from cases.errors import InvalidState, NotAllowed
from classifier import adaptation
from classifier.models import CandidateRun, CandidateRunStatus
from review import services as reviews
from training.adapt import CandidateFailed, Comparison, ModelFigures, Progress

from ..factories import PASSWORD, ModelVersionFactory, UserFactory, make_classified_sample

V3_CARD = "classifier/models/wbc-lite0-v3.json"
# Per signed sample: the AI's classes and the doctor's final ones (one basophil, one excluded cell).
AI = ["NEUTROPHIL", "LYMPHOCYTE", "MONOCYTE", "EOSINOPHIL", "NEUTROPHIL", "LYMPHOCYTE"]
FINAL = ["NEUTROPHIL", "LYMPHOCYTE", "MONOCYTE", "EOSINOPHIL", "BASOPHIL", "EXCLUDED"]


def signed_sample(technician, doctor, cell_files, *, model_name="base-v3", final=FINAL):
    files = [(p.name, p.read_bytes()) for p in cell_files[: len(AI)]]
    sample = make_classified_sample(technician=technician, files=files, ai_classes=AI, model_name=model_name)
    for image, cls in zip(sample.images.order_by("pk"), final, strict=True):
        reviews.cell_review(actor=doctor, image=image, final_class=cls)
    reviews.sample_sign(actor=doctor, sample=sample, password=PASSWORD)
    return sample


@pytest.fixture
def base(db):
    return ModelVersionFactory(name="base-v3", card_path=V3_CARD, is_active=True)


@pytest.fixture
def two_signed(base, technician, doctor, cell_files):
    return [signed_sample(technician, doctor, cell_files) for _ in range(2)]


@pytest.fixture
def sent(monkeypatch):
    calls = []
    monkeypatch.setattr("classifier.adaptation._send_training_to_broker", calls.append)
    return calls


def api_for(user) -> APIClient:
    client = APIClient()
    client.force_login(user)
    return client


# The floor -----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_start_refused_below_the_floor_says_how_many_more_each_class_needs(settings, two_signed, admin_user, sent):
    settings.HV_ADAPT_MIN_CELLS_PER_CLASS = 3
    with pytest.raises(ValidationError) as refused:
        adaptation.candidate_run_start(actor=admin_user)
    messages = refused.value.message_dict["cells"]
    assert messages[0] == "Not enough confirmed cells to train a candidate."
    # two signed samples: 2 cells of every class (the excluded cell does not count)
    assert messages[1:] == [f"{c}: 2 confirmed, 1 more needed (floor 3)" for c in
                            ("EOSINOPHIL", "LYMPHOCYTE", "MONOCYTE", "NEUTROPHIL", "BASOPHIL")]
    assert not CandidateRun.objects.exists() and sent == []


@pytest.mark.django_db
def test_floor_refusal_is_shown_by_the_page_and_the_api(settings, two_signed, admin_user, sent):
    settings.HV_ADAPT_MIN_CELLS_PER_CLASS = 3
    from django.test import Client

    page = Client()
    page.force_login(admin_user)
    response = page.post(reverse("candidate-start"))
    assert response.status_code == 400
    assert "MONOCYTE: 2 confirmed, 1 more needed (floor 3)" in response.content.decode()
    response = api_for(admin_user).post(reverse("api:candidate-run-list"))
    assert response.status_code == 400
    assert "LYMPHOCYTE: 2 confirmed, 1 more needed (floor 3)" in response.json()["cells"]


@pytest.mark.django_db
def test_only_unsigned_or_unconfirmed_cells_do_not_count(settings, base, technician, doctor, cell_files, admin_user):
    settings.HV_ADAPT_MIN_CELLS_PER_CLASS = 1
    files = [(p.name, p.read_bytes()) for p in cell_files[:2]]
    make_classified_sample(technician=technician, files=files, ai_classes=AI[:2], model_name="base-v3")  # unsigned
    signed_sample(technician, doctor, cell_files)
    assert adaptation.readiness().counts == {
        "EOSINOPHIL": 1, "LYMPHOCYTE": 1, "MONOCYTE": 1, "NEUTROPHIL": 1, "BASOPHIL": 1,
    }


# Starting ------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_admin_starts_a_run_on_the_training_queue_with_the_confirmed_cells(
    settings, two_signed, admin_user, sent, django_capture_on_commit_callbacks
):
    settings.HV_ADAPT_MIN_CELLS_PER_CLASS = 2
    with django_capture_on_commit_callbacks(execute=True):
        run = adaptation.candidate_run_start(actor=admin_user)
    assert sent == [run.pk]
    assert run.status == CandidateRunStatus.QUEUED and run.base_version.name == "base-v3"
    assert len(run.cells) == 10 and {c[2] for c in run.cells} == {"NEUTROPHIL", "LYMPHOCYTE", "MONOCYTE",
                                                                   "EOSINOPHIL", "BASOPHIL"}
    assert {c[1] for c in run.cells} == {s.pk for s in two_signed}
    assert AuditEvent.objects.filter(action="candidate_run_started", object_id=str(run.pk),
                                     actor_id=admin_user.pk).exists()
    with pytest.raises(InvalidState, match="one run at a time"):
        adaptation.candidate_run_start(actor=admin_user)
    from django.conf import settings as conf

    assert conf.CELERY_TASK_ROUTES["classifier.train_candidate"] == {"queue": "training"}


@pytest.mark.django_db
@pytest.mark.parametrize("role", [Role.TECHNICIAN, Role.DOCTOR])
def test_only_admins_start_runs(settings, two_signed, role, sent):
    settings.HV_ADAPT_MIN_CELLS_PER_CLASS = 1
    with pytest.raises(NotAllowed):
        adaptation.candidate_run_start(actor=UserFactory(role=role))


@pytest.mark.django_db
def test_no_active_model_refuses_to_start(admin_user, sent):
    with pytest.raises(InvalidState, match="No model version is active"):
        adaptation.candidate_run_start(actor=admin_user)


# The task's outcomes --------------------------------------------------------------------------


def _queued_run(settings, admin_user):
    settings.HV_ADAPT_MIN_CELLS_PER_CLASS = 1
    return adaptation.candidate_run_start(actor=admin_user)


def _figures(ba):
    return ModelFigures({"EOSINOPHIL": ba}, ba, ba, 0.1, 0.9, None)


class FakeResult:
    def __init__(self, out_dir: Path, name: str):
        out_dir.mkdir(parents=True, exist_ok=True)
        self.model_path = out_dir / f"{name}.keras"
        self.model_path.write_bytes(b"weights")
        self.card_path = out_dir / f"{name}.json"
        self.card = {"name": name, "adaptation": {"comparison_note": "cross-fitted"}}
        self.card_path.write_text(json.dumps(self.card))
        self.comparison = Comparison(3, ["EOSINOPHIL", "OTHER"], _figures(0.5), _figures(float("nan")), [])


@pytest.mark.django_db
def test_a_run_ends_as_an_inactive_registered_version_with_its_comparison(
    settings, two_signed, admin_user, sent, monkeypatch
):
    run = _queued_run(settings, admin_user)
    seen = {}

    def fake_train(**kw):
        seen.update(kw)
        kw["progress"](Progress(stage="training", elapsed_s=3.0, epoch=1, epochs=2, loss=0.7, eta_s=4.0))
        progress = CandidateRun.objects.get(pk=run.pk).progress
        assert progress["epoch"] == 1 and progress["loss"] == 0.7 and progress["eta_s"] == 4.0
        return FakeResult(kw["out_dir"], kw["name"])

    def fake_register(*, model_path, card_path, actor):
        return ModelVersionFactory(name=json.loads(card_path.read_text())["name"], file_path=str(model_path),
                                   card_path=str(card_path), sha256="c" * 64, threshold=0.6)

    monkeypatch.setattr("classifier.adaptation.train_candidate", fake_train)
    monkeypatch.setattr("classifier.services.model_version_register", fake_register)
    done = adaptation.candidate_run_execute(run_id=run.pk)
    assert done.status == CandidateRunStatus.SUCCEEDED and done.finished_at
    assert done.result_version.name == f"base-v3-lab-{run.pk}" and not done.result_version.is_active
    # samples held out whole, never trained on
    held = {c.group for c in seen["holdout_cells"]}
    assert held and not held & {c.group for c in seen["train_cells"]}
    assert done.holdout_sample_ids == sorted(int(g) for g in held)
    assert seen["base_card"]["name"] == "wbc-lite0-v3" and seen["base_model"].name == "base-v3.keras"
    assert str(seen["out_dir"]).startswith(settings.MEDIA_ROOT)
    assert done.comparison["active"]["balanced_accuracy"] == 0.5
    assert done.comparison["candidate"]["balanced_accuracy"] is None  # NaN stored as null
    assert AuditEvent.objects.filter(action="candidate_run_succeeded", object_id=str(run.pk)).exists()
    # a redelivered message finds the run finished and leaves it
    assert adaptation.candidate_run_execute(run_id=run.pk).status == CandidateRunStatus.SUCCEEDED


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (CandidateFailed("the time budget was spent before training could start"),
         "the time budget was spent before training could start"),
        (RuntimeError("disk full"), "Unexpected error: RuntimeError: disk full"),
    ],
)
def test_a_failed_run_records_its_reason(settings, two_signed, admin_user, sent, monkeypatch, error, reason):
    run = _queued_run(settings, admin_user)

    def fail(**kw):
        raise error

    monkeypatch.setattr("classifier.adaptation.train_candidate", fail)
    done = adaptation.candidate_run_execute(run_id=run.pk)
    assert done.status == CandidateRunStatus.FAILED and done.failure_reason == reason
    assert done.result_version is None
    event = AuditEvent.objects.get(action="candidate_run_failed", object_id=str(run.pk))
    assert event.new_values == {"reason": reason}


@pytest.mark.django_db
def test_one_signed_sample_fails_the_run_saying_two_are_needed(settings, base, technician, doctor, cell_files,
                                                                admin_user, sent):
    signed_sample(technician, doctor, cell_files)
    run = _queued_run(settings, admin_user)
    done = adaptation.candidate_run_execute(run_id=run.pk)
    assert done.status == CandidateRunStatus.FAILED and "two signed samples" in done.failure_reason


@pytest.mark.django_db
def test_cancelling_a_running_candidate_stops_it_at_its_next_progress_report(
    settings, two_signed, admin_user, sent, monkeypatch
):
    run = _queued_run(settings, admin_user)

    def train_until_cancelled(**kw):
        adaptation.candidate_run_cancel(actor=admin_user, run=run)
        kw["progress"](Progress(stage="training", elapsed_s=1.0, epoch=1, epochs=5, loss=1.0, eta_s=9.0))
        raise AssertionError("the progress callback should have stopped the training")

    monkeypatch.setattr("classifier.adaptation.train_candidate", train_until_cancelled)
    done = adaptation.candidate_run_execute(run_id=run.pk)
    assert done.status == CandidateRunStatus.CANCELLED and done.result_version is None
    assert AuditEvent.objects.filter(action="candidate_run_cancelled", object_id=str(run.pk)).exists()
    with pytest.raises(InvalidState):
        adaptation.candidate_run_cancel(actor=admin_user, run=done)


# Progress, live ------------------------------------------------------------------------------


@pytest.mark.django_db
def test_progress_endpoint_shows_stage_epoch_loss_and_time_left(settings, two_signed, admin_user, doctor, sent):
    run = _queued_run(settings, admin_user)
    CandidateRun.objects.filter(pk=run.pk).update(status=CandidateRunStatus.RUNNING)
    adaptation._ProgressWriter(run.pk)(Progress(stage="training", elapsed_s=30.0, epoch=3, epochs=20, loss=0.52,
                                                eta_s=170.0))
    body = api_for(doctor).get(reverse("api:candidate-run-detail", args=[run.pk])).json()
    assert body["status"] == "running" and body["status_label"] == "Running"
    assert (body["progress"]["stage"], body["progress"]["epoch"], body["progress"]["epochs"]) == ("training", 3, 20)
    assert body["progress"]["loss"] == 0.52 and body["progress"]["eta_s"] == 170.0
    page = api_for(admin_user).get(reverse("candidate-detail", args=[run.pk]))
    html = page.content.decode()
    assert reverse("api:candidate-run-detail", args=[run.pk]) in html and "js/candidate.js" in html
    assert "epoch 3 of 20" in html


@pytest.mark.django_db
def test_progress_is_written_at_most_once_a_second_within_an_epoch(settings, two_signed, admin_user, sent):
    run = _queued_run(settings, admin_user)
    CandidateRun.objects.filter(pk=run.pk).update(status=CandidateRunStatus.RUNNING)
    writer = adaptation._ProgressWriter(run.pk, min_interval_s=60)
    writer(Progress(stage="activations", elapsed_s=1.0, done=32, total=100))
    writer(Progress(stage="activations", elapsed_s=1.1, done=64, total=100))  # skipped: too soon
    assert CandidateRun.objects.get(pk=run.pk).progress["done"] == 32
    writer(Progress(stage="training", elapsed_s=2.0, epoch=1, epochs=2, loss=1.0, eta_s=2.0))  # new stage: written
    assert CandidateRun.objects.get(pk=run.pk).progress["stage"] == "training"
