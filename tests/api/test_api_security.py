"""Authentication, lockout, rate limits, CSRF and error handling of the API."""
from datetime import timedelta

import pytest
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from drf_spectacular.validation import validate_schema
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from api.throttling import HVScopedRateThrottle
from audit.models import AuditEvent
from cases.errors import InvalidState, InvalidTransition, NotAllowed
from cases.models import CellImage, Patient, Sample

from ..factories import PASSWORD, SampleFactory
from . import images as img

pytestmark = pytest.mark.django_db

TOKEN = reverse("api:token")
PATIENTS = reverse("api:patient-list")


# Token sign-in ---------------------------------------------------------------------


def test_token_sign_in_and_use(api, technician):
    response = api.post(TOKEN, {"username": technician.username, "password": PASSWORD}, format="json")
    assert response.status_code == 200
    key = response.json()["token"]
    assert Token.objects.get(user=technician).key == key
    assert AuditEvent.objects.filter(action="login", actor_username=technician.username).exists()
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    assert client.get(PATIENTS).status_code == 200
    # The next sign-in issues a new token; the previous one stops working.
    fresh = api.post(TOKEN, {"username": technician.username, "password": PASSWORD}).json()["token"]
    assert fresh != key and client.get(PATIENTS).status_code == 401


def test_token_expires_after_its_lifetime_and_sign_in_issues_a_new_one(api, technician, settings):
    settings.HV_API_TOKEN_TTL_HOURS = 12
    body = api.post(TOKEN, {"username": technician.username, "password": PASSWORD}, format="json").json()
    token = Token.objects.get(key=body["token"])
    assert parse_datetime(body["expires_at"]) == token.created + timedelta(hours=12)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    Token.objects.filter(pk=token.pk).update(created=timezone.now() - timedelta(hours=11, minutes=59))
    assert client.get(PATIENTS).status_code == 200  # still inside its lifetime
    Token.objects.filter(pk=token.pk).update(created=timezone.now() - timedelta(hours=12, seconds=1))
    response = client.get(PATIENTS)
    assert response.status_code == 401
    assert "expired" in response.json()["detail"]
    assert client.get(PATIENTS).status_code == 401  # and stays refused
    fresh = api.post(TOKEN, {"username": technician.username, "password": PASSWORD}, format="json").json()
    assert fresh["token"] != token.key and not Token.objects.filter(key=token.key).exists()
    client.credentials(HTTP_AUTHORIZATION=f"Token {fresh['token']}")
    assert client.get(PATIENTS).status_code == 200


def test_sign_in_replaces_an_expired_token_it_has_not_seen_used(api, technician, settings):
    settings.HV_API_TOKEN_TTL_HOURS = 1
    old = Token.objects.create(user=technician)
    Token.objects.filter(pk=old.pk).update(created=timezone.now() - timedelta(hours=2))
    key = api.post(TOKEN, {"username": technician.username, "password": PASSWORD}, format="json").json()["token"]
    assert key != old.key and Token.objects.filter(user=technician).count() == 1


def test_token_revoke(api, technician):
    key = api.post(TOKEN, {"username": technician.username, "password": PASSWORD}, format="json").json()["token"]
    api.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    assert api.post(reverse("api:token-revoke")).status_code == 204
    assert not Token.objects.filter(user=technician).exists()
    assert AuditEvent.objects.filter(action="logout", actor_username=technician.username).exists()
    assert api.get(PATIENTS).status_code == 401  # the old token no longer works


def test_wrong_password_is_400_and_audited(api, technician):
    response = api.post(TOKEN, {"username": technician.username, "password": "wrong-password"}, format="json")
    assert response.status_code == 400
    assert "token" not in response.json()
    assert AuditEvent.objects.filter(action="login_failed", object_repr=technician.username).exists()


def test_anonymous_and_bad_tokens_get_401(api):
    response = api.get(PATIENTS)
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Token"
    api.credentials(HTTP_AUTHORIZATION="Token " + "0" * 40)
    assert api.get(PATIENTS).status_code == 401


def test_token_sign_in_goes_through_axes_lockout(api, technician):
    for _ in range(settings.AXES_FAILURE_LIMIT):
        api.post(TOKEN, {"username": technician.username, "password": "nope-nope"}, format="json")
    response = api.post(TOKEN, {"username": technician.username, "password": PASSWORD}, format="json")
    assert response.status_code == 429
    assert response["Content-Type"] == "application/json"
    assert "locked" in response.json()["detail"]
    assert int(response["Retry-After"]) == settings.AXES_COOLOFF_TIME.total_seconds()
    assert not Token.objects.filter(user=technician).exists()


# Rate limits -----------------------------------------------------------------------


@pytest.fixture
def low_rates(monkeypatch):
    # DRF reads the rates once, at class definition: override the class attribute.
    monkeypatch.setattr(HVScopedRateThrottle, "THROTTLE_RATES", {"api-login": "3/min", "api-upload": "2/min"})


def test_token_sign_in_is_rate_limited(low_rates, api, technician, doctor):
    for _ in range(3):
        api.post(TOKEN, {"username": doctor.username, "password": PASSWORD}, format="json")
    response = api.post(TOKEN, {"username": technician.username, "password": PASSWORD}, format="json")
    assert response.status_code == 429
    assert int(response["Retry-After"]) > 0
    assert not Token.objects.filter(user=technician).exists()


def test_upload_is_rate_limited_per_user(low_rates, tech_api, sample):
    url = reverse("api:sample-images", args=[sample.pk])
    statuses = [
        tech_api.post(url, {"images": [SimpleUploadedFile(f"c{i}.png", img.png(i))]}, format="multipart").status_code
        for i in range(3)
    ]
    assert statuses == [201, 201, 429]
    assert CellImage.objects.count() == 2
    assert tech_api.get(url).status_code == 200  # reading is not throttled


# CSRF and sessions -----------------------------------------------------------------


def test_session_write_without_csrf_token_is_refused(technician):
    client = Client(enforce_csrf_checks=True)
    client.force_login(technician)
    payload = {"mrn": "M-CSRF", "family_name": "A", "given_name": "B", "date_of_birth": "1990-01-01"}
    response = client.post(PATIENTS, payload, content_type="application/json")
    assert response.status_code == 403
    assert "CSRF" in response.json()["detail"]
    assert not Patient.objects.exists()
    # With the token from the cookie, the same session write works.
    client.get(reverse("patient-list"))  # a page sets the csrftoken cookie
    token = client.cookies["csrftoken"].value
    response = client.post(PATIENTS, payload, content_type="application/json", HTTP_X_CSRFTOKEN=token)
    assert response.status_code == 201


def test_session_reads_work_and_token_writes_need_no_csrf(technician):
    client = Client(enforce_csrf_checks=True)
    client.force_login(technician)
    assert client.get(PATIENTS).status_code == 200
    token, _ = Token.objects.get_or_create(user=technician)
    token_client = APIClient(enforce_csrf_checks=True)
    payload = {"mrn": "M-TOK", "family_name": "A", "given_name": "B", "date_of_birth": "1990-01-01"}
    response = token_client.post(PATIENTS, payload, format="json", HTTP_AUTHORIZATION=f"Token {token.key}")
    assert response.status_code == 201


# Errors ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("exc", "status"),
    [
        (lambda s: NotAllowed("Your role does not allow this action."), 403),
        (lambda s: InvalidTransition(s, "signed"), 409),
        (lambda s: InvalidState("The sample is signed and locked."), 409),
        (lambda s: ValidationError({"reason": "A reason is required."}), 400),
        (lambda s: ValueError("A reason is required."), 400),
    ],
)
def test_service_exceptions_are_mapped(tech_api, patient, monkeypatch, exc, status):
    sample = SampleFactory(patient=patient)

    def failing(**kwargs):
        raise exc(sample)

    monkeypatch.setattr("cases.services.sample_create", failing)
    response = tech_api.post(
        reverse("api:sample-list"), {"patient": patient.pk, "collected_at": "2026-11-01T08:00:00Z"}, format="json"
    )
    assert response.status_code == status
    body = response.json()
    assert body.get("detail") or body.get("reason")  # a field-keyed ValidationError is shown on its field


def test_unexpected_error_is_json_500_without_details_and_rolled_back(tech_api, monkeypatch, caplog):
    from cases import services

    real_create = services.patient_create

    def create_then_crash(**kwargs):
        real_create(**kwargs)
        raise RuntimeError("secret internals: /srv/db password=hunter2")

    monkeypatch.setattr("cases.services.patient_create", create_then_crash)
    payload = {"mrn": "M-500", "family_name": "A", "given_name": "B", "date_of_birth": "1990-01-01"}
    with caplog.at_level("ERROR", logger="api"):
        response = tech_api.post(PATIENTS, payload, format="json")
    assert response.status_code == 500
    assert response["Content-Type"] == "application/json"
    assert set(response.json()) == {"detail"}
    assert "hunter2" not in response.content.decode()
    assert "Traceback" not in response.content.decode()
    assert "hunter2" in caplog.text  # the details go to the log only
    assert not Patient.objects.filter(mrn="M-500").exists()


def test_server_error_handler_answers_json_under_api(rf):
    from api.exceptions import server_error

    response = server_error(rf.get("/api/v1/patients/"))
    assert response.status_code == 500
    assert response["Content-Type"] == "application/json"
    assert b"detail" in response.content
    assert server_error(rf.get("/patients/"))["Content-Type"].startswith("text/html")


def test_unknown_sample_and_method_not_allowed(tech_api):
    assert tech_api.get(reverse("api:sample-detail", args=[424242])).status_code == 404
    assert tech_api.delete(reverse("api:sample-detail", args=[424242])).status_code == 405
    assert not Sample.objects.exists()


# OpenAPI ---------------------------------------------------------------------------


def test_openapi_schema_is_valid_and_documents_the_upload(doctor_api, api):
    assert api.get(reverse("api:schema")).status_code == 401
    response = doctor_api.get(reverse("api:schema"), {"format": "json"})
    assert response.status_code == 200
    schema = response.json()
    validate_schema(schema)
    upload = schema["paths"]["/api/v1/samples/{id}/images/"]["post"]
    body = upload["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert body["$ref"].endswith("/ImageUpload")
    images = schema["components"]["schemas"]["ImageUpload"]["properties"]["images"]
    assert images["type"] == "array"
    assert images["items"]["format"] == "binary"
    assert {"201", "400", "401", "403", "404", "429"} <= set(upload["responses"])
    assert set(schema["components"]["securitySchemes"]) == {"tokenAuth", "cookieAuth"}
    assert doctor_api.get(reverse("api:docs")).status_code == 200
