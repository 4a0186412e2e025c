"""Schemathesis fuzzing of every operation in the project's OpenAPI schema: no 5xx, ever,
and every response (status, content type, body) as the schema documents it.

The schema is generated in-process by drf-spectacular and the requests go straight into
Django's WSGI application (no server), inside the test's database transaction. Bounded:
a fixed number of examples per operation and generation mode, derandomized so CI is stable.
"""
import pytest
import schemathesis
from django.core import signals
from django.core.files.base import ContentFile
from django.core.handlers.wsgi import WSGIHandler
from django.db import close_old_connections
from drf_spectacular.generators import SchemaGenerator
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from rest_framework.authtoken.models import Token
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from accounts.roles import Role
from api.throttling import DEFAULT_RATES, HVScopedRateThrottle
from cases.services import images_upload

from ..factories import ModelVersionFactory, PatientFactory, PredictionFactory, SampleFactory, UserFactory
from . import images as img
from . import reviewing

EXAMPLES_PER_OPERATION = 15
# No 5xx, and the schema is accurate: every status code, content type and JSON body documented.
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]

FUZZ_SETTINGS = settings(
    max_examples=EXAMPLES_PER_OPERATION,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)


@pytest.fixture
def wsgi_app():
    # Like Django's test client: keep the test's connection (and transaction) open across requests.
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    try:
        yield WSGIHandler()
    finally:
        signals.request_started.connect(close_old_connections)
        signals.request_finished.connect(close_old_connections)


@pytest.fixture
def api_schema(wsgi_app):
    document = SchemaGenerator().get_schema(request=None, public=True)
    schema = schemathesis.openapi.from_dict(document)
    schema.app = wsgi_app
    return schema


@pytest.fixture
def reviewer(db):
    return UserFactory(role=Role.DOCTOR)


@pytest.fixture
def tokens(technician, admin_user, doctor, reviewer):
    users = (("tech", technician), ("admin", admin_user), ("revoker", doctor), ("doctor", reviewer))
    return {role: Token.objects.create(user=user).key for role, user in users}


# Doctor-only operations (review, sign-off, amendment, worklist), by the end of their path.
DOCTOR_PATHS = ("/worklist/", "/review/", "/confirm-group/", "/comment/", "/sign/", "/amend/")
# Operations on a signed sample; the other review operations use a sample awaiting review.
SIGNED_PATHS = ("/amend/", "/signatures/", "/report.pdf", "/fhir/")
REVIEW_PATHS = ("/review/", "/confirm-group/", "/comment/", "/sign/")


def _headers_for(operation, tokens) -> dict:
    """Technicians write clinical records, doctors review; the admin reads everything and activates models."""
    if operation.path.endswith("/auth/token/"):
        return {}
    if operation.path.endswith("/auth/token/revoke/"):
        return {"Authorization": f"Token {tokens['revoker']}"}  # its own token: the others must keep working
    if operation.path.endswith(DOCTOR_PATHS):
        return {"Authorization": f"Token {tokens['doctor']}"}
    writer = operation.method.upper() == "POST" and "activate" not in operation.path
    return {"Authorization": f"Token {tokens['tech' if writer else 'admin']}"}


def _existing_ids(operation, records: dict) -> dict[str, int]:
    path = operation.path
    if path.startswith("/api/v1/samples/{id}/") and path.endswith(SIGNED_PATHS):
        return {"id": records["signed-sample"]}
    if path.startswith("/api/v1/samples/{id}/") and path.endswith(REVIEW_PATHS):
        ids = {"id": records["review-sample"]}
        if "{image_pk}" in path:
            ids["image_pk"] = records["review-image"]
        return ids
    for prefix, pk in records.items():
        if path.startswith(f"/api/v1/{prefix}/{{id}}"):
            return {"id": pk}
    return {}


def _fuzz(operation, mode, headers: dict, statuses: set[int], records: dict) -> None:
    # Valid data aims at records that exist (else nearly every request would be a 404);
    # invalid data keeps the fuzzed ids.
    existing_ids = _existing_ids(operation, records) if mode is GenerationMode.POSITIVE else {}

    @FUZZ_SETTINGS
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case):
        case.path_parameters.update(existing_ids)
        if mode is GenerationMode.POSITIVE and isinstance(case.body, dict) and "patient" in case.body:
            case.body["patient"] = records["patients"]
        response = case.call(headers=headers)
        statuses.add(response.status_code)
        case.validate_response(response, checks=CHECKS, headers=headers)

    try:
        run()
    except Unsatisfiable:
        if mode is GenerationMode.POSITIVE:
            raise
        # No parameters and no body (e.g. token revoke): there is nothing to make invalid.


@pytest.mark.slow
@pytest.mark.django_db
def test_no_server_errors_on_any_operation(api_schema, tokens, technician, reviewer, monkeypatch):
    monkeypatch.setattr(HVScopedRateThrottle, "THROTTLE_RATES", {scope: "100000/min" for scope in DEFAULT_RATES})
    sample = SampleFactory(patient=PatientFactory())
    image = images_upload(actor=technician, sample=sample, files=[("cell.png", img.png(0))]).accepted[0]
    version = ModelVersionFactory(name="fuzz-v1", threshold=0.5)
    prediction = PredictionFactory(image=image, model_version=version, predicted_class="LYMPHOCYTE",
                                   heatmap=ContentFile(img.png(1), name="h.png"))
    # Doctor review: one sample awaiting review (sign-off gets random passwords: 400, nothing locked),
    # one signed by the fuzzing doctor (amended at most once, its reports stay readable).
    review_sample = reviewing.reviewable_sample(technician, cells=3, first_image=2)
    signed = reviewing.signed_sample(technician, reviewer, cells=2, first_image=6)
    records = {"patients": sample.patient_id, "samples": sample.pk, "images": image.pk, "predictions": prediction.pk,
               "model-versions": version.pk, "review-sample": review_sample.pk,
               "review-image": review_sample.images.order_by("pk").first().pk, "signed-sample": signed.pk}

    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 14
    seen_statuses: dict[str, set[int]] = {}
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            statuses = seen_statuses.setdefault(operation.label, set())
            _fuzz(operation, mode, _headers_for(operation, tokens), statuses, records)
    assert set(seen_statuses) == {op.label for op in operations}
    assert all(code < 500 for codes in seen_statuses.values() for code in codes), seen_statuses
    # The fuzzer got past authentication and validation: records were really created.
    assert 201 in seen_statuses["POST /api/v1/patients/"], seen_statuses
    assert 201 in seen_statuses["POST /api/v1/samples/"], seen_statuses
    assert 200 in seen_statuses["GET /api/v1/audit/"], seen_statuses
    assert 200 in seen_statuses["GET /api/v1/images/{id}/file/"], seen_statuses
    # ... and the doctor-review operations did their work.
    assert 200 in seen_statuses["GET /api/v1/worklist/"], seen_statuses
    assert 200 in seen_statuses["GET /api/v1/samples/{id}/review/"], seen_statuses
    assert 200 in seen_statuses["POST /api/v1/samples/{id}/images/{image_pk}/review/"], seen_statuses
    assert 400 in seen_statuses["POST /api/v1/samples/{id}/sign/"], seen_statuses
    assert 201 in seen_statuses["POST /api/v1/samples/{id}/amend/"], seen_statuses
    assert 200 in seen_statuses["GET /api/v1/samples/{id}/report.pdf"], seen_statuses
    assert 200 in seen_statuses["GET /api/v1/samples/{id}/fhir/"], seen_statuses
