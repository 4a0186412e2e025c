import datetime

import pytest
from django.conf import settings
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.urls import reverse

from cases.models import Patient, Sample

from .factories import PASSWORD


@pytest.mark.django_db
def test_login_is_locked_after_repeated_failures(client, technician):
    for _ in range(settings.AXES_FAILURE_LIMIT):
        client.post(reverse("login"), {"username": technician.username, "password": "nope-nope"})
    response = client.post(reverse("login"), {"username": technician.username, "password": PASSWORD})
    assert response.status_code == 429
    assert "locked" in response.content.decode().lower()
    assert "_auth_user_id" not in client.session


@pytest.mark.django_db
def test_successful_login_then_pages_work(client, technician):
    response = client.post(reverse("login"), {"username": technician.username, "password": PASSWORD}, follow=True)
    assert response.status_code == 200
    assert client.get(reverse("patient-list")).status_code == 200


def test_session_expires_when_idle():
    assert settings.SESSION_SAVE_EVERY_REQUEST is True
    assert 0 < settings.SESSION_COOKIE_AGE <= 30 * 60


@pytest.mark.django_db
def test_idle_session_is_logged_off(client, technician):
    client.force_login(technician)
    session = client.session
    session.set_expiry(-1)  # what the idle timeout does once SESSION_COOKIE_AGE has passed
    session.save()
    assert client.get(reverse("home")).status_code == 302


@pytest.mark.parametrize("weak", ["short", "password123", "1234567890123"])
def test_weak_passwords_are_refused(weak):
    with pytest.raises(ValidationError):
        validate_password(weak)


@pytest.mark.django_db
def test_unknown_url_requires_login_first(client):
    response = client.get("/no-such-page/")
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


@pytest.mark.django_db
def test_technician_registers_patient_and_sample_through_pages(client, technician):
    client.force_login(technician)
    response = client.post(
        reverse("patient-create"),
        {"mrn": "MRN-77", "family_name": "Lovelace", "given_name": "Ada", "date_of_birth": "1990-12-10", "sex": "F"},
    )
    patient = Patient.objects.get(mrn="MRN-77")
    assert response["Location"] == reverse("patient-detail", args=[patient.pk])
    response = client.post(
        reverse("sample-create", args=[patient.pk]),
        {"collected_at": "2026-11-01T08:00", "received_at": "2026-11-01T09:00", "specimen_type": "peripheral_blood",
         "stain": "mgg", "priority": "stat", "wbc_count": "7.5", "clinical_notes": "Fever"},
    )
    sample = Sample.objects.get(patient=patient)
    assert response["Location"] == reverse("sample-detail", args=[sample.pk])
    assert sample.accession_number == "HV-2026-000001"
    assert str(sample.wbc_count) == "7.50"
    assert patient.full_name in client.get(reverse("sample-detail", args=[sample.pk])).content.decode()


@pytest.mark.django_db
def test_bad_form_input_is_refused_and_nothing_is_written(client, technician, patient):
    client.force_login(technician)
    future = (datetime.date.today() + datetime.timedelta(days=3)).isoformat()
    response = client.post(
        reverse("patient-create"),
        {"mrn": "X", "family_name": "A", "given_name": "B", "date_of_birth": future, "sex": "F"},
    )
    assert response.status_code == 400
    assert "cannot be in the future" in response.content.decode()
    assert not Patient.objects.filter(mrn="X").exists()
    response = client.post(
        reverse("sample-create", args=[patient.pk]),
        {"collected_at": "2026-11-02T08:00", "received_at": "2026-11-01T09:00", "specimen_type": "peripheral_blood",
         "stain": "mgg", "priority": "routine"},
    )
    assert response.status_code == 400
    assert not Sample.objects.exists()


@pytest.mark.django_db
def test_duplicate_mrn_is_refused(client, technician, patient):
    client.force_login(technician)
    response = client.post(
        reverse("patient-create"),
        {"mrn": patient.mrn, "family_name": "A", "given_name": "B", "date_of_birth": "1990-01-01", "sex": "F"},
    )
    assert response.status_code == 400
    assert Patient.objects.filter(mrn=patient.mrn).count() == 1
