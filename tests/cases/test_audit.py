import datetime

import pytest
from django.db import connection, transaction
from django.db.utils import DatabaseError
from django.urls import reverse

from audit.models import AuditEvent
from cases.services import patient_create, patient_update, sample_create

from ..factories import PASSWORD


@pytest.mark.django_db
def test_create_and_update_are_recorded_with_old_and_new_values(technician):
    patient = patient_create(
        actor=technician, mrn="M-1", family_name="Curie", given_name="Marie",
        date_of_birth=datetime.date(1967, 11, 7), sex="F",
    )
    created = AuditEvent.objects.get(object_type="cases.patient", object_id=str(patient.pk), action="create")
    assert created.actor_id == technician.pk
    assert created.actor_username == technician.username
    assert created.new_values["mrn"] == "M-1"
    assert created.old_values == {}

    patient_update(actor=technician, patient=patient, family_name="Sklodowska", reason="Typo at registration")
    updated = AuditEvent.objects.get(object_type="cases.patient", object_id=str(patient.pk), action="update")
    assert updated.old_values == {"family_name": "Curie"}
    assert updated.new_values == {"family_name": "Sklodowska"}
    assert updated.reason == "Typo at registration"


@pytest.mark.django_db
def test_sample_creation_is_audited(technician, patient):
    now = datetime.datetime.now(datetime.UTC)
    sample = sample_create(
        actor=technician, patient=patient, collected_at=now - datetime.timedelta(hours=1), received_at=now,
        specimen_type="peripheral_blood", stain="mgg", priority="stat",
    )
    assert sample.accession_number.startswith(f"HV-{now.year}-")
    event = AuditEvent.objects.get(object_type="cases.sample", action="create")
    assert event.new_values["priority"] == "stat"


@pytest.mark.django_db
def test_delete_is_recorded_with_the_old_values(patient):
    pk = patient.pk
    patient.delete()
    event = AuditEvent.objects.get(object_type="cases.patient", object_id=str(pk), action="delete")
    assert event.old_values["mrn"] == patient.mrn


@pytest.mark.django_db
def test_audit_rows_cannot_be_changed_or_deleted_through_the_orm(technician):
    patient_create(actor=technician, mrn="M-2", family_name="A", given_name="B",
                   date_of_birth=datetime.date(1990, 1, 1), sex="M")
    event = AuditEvent.objects.first()
    event.reason = "tampered"
    with pytest.raises(PermissionError):
        event.save()
    with pytest.raises(PermissionError):
        event.delete()
    with pytest.raises(PermissionError):
        AuditEvent.objects.filter(pk=event.pk).update(reason="tampered")
    with pytest.raises(PermissionError):
        AuditEvent.objects.all().delete()
    event.refresh_from_db()
    assert event.reason == ""


@pytest.mark.django_db
def test_audit_rows_cannot_be_changed_by_raw_sql_on_postgresql(technician):
    if connection.vendor != "postgresql":
        pytest.skip("The database-level trigger exists on PostgreSQL only (CI runs this on PostgreSQL)")
    patient_create(actor=technician, mrn="M-3", family_name="A", given_name="B",
                   date_of_birth=datetime.date(1990, 1, 1), sex="M")
    pk = AuditEvent.objects.first().pk
    for sql in (
        "UPDATE cases_auditevent SET reason = 'tampered' WHERE id = %s",
        "DELETE FROM cases_auditevent WHERE id = %s",
    ):
        with pytest.raises(DatabaseError, match="append-only"), transaction.atomic(), connection.cursor() as cur:
            cur.execute(sql, [pk])
    assert AuditEvent.objects.filter(pk=pk, reason="").exists()


@pytest.mark.django_db
def test_sign_in_sign_out_and_failed_sign_in_are_recorded(client, technician):
    client.post(reverse("login"), {"username": technician.username, "password": "wrong-password"},
                REMOTE_ADDR="10.1.2.3")
    failed = AuditEvent.objects.get(action="login_failed")
    assert failed.object_repr == technician.username
    assert failed.ip == "10.1.2.3"

    response = client.post(reverse("login"), {"username": technician.username, "password": PASSWORD})
    assert response.status_code == 302
    login = AuditEvent.objects.get(action="login")
    assert login.actor_id == technician.pk
    assert login.ip == "127.0.0.1"

    client.post(reverse("logout"))
    assert AuditEvent.objects.filter(action="logout", actor_id=technician.pk).exists()


@pytest.mark.django_db
def test_admin_audit_page_lists_and_filters(client, admin_user, technician):
    patient_create(actor=technician, mrn="FILTER-ME", family_name="Zed", given_name="Y",
                   date_of_birth=datetime.date(1990, 1, 1), sex="M")
    client.force_login(admin_user)
    page = client.get(reverse("audit-trail"), {"object_type": "patient", "actor_username": technician.username})
    assert page.status_code == 200
    assert "FILTER-ME" in page.content.decode()
    empty = client.get(reverse("audit-trail"), {"actor_username": "nobody-at-all"})
    assert "FILTER-ME" not in empty.content.decode()


@pytest.mark.django_db
def test_user_and_role_changes_in_admin_are_audited(client, admin_user, technician):
    from django.contrib.auth.models import Group

    client.force_login(admin_user)
    doctor_group = Group.objects.get(name="doctor")
    url = reverse("admin:accounts_user_change", args=[technician.pk])
    form = {
        "username": technician.username, "first_name": "Test", "last_name": "Renamed", "email": "",
        "is_active": "on", "groups": [doctor_group.pk], "printed_name": "", "qualification": "",
        "last_login_0": "", "last_login_1": "", "date_joined_0": "2026-01-01", "date_joined_1": "10:00:00",
    }
    before = AuditEvent.objects.order_by("-pk").values_list("pk", flat=True).first()
    response = client.post(url, form)
    assert response.status_code == 302, response.content.decode()[:2000]
    events = list(
        AuditEvent.objects.filter(
            object_type="accounts.user", object_id=str(technician.pk), action="update", pk__gt=before
        ).order_by("pk")
    )
    assert any(e.new_values.get("last_name") == "Renamed" and e.old_values["last_name"] for e in events)
    role_changes = [(e.old_values["groups"], e.new_values["groups"]) for e in events if "groups" in e.new_values]
    assert role_changes[0][0] == ["technician"]
    assert role_changes[-1][1] == ["doctor"]
    assert all(e.actor_id == admin_user.pk for e in events)
    assert not any("password" in e.new_values for e in events)
