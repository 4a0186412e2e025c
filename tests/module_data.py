"""Records built once for a whole test module (the access matrices run hundreds of tests on them).

``module_records(build)`` makes a module-scoped fixture: ``build()`` runs once, inside a transaction
that is rolled back after the module's last test; each test still runs in its own savepoint (its
``db`` fixture), so what a test writes is undone before the next one. The module's uploaded files
live in one media folder for the module, so the module also takes over the per-test media fixture:

    objects = module_records(build)
    _media_in_tmp = module_media  # the records' files stay readable in every test of the module
"""
from __future__ import annotations

from collections.abc import Callable

import pytest
from django.db import transaction
from django.test import override_settings


@pytest.fixture(scope="module")
def _module_media_root(tmp_path_factory):
    """The module's media folder, and the tests' fast password hasher while its records are built."""
    fast_hasher = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    with override_settings(MEDIA_ROOT=str(tmp_path_factory.mktemp("module-media")), PASSWORD_HASHERS=fast_hasher):
        yield


@pytest.fixture
def module_media(_module_media_root):
    """Replaces conftest's per-test media folder with the module's."""


def module_records(build: Callable[[], object]):
    @pytest.fixture(scope="module")
    def records(django_db_setup, django_db_blocker, _module_media_root):
        with django_db_blocker.unblock(), transaction.atomic():
            yield build()
            transaction.set_rollback(True)

    return records
