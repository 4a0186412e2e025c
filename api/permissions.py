"""One DRF permission class per role, built on ``accounts.roles.has_role``.

Views combine them with DRF's ``&`` / ``|`` operators, e.g. clinical staff read and only
technicians write: ``[(ReadOnly & IsClinicalStaff) | IsTechnician]``. They mirror the page
permissions (``tests/test_access_matrix.py``); ``tests/api/test_api_access_matrix.py`` checks them.
"""
from __future__ import annotations

from rest_framework.permissions import SAFE_METHODS, BasePermission

from accounts.roles import CLINICAL_STAFF, Role, has_role


class RolePermission(BasePermission):
    roles: tuple[Role, ...] = ()
    message = "Your role does not allow this action."

    def has_permission(self, request, view) -> bool:
        return has_role(request.user, *self.roles)


class IsTechnician(RolePermission):
    roles = (Role.TECHNICIAN,)


class IsDoctor(RolePermission):
    roles = (Role.DOCTOR,)


class IsAdmin(RolePermission):
    roles = (Role.ADMIN,)


class IsClinicalStaff(RolePermission):
    """Any of the three roles: what every clinical read needs."""

    roles = CLINICAL_STAFF


class ReadOnly(BasePermission):
    def has_permission(self, request, view) -> bool:
        return request.method in SAFE_METHODS


# Clinical staff read; technicians register patients/samples and upload images.
TECHNICIAN_WRITES = (ReadOnly & IsClinicalStaff) | IsTechnician
