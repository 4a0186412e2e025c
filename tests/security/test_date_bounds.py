"""Dates are bounded by the services; the page forms and the API show the service's error by field."""
import datetime

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from cases import services
from cases.models import AccessionCounter, Patient, Sample

pytestmark = pytest.mark.django_db

SAMPLE_FIELDS = {"specimen_type": "peripheral_blood", "stain": "mgg", "priority": "routine"}


def create_patient(technician, date_of_birth):
    return services.patient_create(
        actor=technician, mrn="MRN-DATES", family_name="A", given_name="B", date_of_birth=date_of_birth, sex="F"
    )


def create_sample(technician, patient, **times):
    return services.sample_create(actor=technician, patient=patient, **SAMPLE_FIELDS, **times)


@pytest.fixture
def tech_api(technician):
    client = APIClient()
    client.force_authenticate(technician)
    return client


# The services -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("date_of_birth", "message"),
    [
        (datetime.date(1, 1, 1), "cannot be before 1900-01-01"),
        (datetime.date(1899, 12, 31), "cannot be before 1900-01-01"),
        (timezone.localdate() + datetime.timedelta(days=1), "cannot be in the future"),
    ],
)
def test_service_refuses_a_birth_date_out_of_range(technician, date_of_birth, message):
    with pytest.raises(ValidationError) as raised:
        create_patient(technician, date_of_birth)
    assert message in raised.value.message_dict["date_of_birth"][0]
    assert not Patient.objects.exists()


def test_service_accepts_birth_dates_at_the_bounds(technician):
    assert create_patient(technician, datetime.date(1900, 1, 1)).date_of_birth == datetime.date(1900, 1, 1)
    today = timezone.localdate()
    patient = services.patient_update(actor=technician, patient=Patient.objects.get(), date_of_birth=today)
    assert patient.date_of_birth == today


def test_patient_update_refuses_a_birth_date_out_of_range(technician, patient):
    with pytest.raises(ValidationError) as raised:
        services.patient_update(actor=technician, patient=patient, date_of_birth=datetime.date(1, 1, 1))
    assert "date_of_birth" in raised.value.message_dict
    patient.refresh_from_db()
    assert patient.date_of_birth == datetime.date(1970, 5, 17)


def _now():
    return timezone.now()


@pytest.mark.parametrize(
    ("times", "field", "message"),
    [
        ({"collected_at": "-1h", "received_at": "9999-12-31"}, "received_at", "cannot be in the future"),
        ({"collected_at": "+1h"}, "collected_at", "cannot be in the future"),
        ({"collected_at": "1999-12-31", "received_at": "-1h"}, "collected_at", "cannot be before 2000-01-01"),
        ({"collected_at": "0001-01-01", "received_at": "0001-01-02"}, "collected_at", "cannot be before 2000-01-01"),
        ({"collected_at": "-1h", "received_at": "-2h"}, "collected_at", "cannot be after the time"),
    ],
)
def test_service_refuses_sample_times_out_of_range(technician, patient, times, field, message):
    def when(value):
        if value[0] in "+-":
            return _now() + datetime.timedelta(hours=int(value[:-1]))
        return datetime.datetime.fromisoformat(value).replace(hour=10, tzinfo=datetime.UTC)

    with pytest.raises(ValidationError) as raised:
        create_sample(technician, patient, **{name: when(value) for name, value in times.items()})
    assert message in raised.value.message_dict[field][0]
    assert not Sample.objects.exists()
    assert not AccessionCounter.objects.exists()  # no accession number was used up


def test_service_allows_a_client_clock_a_little_ahead(technician, patient):
    ahead = _now() + datetime.timedelta(minutes=2)
    sample = create_sample(technician, patient, collected_at=ahead - datetime.timedelta(minutes=1), received_at=ahead)
    assert sample.received_at == ahead


# The page forms show the service's errors -----------------------------------------------------


def test_page_refuses_a_birth_date_of_year_one(client, technician):
    client.force_login(technician)
    response = client.post(
        reverse("patient-create"),
        {"mrn": "MRN-1", "family_name": "A", "given_name": "B", "date_of_birth": "0001-01-01", "sex": "F"},
    )
    assert response.status_code == 400
    assert "The date of birth cannot be before 1900-01-01." in response.context["form"].errors["date_of_birth"]
    assert not Patient.objects.filter(mrn="MRN-1").exists()


def test_page_refuses_a_sample_received_in_9999(client, technician, patient):
    client.force_login(technician)
    response = client.post(
        reverse("sample-create", args=[patient.pk]),
        {"collected_at": "2026-01-01T08:00", "received_at": "9999-12-31T10:00", **SAMPLE_FIELDS},
    )
    assert response.status_code == 400
    errors = response.context["form"].errors
    assert errors["received_at"] == ["The time the sample was received cannot be in the future."]
    assert not Sample.objects.exists()


def test_page_still_refuses_collection_after_receipt(client, technician, patient):
    client.force_login(technician)
    response = client.post(
        reverse("sample-create", args=[patient.pk]),
        {"collected_at": "2026-01-02T08:00", "received_at": "2026-01-01T10:00", **SAMPLE_FIELDS},
    )
    assert response.status_code == 400
    assert "cannot be after the time" in response.context["form"].errors["collected_at"][0]


# The API shows the service's errors ----------------------------------------------------------


def test_api_refuses_a_birth_date_of_year_one(tech_api):
    payload = {"mrn": "MRN-2", "family_name": "A", "given_name": "B", "date_of_birth": "0001-01-01", "sex": "F"}
    response = tech_api.post(reverse("api:patient-list"), payload, format="json")
    assert response.status_code == 400
    assert response.json() == {"date_of_birth": ["The date of birth cannot be before 1900-01-01."]}
    assert not Patient.objects.exists()


def test_api_refuses_a_sample_received_in_9999(tech_api, patient):
    payload = {"patient": patient.pk, "collected_at": "2026-01-01T08:00:00Z", "received_at": "9999-12-31T10:00:00Z"}
    response = tech_api.post(reverse("api:sample-list"), payload, format="json")
    assert response.status_code == 400
    assert response.json() == {"received_at": ["The time the sample was received cannot be in the future."]}
    assert not Sample.objects.exists()
    assert not AccessionCounter.objects.filter(year=9999).exists()


def test_api_refuses_a_sample_collected_before_2000(tech_api, patient):
    payload = {"patient": patient.pk, "collected_at": "1990-01-01T08:00:00Z"}
    response = tech_api.post(reverse("api:sample-list"), payload, format="json")
    assert response.status_code == 400
    assert response.json() == {"collected_at": ["The collection time cannot be before 2000-01-01."]}
