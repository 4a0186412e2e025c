"""Activation and rollback are signed decisions (issue 16): password and reason, who, when, evidence."""
from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse
from rest_framework.test import APIClient

from audit.models import AuditEvent
from cases.errors import InvalidState, NotAllowed
from classifier import adaptation
from classifier.models import ActivationKind, ModelActivation, ModelVersion, Prediction

from ..factories import PASSWORD, ModelVersionFactory, make_classified_sample
from .candidates import make_candidate_run


@pytest.fixture
def candidate(db):
    ModelVersionFactory(name="served-v1", is_active=True)
    return make_candidate_run().result_version


def _activate(admin_user, version, **kw):
    return adaptation.model_version_activate_signed(
        actor=admin_user, version=version, password=kw.pop("password", PASSWORD), reason=kw.pop("reason", "better"),
        **kw,
    )


@pytest.mark.django_db
def test_activation_records_who_when_why_the_previous_version_and_the_comparison(admin_user, candidate):
    activation = _activate(admin_user, candidate, reason="  recall of monocytes up  ")
    candidate.refresh_from_db()
    assert candidate.is_active and not ModelVersion.objects.get(name="served-v1").is_active
    assert activation.kind == ActivationKind.ACTIVATION
    assert activation.activated_by == admin_user and activation.printed_name == admin_user.get_printed_name()
    assert activation.previous_version.name == "served-v1" and activation.reason == "recall of monocytes up"
    run = candidate.candidate_run
    assert activation.comparison["candidate_run"] == run.pk
    assert activation.comparison["candidate"] == run.comparison["candidate"]
    assert activation.signed_sha256 == adaptation.activation_hash(ModelActivation.objects.get(pk=activation.pk))
    event = AuditEvent.objects.get(action="model_activated", object_id=str(candidate.pk))
    assert event.actor_id == admin_user.pk and event.reason == "recall of monocytes up"
    assert event.new_values["previous_version"] == "served-v1"


@pytest.mark.django_db
def test_activation_refused_without_the_right_password_and_the_failure_is_audited(admin_user, candidate):
    with pytest.raises(adaptation.WrongPassword):
        _activate(admin_user, candidate, password="wrong")
    candidate.refresh_from_db()
    assert not candidate.is_active and not ModelActivation.objects.exists()
    assert AuditEvent.objects.filter(action="model_activation_failed", object_id=str(candidate.pk)).exists()


@pytest.mark.django_db
def test_activation_needs_a_reason(admin_user, candidate):
    with pytest.raises(ValidationError) as refused:
        _activate(admin_user, candidate, reason="   ")
    assert "reason" in refused.value.message_dict
    assert not ModelActivation.objects.exists()


@pytest.mark.django_db
def test_only_admins_activate(doctor, candidate):
    with pytest.raises(NotAllowed):
        _activate(doctor, candidate)


@pytest.mark.django_db
def test_activating_the_active_version_is_refused(admin_user, candidate):
    _activate(admin_user, candidate)
    with pytest.raises(InvalidState, match="already the active model"):
        _activate(admin_user, candidate)


@pytest.mark.django_db
def test_rollback_to_an_earlier_version_is_signed_the_same_way_and_predictions_keep_their_version(
    admin_user, candidate, technician, cell_files
):
    files = [(p.name, p.read_bytes()) for p in cell_files[:2]]
    sample = make_classified_sample(technician=technician, files=files, ai_classes=["EOSINOPHIL", "MONOCYTE"],
                                    model_name="served-v1")
    _activate(admin_user, candidate)
    old = ModelVersion.objects.get(name="served-v1")
    rollback = _activate(admin_user, old, reason="the candidate flags too many cells")
    assert rollback.kind == ActivationKind.ROLLBACK and rollback.previous_version == candidate
    assert rollback.comparison["source"] == "model card"
    old.refresh_from_db()
    assert old.is_active
    assert AuditEvent.objects.filter(action="model_rolled_back", object_id=str(old.pk)).exists()
    assert set(Prediction.objects.filter(image__sample=sample).values_list("model_version__name", flat=True)) == {
        "served-v1"
    }
    assert list(ModelActivation.objects.values_list("kind", flat=True)) == ["rollback", "activation"]


@pytest.mark.django_db
def test_activations_are_append_only(admin_user, candidate):
    activation = _activate(admin_user, candidate)
    activation.reason = "changed"
    with pytest.raises(PermissionError):
        activation.save()
    with pytest.raises(PermissionError):
        ModelActivation.objects.filter(pk=activation.pk).update(reason="changed")
    with pytest.raises(PermissionError):
        activation.delete()


@pytest.mark.django_db
def test_activation_page_shows_the_comparison_and_signs(client, admin_user, candidate):
    client.force_login(admin_user)
    page = client.get(reverse("model-activate", args=[candidate.pk]))
    html = page.content.decode()
    assert page.status_code == 200 and "Balanced accuracy" in html and 'name="password"' in html
    refused = client.post(reverse("model-activate", args=[candidate.pk]), {"password": "wrong", "reason": "x"})
    assert refused.status_code == 400 and "password is not correct" in refused.content.decode()
    assert AuditEvent.objects.filter(action="model_activation_failed").exists()  # kept, not rolled back
    done = client.post(reverse("model-activate", args=[candidate.pk]), {"password": PASSWORD, "reason": "better"})
    assert done.status_code == 302
    candidate.refresh_from_db()
    assert candidate.is_active


@pytest.mark.django_db
def test_api_activation_requires_password_and_reason(admin_user, candidate):
    api = APIClient()
    api.force_login(admin_user)
    url = reverse("api:modelversion-activate", args=[candidate.pk])
    missing = api.post(url, {}, format="json")
    assert missing.status_code == 400 and set(missing.json()) >= {"password", "reason"}
    wrong = api.post(url, {"password": "wrong", "reason": "x"}, format="json")
    assert wrong.status_code == 400 and "password" in wrong.json()
    assert AuditEvent.objects.filter(action="model_activation_failed").exists()
    ok = api.post(url, {"password": PASSWORD, "reason": "better"}, format="json")
    assert ok.status_code == 200
    body = ok.json()
    assert body["kind"] == "activation" and body["version"]["name"] == candidate.name
    assert body["previous_version"]["name"] == "served-v1" and body["comparison"]["candidate_run"]
    listed = api.get(reverse("api:modelactivation-list")).json()["results"]
    assert [a["id"] for a in listed] == [body["id"]]


@pytest.mark.django_db
def test_comparison_page_and_api_show_both_models_side_by_side(client, doctor, candidate):
    client.force_login(doctor)
    html = client.get(reverse("model-comparison", args=[candidate.pk])).content.decode()
    for text in ("Recall Eosinophil", "Balanced accuracy", "Flagged for review", "Accuracy of unflagged cells",
                 "Cells where they disagree", "served-v1"):
        assert text in html
    assert "Activate this version" not in html  # doctors read, admins decide
    api = APIClient()
    api.force_login(doctor)
    body = api.get(reverse("api:modelversion-comparison", args=[candidate.pk])).json()
    assert body["comparison"]["active"]["balanced_accuracy"] == 0.75
    assert body["comparison"]["candidate"]["balanced_accuracy"] == 1.0
