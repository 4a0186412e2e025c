"""Migration cases/0009 adds the WBC count's check constraint to a database that may hold a count
the new rule refuses: that count is cleared and kept in the sample's clinical notes."""
import datetime
from decimal import Decimal

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

from cases.models import Sample

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]  # migrates back and forth

BEFORE = [("cases", "0008_fields")]


def _migrate(targets=None):
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets or executor.loader.graph.leaf_nodes())
    return executor


def test_an_implausible_stored_wbc_count_is_cleared_and_noted():
    executor = _migrate(BEFORE)
    apps = executor.loader.project_state(BEFORE).apps
    patient = apps.get_model("cases", "Patient").objects.create(
        mrn="MIG-1", family_name="Before", given_name="Rule", date_of_birth=datetime.date(1970, 1, 1)
    )
    sample_model = apps.get_model("cases", "Sample")
    now = timezone.now()
    for number, count in (("HV-2026-990001", Decimal("-3")), ("HV-2026-990002", Decimal("7.5"))):
        sample_model.objects.create(accession_number=number, patient=patient, collected_at=now, received_at=now,
                                    wbc_count=count, clinical_notes="fasting")
    _migrate()
    negative = Sample.objects.get(accession_number="HV-2026-990001")
    plausible = Sample.objects.get(accession_number="HV-2026-990002")
    assert negative.wbc_count is None
    assert negative.clinical_notes.startswith("fasting\n")
    assert "WBC count -3.00 ×10⁹/L cleared" in negative.clinical_notes
    assert plausible.wbc_count == Decimal("7.50") and plausible.clinical_notes == "fasting"
