"""The three roles, as Django groups with model permissions.

``ensure_role_groups`` runs after every migrate and is idempotent.
"""
from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum

from django.contrib.auth.models import Group, Permission


class Role(StrEnum):
    TECHNICIAN = "technician"
    DOCTOR = "doctor"
    ADMIN = "admin"


# Who reads clinical records (patients, samples, images, signed reports): every role.
CLINICAL_STAFF: tuple[Role, ...] = (Role.TECHNICIAN, Role.DOCTOR, Role.ADMIN)

ROLE_PERMISSIONS: dict[Role, list[str]] = {
    Role.TECHNICIAN: [
        "cases.add_patient",
        "cases.change_patient",
        "cases.view_patient",
        "cases.add_sample",
        "cases.change_sample",
        "cases.view_sample",
        "cases.add_cellimage",
        "cases.view_cellimage",
    ],
    Role.DOCTOR: [
        "cases.view_patient",
        "cases.view_sample",
        "cases.view_cellimage",
        "cases.review_sample",
        "cases.sign_sample",
    ],
    Role.ADMIN: [
        "cases.view_patient",
        "cases.view_sample",
        "cases.view_cellimage",
        "audit.view_auditevent",
        "accounts.add_user",
        "accounts.change_user",
        "accounts.view_user",
        "auth.view_group",
        "classifier.view_modelversion",
        "classifier.change_modelversion",
        "review.view_referencerange",
        "review.change_referencerange",
    ],
}


# Separation of duties: the roles that sign results and the roles that manage users are disjoint,
# so that nobody can make themselves a signer, and whoever controls the accounts never signs.
# A superuser manages users. Enforced where roles are assigned (accounts.services, accounts.signals).
SIGNING_ROLES = frozenset({Role.DOCTOR.value})
USER_MANAGING_ROLES = frozenset({Role.ADMIN.value})
SEPARATION_OF_DUTIES = (
    "A user cannot both sign results (doctor) and manage users (admin or superuser): "
    "give these roles to different people."
)


def roles_conflict(*, roles: Iterable[str], is_superuser: bool) -> bool:
    """Whether these roles (plus superuser status) would both sign results and manage users."""
    held = {str(r) for r in roles} | ({Role.ADMIN.value} if is_superuser else set())
    return bool(held & SIGNING_ROLES) and bool(held & USER_MANAGING_ROLES)


def ensure_role_groups() -> None:
    for role, perm_names in ROLE_PERMISSIONS.items():
        group, _ = Group.objects.get_or_create(name=role.value)
        perms = []
        for name in perm_names:
            app_label, codename = name.split(".")
            perm = Permission.objects.filter(content_type__app_label=app_label, codename=codename).first()
            if perm is not None:
                perms.append(perm)
        group.permissions.set(perms)


def user_roles(user) -> set[str]:
    if not getattr(user, "is_authenticated", False):
        return set()
    cached = getattr(user, "_hv_roles", None)
    if cached is None:
        cached = set(user.groups.values_list("name", flat=True))
        if user.is_superuser:
            cached.add(Role.ADMIN.value)
        if roles_conflict(roles=cached, is_superuser=False):
            cached -= SIGNING_ROLES  # a row from before separation of duties: such a user never signs
        user._hv_roles = cached
    return cached


def has_role(user, *roles: Role | str) -> bool:
    return bool(user_roles(user) & {str(r) for r in roles})
