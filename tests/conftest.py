from pathlib import Path

import pytest
from django.core.cache import cache
from django.test import override_settings

from accounts.roles import Role

from .factories import PASSWORD, PatientFactory, SampleFactory, UserFactory

FIXTURES = Path(__file__).parent / "fixtures"
CELLS = FIXTURES / "cells"


@pytest.fixture(autouse=True)
def _fresh_throttle_counters():
    """Throttle and lockout counters live in the cache; each test starts from zero."""
    cache.clear()
    yield
    cache.clear()


@pytest.fixture(autouse=True)
def _media_in_tmp(settings, tmp_path):
    settings.MEDIA_ROOT = str(tmp_path / "media")


@pytest.fixture(autouse=True)
def _no_real_enqueue(request, monkeypatch):
    """Unit tests don't talk to a broker; worker tests opt out with the 'worker' marker."""
    if request.node.get_closest_marker("worker"):
        return
    calls, heatmaps = [], []
    monkeypatch.setattr("classifier.services._send_to_broker", lambda image_ids: calls.append(list(image_ids)))
    monkeypatch.setattr(
        "classifier.services._send_heatmaps_to_broker", lambda prediction_ids: heatmaps.append(list(prediction_ids))
    )
    request.node.enqueued = calls
    request.node.enqueued_heatmaps = heatmaps
    fields = []
    monkeypatch.setattr("classifier.fields._send_fields_to_broker", lambda field_ids: fields.append(list(field_ids)))
    request.node.enqueued_fields = fields


@pytest.fixture
def password():
    return PASSWORD


@pytest.fixture
def technician(db):
    return UserFactory(username="tech1", role=Role.TECHNICIAN)


@pytest.fixture
def doctor(db):
    return UserFactory(username="doc1", role=Role.DOCTOR)


@pytest.fixture
def admin_user(db):
    return UserFactory(username="admin1", role=Role.ADMIN)


@pytest.fixture
def patient(db):
    return PatientFactory()


@pytest.fixture
def sample(db, patient, technician):
    return SampleFactory(patient=patient, created_by=technician)


@pytest.fixture
def cell_files():
    """Real BCCD cells (a few per class) from TEST_SIMPLE."""
    return sorted(CELLS.glob("*/*.jpeg"))


@pytest.fixture(autouse=True, scope="session")
def _fast_password_hasher():
    """MD5 instead of PBKDF2: every test user has a password, and records built once per module too."""
    with override_settings(PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"]):
        yield


@pytest.fixture(autouse=True, scope="session")
def _small_samples_signable():
    """Most tests sign a handful of cells: the lab's minimum count (HV_MIN_CELLS_FOR_SIGNOFF, 100 by
    default) is 1 here; tests/review/test_sign_off_rules.py sets it back to test it and its override."""
    with override_settings(HV_MIN_CELLS_FOR_SIGNOFF=1):
        yield


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook reads the groups
def pytest_collection_modifyitems(config, items):
    """Under xdist (``-n``, ``--dist loadgroup``) each test module runs on one xdist worker, so records
    built once per module (tests/module_data.py) are built once, not on every worker; and the worker
    tests all run on the same one, since their setup purges the one broker's queues."""
    for item in items:
        group = "workers" if item.get_closest_marker("worker") else item.module.__name__
        item.add_marker(pytest.mark.xdist_group(group))


def pytest_sessionfinish(session, exitstatus):
    """In CI (HV_FAIL_ON_SKIP=1) a skipped test fails the run: nothing is skipped silently."""
    import os

    if os.environ.get("HV_FAIL_ON_SKIP") != "1":
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter else []
    if skipped and exitstatus == 0:
        reporter.write_line(f"HV_FAIL_ON_SKIP: {len(skipped)} test(s) were skipped; failing the run.", red=True)
        session.exitstatus = 1
