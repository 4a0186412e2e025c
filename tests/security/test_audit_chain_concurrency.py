"""Concurrent appends to the audit chain (its own module: it commits for real, from several threads,
so it cannot run inside the records that tests/security/test_audit_chain.py builds once per module)."""
import io
import threading

import pytest
from django.core.management import call_command
from django.db import connections, transaction

from audit.models import AuditEvent
from audit.services import record_event


@pytest.mark.django_db(transaction=True)
def test_concurrent_appends_form_one_chain():
    """Writers in parallel transactions (each holding its row a moment before commit) never fork
    the chain or leave a gap: appends are serialized until commit."""
    errors = []
    barrier = threading.Barrier(4)

    def writer(n: int) -> None:
        try:
            barrier.wait()
            for i in range(5):
                with transaction.atomic():
                    record_event(action="update", object_type="cases.sample", object_id=f"{n}-{i}")
                    record_event(action="update", object_type="cases.sample", object_id=f"{n}-{i}b")
        except Exception as error:  # noqa: BLE001 - reported by the assertion below
            errors.append(error)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert AuditEvent.objects.filter(object_type="cases.sample").count() == 40
    out = io.StringIO()
    call_command("verify_audit", stdout=out)  # raises CommandError on a fork or a gap
    assert "OK audit.auditevent" in out.getvalue()
