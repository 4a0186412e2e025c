"""API endpoint × method × role → expected HTTP status, for every endpoint of ``api.urls``.

The endpoint list is generated from the URL conf: a new endpoint (or a new method on one)
without an entry here fails ``test_every_endpoint_has_an_entry``. The roles mirror the page
permissions of ``tests/test_access_matrix.py``: clinical staff read, technicians write
patients/samples/images, admins activate model versions and read the audit trail; doctors
review, sign and amend, clinical staff read signed reports, doctors and admins the agreement.
"""
import pytest
from django.core.files.base import ContentFile
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import URLPattern, URLResolver, reverse
from rest_framework.test import APIClient

import api.urls
from accounts.roles import Role
from cases.services import images_upload

from ..classifier.candidates import make_candidate_run
from ..factories import PASSWORD, ModelVersionFactory, PatientFactory, PredictionFactory, SampleFactory, UserFactory
from ..fields.building import reviewable_field, uploaded_field
from ..module_data import _module_media_root, module_media, module_records  # noqa: F401 (fixtures)
from . import images as img
from . import reviewing

ROLES = ("anonymous", Role.TECHNICIAN.value, Role.DOCTOR.value, Role.ADMIN.value, "no-role")
UNAUTH = 401  # anonymous API requests: 401 with WWW-Authenticate: Token
IGNORED_METHODS = {"options", "head", "trace"}
CATCH_ALL = "not-found"  # JSON 404 for unknown paths under /api/v1/, any method, any role


def _row(anon, tech, doctor, admin, norole):
    return dict(zip(ROLES, (anon, tech, doctor, admin, norole), strict=True))


CLINICAL_READ = _row(UNAUTH, 200, 200, 200, 403)
TECHNICIAN_CREATE = _row(UNAUTH, 201, 403, 403, 403)
ADMIN_ONLY = _row(UNAUTH, 403, 403, 200, 403)
DOCTOR_READ = _row(UNAUTH, 403, 200, 403, 403)
DOCTOR_WRITE = DOCTOR_READ
DOCTOR_CREATE = _row(UNAUTH, 403, 201, 403, 403)
MODEL_READ = _row(UNAUTH, 403, 200, 200, 403)

# (url name, method) → (kwargs key, request body builder, {role: status})
MATRIX = {
    ("schema", "GET"): (None, None, CLINICAL_READ),
    ("docs", "GET"): (None, None, CLINICAL_READ),
    ("token", "POST"): (None, "credentials", _row(400, 200, 200, 200, 200)),
    ("token-revoke", "POST"): (None, None, _row(UNAUTH, 204, 204, 204, 204)),
    ("patient-list", "GET"): (None, None, CLINICAL_READ),
    ("patient-list", "POST"): (None, "patient", TECHNICIAN_CREATE),
    ("patient-detail", "GET"): ("patient", None, CLINICAL_READ),
    ("sample-list", "GET"): (None, None, CLINICAL_READ),
    ("sample-list", "POST"): (None, "sample", TECHNICIAN_CREATE),
    ("sample-detail", "GET"): ("sample", None, CLINICAL_READ),
    ("sample-detail", "PATCH"): ("sample", "sample-patch", _row(UNAUTH, 200, 403, 403, 403)),
    ("sample-cancel", "POST"): ("sample", "cancel", _row(UNAUTH, 200, 200, 403, 403)),
    ("sample-images", "GET"): ("sample", None, CLINICAL_READ),
    ("sample-images", "POST"): ("sample", "images", TECHNICIAN_CREATE),
    ("image-file", "GET"): ("image", None, CLINICAL_READ),
    ("prediction-heatmap", "GET"): ("prediction", None, CLINICAL_READ),
    ("modelversion-list", "GET"): (None, None, CLINICAL_READ),
    ("modelversion-activate", "POST"): ("version", "activate", ADMIN_ONLY),
    ("audit-list", "GET"): (None, None, ADMIN_ONLY),
    # Doctor review: "review" is awaiting review, "reviewed" has every cell reviewed, "signed" is signed.
    ("worklist", "GET"): (None, None, DOCTOR_READ),
    ("sample-review", "GET"): ("review", None, DOCTOR_READ),
    ("cell-review", "POST"): ("review-image", "cell-review", DOCTOR_WRITE),
    ("group-confirm", "POST"): ("review", "group-confirm", DOCTOR_WRITE),
    ("sample-comment", "PUT"): ("review", "comment", DOCTOR_WRITE),
    ("sample-sign", "POST"): ("reviewed", "sign", DOCTOR_CREATE),
    ("sample-amend", "POST"): ("signed", "amend", DOCTOR_CREATE),
    ("sample-signatures", "GET"): ("signed", None, CLINICAL_READ),
    ("sample-report-pdf", "GET"): ("signed", None, CLINICAL_READ),
    ("sample-fhir", "GET"): ("signed", None, CLINICAL_READ),
    ("agreement", "GET"): (None, None, _row(UNAUTH, 403, 200, 200, 403)),
    # Whole fields: clinical staff read; doctors add a missed cell and reject (or un-reject) a detection
    # ("field-cell" is a detection of a reviewable sample, "rejected-cell" one a doctor rejected).
    ("sample-fields", "GET"): ("sample", None, CLINICAL_READ),
    ("field-detail", "GET"): ("field", None, CLINICAL_READ),
    ("field-file", "GET"): ("field", None, CLINICAL_READ),
    ("field-cells", "POST"): ("review-field", "field-cell", DOCTOR_CREATE),
    ("field-cell-reject", "POST"): ("field-cell", "reject", DOCTOR_WRITE),
    ("field-cell-reject", "DELETE"): ("rejected-cell", None, DOCTOR_WRITE),
    ("detection-agreement", "GET"): (None, None, _row(UNAUTH, 403, 200, 200, 403)),
    # Models fitted to this lab: doctors and admins read, admins act ("run" is a queued run).
    ("modelversion-comparison", "GET"): ("version", None, MODEL_READ),
    ("modelversion-shadow", "POST"): ("version", "shadow", ADMIN_ONLY),
    ("modelactivation-list", "GET"): (None, None, MODEL_READ),
    ("candidate-run-list", "GET"): (None, None, MODEL_READ),
    ("candidate-run-list", "POST"): (None, None, _row(UNAUTH, 403, 403, 409, 403)),  # 409: a run is unfinished
    ("candidate-run-detail", "GET"): ("run", None, MODEL_READ),
    ("candidate-run-cancel", "POST"): ("run", None, ADMIN_ONLY),
}


def _view_class(pattern: URLPattern):
    callback = pattern.callback
    return getattr(callback, "cls", None) or getattr(callback, "view_class", None)


def api_endpoints(patterns=None) -> set[tuple[str, str]]:
    """(url name, HTTP method) for every method every API view implements."""
    found = set()
    for p in api.urls.urlpatterns if patterns is None else patterns:
        if isinstance(p, URLResolver):
            found |= api_endpoints(p.url_patterns)
            continue
        assert p.name, f"API URL {p.pattern} has no name, so it cannot be in the access matrix"
        if p.name == CATCH_ALL:
            continue
        view = _view_class(p)
        assert view is not None, f"API URL {p.pattern} is not a class-based view"
        for method in view.http_method_names:
            if method not in IGNORED_METHODS and hasattr(view, method):
                found.add((p.name, method.upper()))
    return found


def test_every_endpoint_has_an_entry():
    endpoints = api_endpoints()
    assert ("patient-list", "POST") in endpoints  # the walk finds methods, not only URLs
    missing = endpoints - set(MATRIX)
    assert not missing, f"API endpoints without an access-matrix entry: {sorted(missing)}"
    assert not set(MATRIX) - endpoints, "matrix lists endpoints that no longer exist"


class _Objects(dict):
    """The records a URL needs, built on first use (a review sample costs uploads and reviews)."""

    def __init__(self, technician):
        super().__init__()
        self.technician = technician

    def __missing__(self, key):
        if key == "review":
            self[key] = reviewing.reviewable_sample(self.technician, cells=2, first_image=3)
        elif key == "review-image":
            self[key] = self["review"].images.order_by("pk").first()
        elif key == "reviewed":
            sample = reviewing.reviewable_sample(self.technician, cells=2, first_image=6)
            reviewing.review_all(UserFactory(role=Role.DOCTOR), sample)
            self[key] = sample
        elif key == "signed":
            self[key] = reviewing.signed_sample(self.technician, UserFactory(role=Role.DOCTOR), cells=2, first_image=9)
        elif key == "field":
            self[key] = uploaded_field(self.technician, self["sample"])
        elif key == "review-field":
            self[key] = reviewable_field(self.technician, shade=1)
        elif key == "field-cell":
            self[key] = self["review-field"].cells.order_by("pk").first()
        elif key == "rejected-cell":
            field = reviewable_field(self.technician, shade=2, doctor=UserFactory(role=Role.DOCTOR))
            self[key] = field.cells.get(rejected_at__isnull=False)
        else:
            raise KeyError(key)
        return self[key]


def url_kwargs(objects, key) -> dict:
    if key is None:
        return {}
    if key == "review-image":
        return {"pk": objects["review"].pk, "image_pk": objects["review-image"].pk}
    if key in ("field-cell", "rejected-cell"):
        return {"pk": objects[key].field_id, "image_pk": objects[key].pk}
    return {"pk": objects[key].pk}


def _build_objects():
    """One of each record an endpoint needs, built once for the module (tests.module_data)."""
    technician = UserFactory(username="matrix-tech", role=Role.TECHNICIAN)
    patient = PatientFactory()
    sample = SampleFactory(patient=patient)
    image = images_upload(actor=technician, sample=sample, files=[("cell.png", img.png(0))]).accepted[0]
    version = ModelVersionFactory(name="v1", threshold=0.5)
    prediction = PredictionFactory(image=image, model_version=version, predicted_class="EOSINOPHIL",
                                   heatmap=ContentFile(img.png(1), name="h.png"))
    objects = _Objects(technician)
    run = make_candidate_run(base=version, status="queued")
    objects.update(patient=patient, sample=sample, image=image, version=version, prediction=prediction, run=run)
    # One user per role for every test (the test's savepoint undoes what its requests change).
    objects["users"] = {role: UserFactory(role=None if role == "no-role" else role) for role in ROLES[1:]}
    for key in ("review", "review-image", "reviewed", "signed", "field", "review-field", "field-cell", "rejected-cell"):
        objects[key]  # built now, inside the module's transaction, not lazily inside one test's
    return objects


objects = module_records(_build_objects)
_media_in_tmp = module_media  # the records' files stay readable in every test of the module


def _body(kind, objects, user):
    if kind == "credentials":
        return {"username": user.username, "password": PASSWORD} if user else {}, "json"
    if kind == "patient":
        return {"mrn": "MRN-MATRIX", "family_name": "M", "given_name": "N", "date_of_birth": "1980-01-01"}, "json"
    if kind == "sample":
        return {"patient": objects["patient"].pk, "collected_at": "2026-01-01T08:00:00Z"}, "json"
    if kind == "images":
        return {"images": [SimpleUploadedFile("new.png", img.png(2))]}, "multipart"
    if kind == "activate":
        return {"reason": "matrix", "password": PASSWORD}, "json"
    if kind == "shadow":
        return {"shadow": True}, "json"
    if kind == "cell-review":
        return {"final_class": "LYMPHOCYTE", "comment": "matrix"}, "json"
    if kind == "group-confirm":
        return {"ai_class": "NEUTROPHIL"}, "json"
    if kind == "comment":
        return {"comment": "matrix"}, "json"
    if kind == "sign":
        return {"password": PASSWORD, "meaning": "reviewed_and_approved"}, "json"
    if kind == "amend":
        return {"reason": "matrix"}, "json"
    if kind == "sample-patch":
        return {"clinical_notes": "matrix"}, "json"
    if kind == "cancel":
        return {"reason": "matrix"}, "json"
    if kind == "field-cell":
        return {"box": [200, 150, 300, 250]}, "json"
    if kind == "reject":
        return {"reason": "matrix"}, "json"
    return None, None


@pytest.mark.django_db
@pytest.mark.parametrize("auth", ["token", "session"])
@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize(("name", "method"), sorted(MATRIX))
def test_api_role_matrix(objects, auth, role, name, method):
    key, body_kind, expected = MATRIX[(name, method)]
    client, user = APIClient(), None
    if role != "anonymous":
        user = objects["users"][role]
        if auth == "token":
            from rest_framework.authtoken.models import Token

            client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
        else:
            client.force_login(user)
    url = reverse(f"api:{name}", kwargs=url_kwargs(objects, key))
    data, fmt = _body(body_kind, objects, user)
    response = getattr(client, method.lower())(url, data, format=fmt) if data is not None else (
        getattr(client, method.lower())(url)
    )
    assert response.status_code == expected[role], f"{role} ({auth}) {method} {url}: {response.content[:300]!r}"
    if response.status_code == UNAUTH:
        assert response["WWW-Authenticate"] == "Token"


@pytest.mark.django_db
@pytest.mark.parametrize("role", ["anonymous", Role.TECHNICIAN.value])
@pytest.mark.parametrize(
    "path",
    ["/api/v1/no-such-thing/", "/api/v1/patients/abc/", "/api/v1/samples/-1/images/", "/api/v1/samples/x/report.pdf"],
)
def test_unknown_api_paths_are_json_404(client_for, role, path):
    client = client_for(role)
    for method in ("get", "post", "delete"):
        response = getattr(client, method)(path)
        assert response.status_code == 404
        assert response.json() == {"detail": "Not found."}


@pytest.mark.django_db
def test_missing_trailing_slash_still_redirects(tech_api):
    response = tech_api.get("/api/v1/patients")
    assert response.status_code == 301
    assert response["Location"] == "/api/v1/patients/"


@pytest.mark.django_db
@pytest.mark.parametrize("role", ["anonymous", Role.TECHNICIAN.value, Role.DOCTOR.value])
def test_options_and_head_on_every_endpoint_are_never_server_errors(objects, client_for, role):
    client = client_for(role)
    for name, key in sorted({(name, MATRIX[(name, method)][0]) for name, method in MATRIX}):
        url = reverse(f"api:{name}", kwargs=url_kwargs(objects, key))
        for method in ("options", "head"):
            response = getattr(client, method)(url)
            assert response.status_code < 500, f"{role} {method.upper()} {url}: {response.status_code}"
            if role == "anonymous" and name != "token":
                assert response.status_code == UNAUTH
