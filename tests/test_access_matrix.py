"""Role × URL → expected HTTP status, for every URL of the project.

The table is checked against the URL conf: a new URL without an entry fails
``test_every_url_has_an_entry``. Django admin's own pages are covered by its index and a
few model pages (admin checks ``is_staff`` and model permissions itself).
"""
import pytest
from django.urls import URLPattern, URLResolver, get_resolver, reverse

from accounts.roles import Role
from cases.services import images_upload
from review import services as reviews

from .classifier.candidates import make_candidate_run
from .conftest import CELLS
from .factories import PASSWORD, PatientFactory, SampleFactory, UserFactory, image_bytes, make_classified_sample
from .fields.building import uploaded_field
from .module_data import _module_media_root, module_media, module_records  # noqa: F401 (fixtures)

ROLES = ("anonymous", Role.TECHNICIAN.value, Role.DOCTOR.value, Role.ADMIN.value)
LOGIN = 302  # anonymous users are sent to the login page


def _row(anon, tech, doctor, admin):
    return dict(zip(ROLES, (anon, tech, doctor, admin), strict=True))


# url name → (method, kwargs key, {role: status})
MATRIX = {
    "login": ("GET", None, _row(200, 302, 302, 302)),
    "logout": ("POST", None, _row(302, 302, 302, 302)),
    "login-two-factor": ("GET", None, _row(302, 302, 302, 302)),  # no password step pending: back to login/home
    "two-factor": ("GET", None, _row(LOGIN, 200, 200, 200)),
    "healthz": ("GET", None, _row(200, 200, 200, 200)),
    "home": ("GET", None, _row(LOGIN, 200, 200, 200)),
    "patient-list": ("GET", None, _row(LOGIN, 200, 200, 200)),
    "patient-create": ("GET", None, _row(LOGIN, 200, 403, 403)),
    "patient-detail": ("GET", "patient", _row(LOGIN, 200, 200, 200)),
    "sample-create": ("GET", "patient", _row(LOGIN, 200, 403, 403)),
    "sample-list": ("GET", None, _row(LOGIN, 200, 200, 200)),
    "sample-detail": ("GET", "sample", _row(LOGIN, 200, 200, 200)),
    "sample-upload": ("POST", "sample", _row(LOGIN, 302, 403, 403)),
    "sample-progress": ("GET", "sample", _row(LOGIN, 200, 200, 200)),
    # Correcting and cancelling a sample (technicians correct; technicians and doctors cancel), its
    # history in words and its barcode label (every clinical role).
    "sample-edit": ("GET", "sample", _row(LOGIN, 200, 403, 403)),
    "sample-cancel": ("GET", "sample", _row(LOGIN, 200, 200, 403)),
    "sample-history": ("GET", "sample", _row(LOGIN, 200, 200, 200)),
    "sample-barcode": ("GET", "sample", _row(LOGIN, 200, 200, 200)),
    "sample-label": ("GET", "sample", _row(LOGIN, 200, 200, 200)),
    "image-file": ("GET", "image", _row(LOGIN, 200, 200, 200)),
    "audit-trail": ("GET", None, _row(LOGIN, 403, 403, 200)),
    "worklist": ("GET", None, _row(LOGIN, 403, 200, 403)),
    "sample-review": ("GET", "reviewable", _row(LOGIN, 403, 200, 403)),
    "group-confirm": ("POST", "reviewable", _row(LOGIN, 403, 302, 403)),
    "sample-comment": ("POST", "reviewable", _row(LOGIN, 403, 302, 403)),
    "sample-sign": ("POST", "reviewable", _row(LOGIN, 403, 400, 403)),  # 400: wrong password
    "sample-amend": ("POST", "signed", _row(LOGIN, 403, 302, 403)),
    "signed-version": ("GET", "signed_version", _row(LOGIN, 200, 200, 200)),
    "sample-report-pdf": ("GET", "signed", _row(LOGIN, 200, 200, 200)),
    "sample-fhir": ("GET", "signed", _row(LOGIN, 200, 200, 200)),
    "image-heatmap": ("GET", "image", _row(LOGIN, 404, 404, 404)),  # 404: no prediction yet
    "agreement": ("GET", None, _row(LOGIN, 403, 200, 200)),
    # Whole fields: clinical staff see a field and its detections (doctors change them through the API).
    "field-file": ("GET", "field", _row(LOGIN, 200, 200, 200)),
    "field-view": ("GET", "field", _row(LOGIN, 200, 200, 200)),
    # Models fitted to this lab: doctors and admins read the evidence, admins act on it.
    "model-list": ("GET", None, _row(LOGIN, 403, 200, 200)),
    "candidate-start": ("POST", None, _row(LOGIN, 403, 403, 400)),  # 400: too few confirmed cells
    "candidate-detail": ("GET", "run", _row(LOGIN, 403, 200, 200)),
    "candidate-cancel": ("POST", "run", _row(LOGIN, 403, 403, 302)),
    "model-comparison": ("GET", "candidate", _row(LOGIN, 403, 200, 200)),
    "model-shadow": ("POST", "candidate", _row(LOGIN, 403, 403, 302)),
    "model-activate": ("GET", "candidate", _row(LOGIN, 403, 403, 200)),
}
POST_DATA = {
    "group-confirm": {"ai_class": "LYMPHOCYTE"},
    "sample-comment": {"comment": "ok"},
    "sample-sign": {"password": "wrong", "meaning": "reviewed_and_approved"},
    "sample-amend": {"reason": "matrix test"},
}
ADMIN_PAGES = {
    "admin:index": _row(302, 302, 302, 200),
    "admin:accounts_user_changelist": _row(302, 302, 302, 200),
    "admin:audit_auditevent_changelist": _row(302, 302, 302, 200),
    "admin:auth_group_changelist": _row(302, 302, 302, 200),
}


def _project_url_names(patterns=None, namespace=None):
    patterns = get_resolver().url_patterns if patterns is None else patterns
    names = set()
    for p in patterns:
        if isinstance(p, URLResolver):
            if p.namespace == "admin" or str(p.pattern).startswith("api/"):
                continue  # admin: covered below; the API has its own matrix in tests/api
            names |= _project_url_names(p.url_patterns, p.namespace or namespace)
        elif isinstance(p, URLPattern):
            assert p.name, f"URL pattern {p.pattern} has no name, so it cannot be in the access matrix"
            names.add(f"{namespace}:{p.name}" if namespace else p.name)
    return names


def test_every_url_has_an_entry():
    missing = _project_url_names() - set(MATRIX)
    assert not missing, f"URLs without an access-matrix entry: {sorted(missing)}"
    assert not set(MATRIX) - _project_url_names(), "matrix lists URLs that no longer exist"


def _build_objects():
    """One of each record a URL needs, built once for the module (tests.module_data)."""
    technician = UserFactory(username="matrix-tech", role=Role.TECHNICIAN)
    cell_files = sorted(CELLS.glob("*/*.jpeg"))
    patient = PatientFactory()
    sample = SampleFactory(patient=patient)
    result = images_upload(actor=technician, sample=sample, files=[("cell.png", image_bytes())])
    files = [(p.name, p.read_bytes()) for p in cell_files[:2]]
    reviewable = make_classified_sample(technician=technician, files=files, ai_classes=["EOSINOPHIL", "LYMPHOCYTE"])
    signed = make_classified_sample(technician=technician, files=files, ai_classes=["EOSINOPHIL", "LYMPHOCYTE"])
    signer = UserFactory(role=Role.DOCTOR)
    for image in signed.images.all():
        reviews.cell_review(actor=signer, image=image, final_class="EOSINOPHIL")
    reviews.sample_sign(actor=signer, sample=signed, password=PASSWORD)
    run = make_candidate_run()
    return {
        "users": {role: UserFactory(role=role) for role in ROLES[1:]},  # one per role, shared by the tests
        "patient": patient, "sample": sample, "image": result.accepted[0], "reviewable": reviewable,
        "signed": signed, "signed_version": signed, "run": run, "candidate": run.result_version,
        "field": uploaded_field(technician, sample),
    }


objects = module_records(_build_objects)
_media_in_tmp = module_media  # the records' files stay readable in every test of the module


def _url(name, key, objects):
    if key is None:
        return reverse(name)
    obj = objects[key]
    if name == "sample-create":
        return reverse(name, kwargs={"patient_pk": obj.pk})
    if name == "signed-version":
        return reverse(name, kwargs={"pk": obj.pk, "version": 1})
    return reverse(name, kwargs={"pk": obj.pk})


def _client_for(client, role, objects):
    if role != "anonymous":
        client.force_login(objects["users"][role])
    return client


@pytest.mark.django_db
@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("name", sorted(MATRIX))
def test_role_url_matrix(client, objects, role, name):
    method, key, expected = MATRIX[name]
    url = _url(name, key, objects)
    client = _client_for(client, role, objects)
    if method == "GET":
        response = client.get(url)
    else:
        response = client.post(url, POST_DATA.get(name, {}))
    assert response.status_code == expected[role], f"{role} {method} {url}"
    if expected[role] == LOGIN and role == "anonymous" and name not in ("logout",):
        assert reverse("login") in response["Location"]


@pytest.mark.django_db
@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("name", sorted(ADMIN_PAGES))
def test_admin_pages_by_role(client, objects, role, name):
    client = _client_for(client, role, objects)
    response = client.get(reverse(name))
    assert response.status_code == ADMIN_PAGES[name][role]
