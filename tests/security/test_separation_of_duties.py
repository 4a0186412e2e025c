"""Separation of duties: who signs results (doctor) never manages users (admin, superuser).

An admin who is not a superuser cannot make itself (or anyone) a superuser, cannot change its
own roles, grants only technician and doctor, and cannot touch a superuser or the role groups.
"""
import io

import pytest
from django.contrib.auth.models import Group
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.management import call_command
from django.db import transaction
from django.urls import reverse

from accounts.models import User
from accounts.roles import SEPARATION_OF_DUTIES, Role, has_role
from accounts.services import user_roles_set
from cases.errors import NotAllowed
from review import services as reviews

from ..factories import PASSWORD, UserFactory

pytestmark = pytest.mark.django_db


def group(role: Role) -> Group:
    return Group.objects.get(name=role.value)


def roles_of(user) -> set[str]:
    return set(User.objects.get(pk=user.pk).groups.values_list("name", flat=True))


@pytest.fixture
def superuser(db):
    return User.objects.create_superuser("root", "root@example.org", PASSWORD)


def change_url(user) -> str:
    return reverse("admin:accounts_user_change", args=[user.pk])


def change_form(user, *, roles, **extra) -> dict:
    """What the admin's change page posts for ``user``, with its roles set to ``roles``."""
    return {
        "username": user.username,
        "first_name": user.first_name,
        "last_name": user.last_name,
        "email": user.email,
        "is_active": "on",
        **({"is_staff": "on"} if user.is_staff else {}),
        "date_joined_0": user.date_joined.strftime("%Y-%m-%d"),
        "date_joined_1": user.date_joined.strftime("%H:%M:%S"),
        "printed_name": user.printed_name,
        "qualification": user.qualification,
        "groups": [group(r).pk for r in roles],
        "_save": "Save",
        **extra,
    }


def form_errors(response) -> str:
    return str(response.context["adminform"].form.errors)


# Django admin, as an admin who is not a superuser ------------------------------------------------


def test_admin_cannot_make_itself_superuser_and_doctor(client, admin_user):
    client.force_login(admin_user)
    response = client.post(
        change_url(admin_user),
        change_form(admin_user, roles=[Role.ADMIN, Role.DOCTOR], is_superuser="on", user_permissions=[1]),
    )
    assert response.status_code == 200  # the form again, with the refusal
    assert "You cannot change your own roles." in form_errors(response)
    admin_user.refresh_from_db()
    assert not admin_user.is_superuser
    assert roles_of(admin_user) == {Role.ADMIN.value}
    assert not admin_user.user_permissions.exists()


def test_admin_cannot_make_itself_superuser_even_without_changing_roles(client, admin_user):
    client.force_login(admin_user)
    response = client.post(change_url(admin_user), change_form(admin_user, roles=[Role.ADMIN], is_superuser="on"))
    assert response.status_code == 302
    admin_user.refresh_from_db()
    assert not admin_user.is_superuser  # read-only: the posted value is ignored


def test_admin_grants_technician_and_doctor_but_not_admin_or_superuser(client, admin_user, technician):
    client.force_login(admin_user)
    response = client.post(change_url(technician), change_form(technician, roles=[Role.TECHNICIAN, Role.ADMIN]))
    assert response.status_code == 200
    assert "Only a superuser can grant or remove the admin role." in form_errors(response)
    assert roles_of(technician) == {Role.TECHNICIAN.value}

    response = client.post(change_url(technician), change_form(technician, roles=[Role.DOCTOR], is_superuser="on"))
    assert response.status_code == 302
    technician.refresh_from_db()
    assert roles_of(technician) == {Role.DOCTOR.value}
    assert not technician.is_superuser


def test_admin_cannot_edit_a_superuser_or_its_password(client, admin_user, superuser):
    client.force_login(admin_user)
    response = client.post(change_url(superuser), change_form(superuser, roles=[Role.DOCTOR], is_active=""))
    assert response.status_code == 403
    password_url = reverse("admin:auth_user_password_change", args=[superuser.pk])
    response = client.post(password_url, {"password1": "x-new-pass-123!", "password2": "x-new-pass-123!"})
    assert response.status_code == 403
    superuser.refresh_from_db()
    assert superuser.is_active and superuser.check_password(PASSWORD)
    assert roles_of(superuser) == set()


def test_admin_cannot_rename_role_groups_or_change_their_permissions(client, admin_user):
    client.force_login(admin_user)
    doctor_group = group(Role.DOCTOR)
    url = reverse("admin:auth_group_change", args=[doctor_group.pk])
    response = client.post(url, {"name": "doctor-old", "permissions": []})
    assert response.status_code == 403
    doctor_group.refresh_from_db()
    assert doctor_group.name == Role.DOCTOR.value
    assert doctor_group.permissions.filter(codename="sign_sample").exists()
    assert not group(Role.ADMIN).permissions.filter(codename="change_group").exists()


# Django admin, as a superuser ------------------------------------------------------------------


def test_even_a_superuser_cannot_make_a_doctor_an_admin(client, superuser, doctor):
    client.force_login(superuser)
    response = client.post(change_url(doctor), change_form(doctor, roles=[Role.DOCTOR, Role.ADMIN]))
    assert response.status_code == 200
    assert SEPARATION_OF_DUTIES in form_errors(response)
    assert roles_of(doctor) == {Role.DOCTOR.value}

    response = client.post(change_url(doctor), change_form(doctor, roles=[Role.ADMIN]))
    assert response.status_code == 302
    assert roles_of(doctor) == {Role.ADMIN.value}


def test_a_superuser_cannot_take_the_doctor_role(client, superuser):
    client.force_login(superuser)
    response = client.post(change_url(superuser), change_form(superuser, roles=[Role.DOCTOR]))
    assert response.status_code == 200
    assert SEPARATION_OF_DUTIES in form_errors(response)
    assert roles_of(superuser) == set()


# The service and the model layer -------------------------------------------------------------


def test_service_refuses_a_user_who_would_sign_and_manage_users(admin_user, superuser, doctor):
    for actor in (None, superuser, admin_user):
        with pytest.raises(ValidationError) as raised:
            user_roles_set(actor=actor, user=doctor, roles=[Role.DOCTOR, Role.ADMIN])
        assert SEPARATION_OF_DUTIES in raised.value.message_dict["groups"]
    with pytest.raises(ValidationError):
        user_roles_set(actor=None, user=superuser, roles=[Role.DOCTOR])
    assert roles_of(doctor) == {Role.DOCTOR.value}


def test_service_lets_admins_grant_only_technician_and_doctor_to_others(admin_user, technician, superuser):
    with pytest.raises(ValidationError, match="your own roles"):
        user_roles_set(actor=admin_user, user=admin_user, roles=[Role.TECHNICIAN])
    with pytest.raises(ValidationError, match="admin role"):
        user_roles_set(actor=admin_user, user=technician, roles=[Role.ADMIN])
    with pytest.raises(ValidationError, match="change a superuser"):
        user_roles_set(actor=admin_user, user=superuser, roles=[Role.TECHNICIAN])
    with pytest.raises(PermissionDenied):
        user_roles_set(actor=technician, user=technician, roles=[Role.DOCTOR])
    user_roles_set(actor=admin_user, user=technician, roles=[Role.DOCTOR])
    assert roles_of(technician) == {Role.DOCTOR.value}
    user_roles_set(actor=superuser, user=technician, roles=[Role.ADMIN])
    assert roles_of(technician) == {Role.ADMIN.value}


def test_no_write_can_give_one_user_both_roles(admin_user, doctor, superuser):
    # Each refused write inside its own savepoint, as a request's transaction would be rolled back.
    with pytest.raises(ValidationError), transaction.atomic():
        doctor.groups.add(group(Role.ADMIN))
    with pytest.raises(ValidationError), transaction.atomic():
        group(Role.DOCTOR).user_set.add(admin_user)
    with pytest.raises(ValidationError), transaction.atomic():
        superuser.groups.add(group(Role.DOCTOR))
    doctor.is_superuser = True
    with pytest.raises(ValidationError), transaction.atomic():
        doctor.save()
    assert roles_of(doctor) == {Role.DOCTOR.value}
    assert roles_of(admin_user) == {Role.ADMIN.value}
    assert not User.objects.get(pk=doctor.pk).is_superuser


def test_a_user_holding_both_roles_from_before_is_no_doctor_and_cannot_sign(sample):
    both = UserFactory(role=Role.ADMIN)
    User.groups.through.objects.create(user=both, group=group(Role.DOCTOR))  # a row the checks never saw
    both = User.objects.get(pk=both.pk)
    assert not has_role(both, Role.DOCTOR)
    with pytest.raises(NotAllowed):
        reviews.sample_sign(actor=both, sample=sample, password=PASSWORD)


def test_admin_pages_still_serve_admins(client, admin_user, superuser, technician):
    client.force_login(admin_user)
    for url in (
        reverse("admin:accounts_user_changelist"),
        reverse("admin:accounts_user_add"),
        change_url(technician),
        change_url(superuser),  # shown read-only
        reverse("admin:auth_group_changelist"),
    ):
        assert client.get(url).status_code == 200, url
    new_password = "a-long-pass-4321"
    response = client.post(
        reverse("admin:accounts_user_add"),
        {"username": "newtech", "usable_password": "true", "password1": new_password, "password2": new_password},
    )
    assert response.status_code == 302, response.content
    assert User.objects.filter(username="newtech", is_superuser=False).exists()


def test_demo_admin_is_not_a_superuser(db):
    call_command("seed_demo", password="demo-pass-12345", stdout=io.StringIO())
    admin = User.objects.get(username="admin")
    assert not admin.is_superuser and admin.is_staff
    assert roles_of(admin) == {Role.ADMIN.value}
    assert roles_of(User.objects.get(username="doctor")) == {Role.DOCTOR.value}
