"""Patients, samples, model versions and audit through the API: reads, filters, writes via services."""
import datetime

import pytest
from django.urls import reverse
from django.utils import timezone

from audit.models import AuditEvent
from cases.models import Patient, Sample, SampleStatus

from ..factories import PASSWORD, ModelVersionFactory, PatientFactory, SampleFactory

pytestmark = pytest.mark.django_db

PATIENTS = reverse("api:patient-list")
SAMPLES = reverse("api:sample-list")

NEW_PATIENT = {"mrn": " MRN-API-1 ", "family_name": "Hopper", "given_name": "Grace", "date_of_birth": "1956-12-09",
               "sex": "F"}


def test_technician_registers_a_patient_through_the_service(tech_api):
    response = tech_api.post(PATIENTS, NEW_PATIENT, format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["mrn"] == "MRN-API-1"
    assert body["full_name"] == "HOPPER, Grace"
    assert body["sample_count"] == 0
    patient = Patient.objects.get(pk=body["id"])
    assert patient.created_by.username == "tech1"
    event = AuditEvent.objects.get(action="create", object_type="cases.patient", object_id=str(patient.pk))
    assert event.actor_username == "tech1"


def test_patient_service_is_the_only_writer(tech_api, monkeypatch):
    calls = []

    def fake_create(**kwargs):
        calls.append(kwargs)
        return PatientFactory(mrn=kwargs["mrn"])

    monkeypatch.setattr("cases.services.patient_create", fake_create)
    response = tech_api.post(PATIENTS, NEW_PATIENT, format="json")
    assert response.status_code == 201
    assert calls and calls[0]["actor"].username == "tech1"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"mrn": ""}, "mrn"),
        ({"mrn": "x" * 40}, "mrn"),
        ({"date_of_birth": "2999-01-01"}, "date_of_birth"),
        ({"date_of_birth": "not a date"}, "date_of_birth"),
        ({"sex": "Z"}, "sex"),
        ({"family_name": "Nul\x00byte"}, "family_name"),
    ],
)
def test_invalid_patient_is_400_and_nothing_written(tech_api, change, field):
    response = tech_api.post(PATIENTS, {**NEW_PATIENT, **change}, format="json")
    assert response.status_code == 400
    assert field in response.json()
    assert not Patient.objects.exists()


def test_duplicate_mrn_is_400(tech_api):
    PatientFactory(mrn="MRN-API-1")
    response = tech_api.post(PATIENTS, NEW_PATIENT, format="json")
    assert response.status_code == 400
    assert "mrn" in response.json()


def test_malformed_json_is_400_and_nothing_written(tech_api):
    response = tech_api.post(PATIENTS, '{"mrn": "M1", "family_name": ', content_type="application/json")
    assert response.status_code == 400
    assert "JSON parse error" in response.json()["detail"]
    assert not Patient.objects.exists()


def test_patient_search_and_pagination(doctor_api):
    PatientFactory(family_name="Curie", given_name="Marie", mrn="MRN-C")
    PatientFactory(family_name="Franklin", given_name="Rosalind", mrn="MRN-F")
    for i in range(5):
        PatientFactory(family_name=f"Zed{i}")
    body = doctor_api.get(PATIENTS, {"search": "curi"}).json()
    assert [p["mrn"] for p in body["results"]] == ["MRN-C"]
    assert doctor_api.get(PATIENTS, {"search": "mrn-f"}).json()["results"][0]["given_name"] == "Rosalind"
    page = doctor_api.get(PATIENTS, {"page_size": 3}).json()
    assert page["count"] == 7
    assert len(page["results"]) == 3
    assert page["next"]
    assert doctor_api.get(PATIENTS, {"page": 99}).status_code == 404


def test_patient_detail(doctor_api, patient):
    SampleFactory(patient=patient)
    body = doctor_api.get(reverse("api:patient-detail", args=[patient.pk])).json()
    assert body["mrn"] == patient.mrn
    assert body["sample_count"] == 1
    assert doctor_api.get(reverse("api:patient-detail", args=[999_999])).status_code == 404


def test_technician_registers_a_sample_through_the_service(tech_api, patient):
    payload = {"patient": patient.pk, "collected_at": "2026-11-01T08:00:00Z", "received_at": "2026-11-01T09:00:00Z",
               "priority": "stat", "wbc_count": "7.5", "clinical_notes": "Fever"}
    response = tech_api.post(SAMPLES, payload, format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["accession_number"] == "HV-2026-000001"
    assert body["status"] == SampleStatus.REGISTERED
    assert body["priority"] == "stat"
    assert body["wbc_count"] == "7.50"
    assert body["stain"] == "mgg"
    assert body["patient_mrn"] == patient.mrn
    sample = Sample.objects.get(pk=body["id"])
    assert sample.created_by.username == "tech1"
    assert AuditEvent.objects.filter(object_type="cases.sample", object_id=str(sample.pk), action="create").exists()


@pytest.mark.parametrize(
    "change",
    [
        {"collected_at": "2026-11-02T08:00:00Z"},  # after received_at
        {"patient": 999_999},
        {"wbc_count": "-1"},
        {"wbc_count": "12345678"},
        {"specimen_type": "urine"},
        {"collected_at": "yesterday"},
    ],
)
def test_invalid_sample_is_400_and_nothing_written(tech_api, patient, change):
    payload = {"patient": patient.pk, "collected_at": "2026-11-01T08:00:00Z", "received_at": "2026-11-01T09:00:00Z"}
    response = tech_api.post(SAMPLES, {**payload, **change}, format="json")
    assert response.status_code == 400, response.content
    assert not Sample.objects.exists()


def test_service_value_error_is_400(tech_api, patient, monkeypatch):
    def refuse(**kwargs):
        raise ValueError("The collection time cannot be after the time the sample was received.")

    monkeypatch.setattr("cases.services.sample_create", refuse)
    response = tech_api.post(SAMPLES, {"patient": patient.pk, "collected_at": "2026-11-01T08:00:00Z"}, format="json")
    assert response.status_code == 400
    assert response.json() == {"detail": "The collection time cannot be after the time the sample was received."}


def test_sample_filters(doctor_api, patient):
    now = timezone.now()
    stat = SampleFactory(patient=patient, priority="stat", received_at=now - datetime.timedelta(days=3))
    signed = SampleFactory(status=SampleStatus.SIGNED, received_at=now)
    routine = SampleFactory(received_at=now - datetime.timedelta(days=10))

    def ids(**params):
        response = doctor_api.get(SAMPLES, params)
        assert response.status_code == 200, response.content
        return {s["id"] for s in response.json()["results"]}

    assert ids() == {stat.pk, signed.pk, routine.pk}
    assert ids(priority="stat") == {stat.pk}
    assert ids(status="signed") == {signed.pk}
    assert ids(status=["signed", "registered"]) == {signed.pk, stat.pk, routine.pk}
    assert ids(patient=patient.pk) == {stat.pk}
    since = (now - datetime.timedelta(days=5)).date().isoformat()
    assert ids(received_after=since) == {stat.pk, signed.pk}
    assert ids(received_before=since) == {routine.pk}
    assert doctor_api.get(SAMPLES, {"status": "nonsense"}).status_code == 400
    assert doctor_api.get(SAMPLES, {"received_after": "not-a-date"}).status_code == 400


def test_sample_detail(doctor_api, sample):
    body = doctor_api.get(reverse("api:sample-detail", args=[sample.pk])).json()
    assert body["accession_number"] == sample.accession_number
    assert body["image_count"] == 0


# Model versions -------------------------------------------------------------------


@pytest.fixture
def versions(db):
    old = ModelVersionFactory(name="v1", threshold=0.5, is_active=True)
    new = ModelVersionFactory(name="v2", threshold=0.55)
    return old, new


def test_model_versions_are_listed_for_clinical_roles(client_for, versions):
    for role in ("technician", "doctor", "admin"):
        body = client_for(role).get(reverse("api:modelversion-list")).json()
        assert [v["name"] for v in body["results"]] == ["v2", "v1"]
        assert "file_path" not in body["results"][0]


def test_admin_activates_a_model_version_through_the_service(admin_api, versions):
    old, new = versions
    response = admin_api.post(reverse("api:modelversion-activate", args=[new.pk]),
                              {"reason": "better", "password": PASSWORD}, format="json")
    assert response.status_code == 200
    assert response.json()["version"]["name"] == "v2" and response.json()["previous_version"]["name"] == "v1"
    new.refresh_from_db()
    old.refresh_from_db()
    assert new.is_active is True and old.is_active is False
    event = AuditEvent.objects.filter(object_type="classifier.modelversion", object_id=str(new.pk)).latest("pk")
    assert event.actor_username == "admin1"
    assert event.reason == "better"


def test_doctor_cannot_activate_a_model_version(doctor_api, versions):
    _, new = versions
    assert doctor_api.post(reverse("api:modelversion-activate", args=[new.pk])).status_code == 403
    new.refresh_from_db()
    assert not new.is_active


# Audit --------------------------------------------------------------------------


def test_audit_is_admin_only_and_filterable(admin_api, doctor_api, tech_api):
    tech_api.post(PATIENTS, NEW_PATIENT, format="json")
    url = reverse("api:audit-list")
    assert doctor_api.get(url).status_code == 403
    body = admin_api.get(url, {"actor_username": "tech", "object_type": "patient"}).json()
    assert body["count"] == 1
    assert body["results"][0]["action"] == "create"
    assert body["results"][0]["new_values"]["mrn"] == "MRN-API-1"
    today = timezone.localdate().isoformat()
    assert admin_api.get(url, {"timestamp_after": today, "action": "create"}).json()["count"] >= 1
    assert admin_api.get(url, {"action": "delete"}).json()["count"] == 0
