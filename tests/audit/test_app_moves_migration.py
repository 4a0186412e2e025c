"""The audit trail and the review records moved from ``cases`` to their own apps without a row lost.

A database migrated to the old layout (``cases.0006``) is filled through the historical models, then
migrated to the latest layout: every row is still there, readable through the new models, both hash
chains still verify, permissions given to roles still hold, and the append-only guards still refuse.
"""
import datetime

import pytest
from django.contrib.auth.models import Group, Permission
from django.contrib.contenttypes.models import ContentType
from django.db import DatabaseError, connection, transaction
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

from audit.chain import CHAINED_FIELDS, GENESIS_HASH, chain_hash, chain_verify
from audit.models import AuditEvent
from cases.models import CellImage, Patient, Sample
from classifier.models import Prediction
from review.models import Amendment, CellReview, Signature

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]  # migrates back and forth

# Before cases.0007, audit.0001 and review.0001; the classifier as it was then.
OLD_LAYOUT = [("cases", "0006_audit_hash_chain"), ("classifier", "0003_basophil_and_cell_found")]


def _migrate(targets=None):
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets or executor.loader.graph.leaf_nodes())
    return executor


def _sealed(model, *, label: str, seq: int, prev: str, **values):
    """A chained row as the old code wrote it: its place in the chain and its hash."""
    row = model(seq=seq, prev_hash=prev, hash="", **values)
    row.hash = chain_hash(instance=row, fields=CHAINED_FIELDS[label])
    row.save()
    return row


def _fill_old_layout(apps) -> dict:
    user_model, group = apps.get_model("accounts", "User"), apps.get_model("auth", "Group")
    doctor = user_model.objects.create(username="old-doctor", printed_name="Dr Old")
    tech = user_model.objects.create(username="old-tech")
    patient = apps.get_model("cases", "Patient").objects.create(
        mrn="OLD-1", family_name="Before", given_name="Move", date_of_birth=datetime.date(1970, 1, 1)
    )
    now = timezone.now()
    sample = apps.get_model("cases", "Sample").objects.create(
        accession_number="HV-2026-999001", patient=patient, collected_at=now, received_at=now, status="amended",
    )
    image = apps.get_model("cases", "CellImage").objects.create(
        sample=sample, file="cells/2026/01/old.png", original_filename="old.png", image_format="PNG",
        sha256="a" * 64, size_bytes=10, width=64, height=64, uploaded_by=tech, status="classified",
    )
    version = apps.get_model("classifier", "ModelVersion").objects.create(
        name="old-model", file_path="x.keras", sha256="0" * 64, threshold=0.6
    )
    prediction = apps.get_model("classifier", "Prediction").objects.create(
        image=image, model_version=version, predicted_class="NEUTROPHIL", probabilities={"NEUTROPHIL": 0.9},
        confidence=0.9, unidentified=False, inference_ms=1.0,
    )
    review = apps.get_model("cases", "CellReview").objects.create(
        image=image, final_class="NEUTROPHIL", ai_class="NEUTROPHIL", comment="kept", reviewed_by=doctor,
    )
    event_model = apps.get_model("cases", "AuditEvent")
    first = _sealed(event_model, label="audit.auditevent", seq=1, prev=GENESIS_HASH, actor_username="old-tech",
                    action="create", object_type="cases.sample", object_id=str(sample.pk), new_values={"a": 1})
    second = _sealed(event_model, label="audit.auditevent", seq=2, prev=first.hash, actor_username="old-doctor",
                     action="login", object_type="accounts.user", ip="10.0.0.1")
    signature = _sealed(
        apps.get_model("cases", "Signature"), label="review.signature", seq=1, prev=GENESIS_HASH, sample=sample,
        signer=doctor, printed_name="Dr Old", meaning="reviewed_and_approved", version=1,
        snapshot={"cells": [{"image_id": image.pk}]}, snapshot_sha256="b" * 64,
    )
    amendment = apps.get_model("cases", "Amendment").objects.create(
        sample=sample, reason="typo", requested_by=doctor, previous_signature=signature
    )
    # A role's permission on a moved model (the admin's view of the audit trail) must follow it.
    content_type = apps.get_model("contenttypes", "ContentType").objects.get_or_create(
        app_label="cases", model="auditevent"
    )[0]
    permission = apps.get_model("auth", "Permission").objects.get_or_create(
        content_type=content_type, codename="view_auditevent", defaults={"name": "Can view audit event"}
    )[0]
    group.objects.get_or_create(name="admin")[0].permissions.add(permission)
    return {
        "patient": patient.pk, "sample": sample.pk, "image": image.pk, "prediction": prediction.pk,
        "review": review.pk, "events": [first.pk, second.pk], "signature": signature.pk,
        "amendment": amendment.pk, "permission": permission.pk,
    }


def test_every_row_survives_the_move_to_the_audit_and_review_apps():
    try:
        executor = _migrate(OLD_LAYOUT)
        ids = _fill_old_layout(executor.loader.project_state(OLD_LAYOUT).apps)
    finally:
        _migrate()
    ContentType.objects.clear_cache()

    assert Patient.objects.get(pk=ids["patient"]).mrn == "OLD-1"
    sample = Sample.objects.get(pk=ids["sample"])
    assert CellImage.objects.get(pk=ids["image"]).sample == sample
    assert Prediction.objects.get(pk=ids["prediction"]).image_id == ids["image"]
    review = CellReview.objects.get(pk=ids["review"])
    assert (review.final_class, review.comment, review.image.review) == ("NEUTROPHIL", "kept", review)
    signature = Signature.objects.get(pk=ids["signature"])
    assert signature.snapshot == {"cells": [{"image_id": ids["image"]}]} and list(sample.signatures.all()) == [
        signature]
    assert Amendment.objects.get(pk=ids["amendment"]).previous_signature == signature
    events = AuditEvent.objects.filter(pk__in=ids["events"]).order_by("seq")
    assert [(e.action, e.actor_username) for e in events] == [("create", "old-tech"), ("login", "old-doctor")]
    for model, rows in ((AuditEvent, 2), (Signature, 1)):
        check = chain_verify(model=model)
        assert check.ok and check.rows == rows, check.problem

    permission = Permission.objects.get(pk=ids["permission"])
    assert permission.content_type.app_label == "audit"
    assert Group.objects.get(name="admin").permissions.filter(pk=permission.pk).exists()

    # The moved models are append-only as before: through the ORM, and on PostgreSQL for any client.
    with pytest.raises(PermissionError):
        AuditEvent.objects.filter(pk=ids["events"][0]).update(reason="edited")
    with pytest.raises(PermissionError):
        signature.delete()
    if connection.vendor == "postgresql":
        for table in ("cases_auditevent", "cases_signature"):
            with pytest.raises(DatabaseError), transaction.atomic(), connection.cursor() as cursor:
                cursor.execute(f"UPDATE {table} SET hash = 'x'")  # noqa: S608
    new = AuditEvent.objects.create(action="update", actor_username="system", object_type="audit.test")
    assert (new.seq, new.prev_hash) == (3, events.last().hash)
