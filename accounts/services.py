"""Writes of sign-in: lockout counters, password re-entry, two-factor enrolment and verification.

The lockout counters are django-axes' ``AccessAttempt`` rows (one per username × IP × user
agent). Every failure is counted here, whether it comes through axes (a wrong password at a
sign-in, see ``accounts.lockout``), a wrong one-time code, or a wrong signing password.
"""
from __future__ import annotations

from axes.handlers.proxy import AxesProxyHandler
from axes.helpers import get_credentials
from axes.models import AccessAttempt
from django.conf import settings
from django.contrib.auth.models import Group
from django.contrib.auth.signals import user_login_failed
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import F
from django.utils import timezone
from django_otp import match_token
from django_otp.models import Device
from django_otp.plugins.otp_static.models import StaticDevice, StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice

from .context import acting
from .roles import SEPARATION_OF_DUTIES, Role, has_role, roles_conflict
from .selectors import login_locked
from .signals import two_factor_enrolled

RECOVERY_CODE_COUNT = 10


class InvalidCode(ValueError):
    """The one-time code was not accepted."""


def login_failure_record(*, username: str | None, ip_address: str | None, user_agent: str = "", path: str = "") -> bool:
    """Count one failed sign-in against the username and the IP; returns whether either is now locked."""
    now = timezone.now()
    with transaction.atomic():
        if settings.AXES_COOLOFF_TIME is not None:  # an expired row must not carry its old count on
            AccessAttempt.objects.filter(attempt_time__lt=now - settings.AXES_COOLOFF_TIME).delete()
        attempt, created = AccessAttempt.objects.select_for_update().get_or_create(
            username=username,
            ip_address=ip_address,
            user_agent=user_agent[:255],
            defaults={"get_data": "", "post_data": "", "http_accept": "", "path_info": path[:255],
                      "failures_since_start": 1},
        )
        if not created:
            AccessAttempt.objects.filter(pk=attempt.pk).update(
                failures_since_start=F("failures_since_start") + 1, attempt_time=now, path_info=path[:255]
            )
    return login_locked(username=username, ip_address=ip_address)


def login_failures_reset(*, username: str) -> int:
    """After a successful sign-in: clear that username's failures only (other usernames' from the same IP stay)."""
    deleted, _ = AccessAttempt.objects.filter(username=username).delete()
    return deleted


def password_recheck(*, user, password: str, ip_address: str | None) -> bool:
    """Re-entry of a signed-in user's password (electronic signature), counted like a sign-in.

    False, without looking at the password, while the username or the IP is locked out; a wrong
    password is a failed sign-in. The caller gives one answer for both.
    """
    username = user.get_username()
    if login_locked(username=username, ip_address=ip_address):
        return False
    if password and user.check_password(password):
        login_failures_reset(username=username)
        return True
    login_failure_record(username=username, ip_address=ip_address, path="password re-entry")
    return False


# Two-factor sign-in -----------------------------------------------------------------------------


def two_factor_enrolment_start(*, user) -> TOTPDevice:
    """The user's authenticator awaiting confirmation (made once): its secret is shown until a code confirms it."""
    device = TOTPDevice.objects.filter(user=user, confirmed=False).order_by("pk").first()
    if device is None:
        device = TOTPDevice.objects.create(user=user, name="Authenticator app", confirmed=False)
    return device


def two_factor_enrolment_confirm(*, user, token: str) -> tuple[TOTPDevice, list[str]]:
    """Confirm the authenticator with a code from it; returns it and new recovery codes (shown this once)."""
    with transaction.atomic():
        device = TOTPDevice.objects.select_for_update().filter(user=user, confirmed=False).order_by("pk").first()
        if device is None or not device.verify_token(_normalized(token)):
            raise InvalidCode("The code is not valid: enter the 6 digits the authenticator app shows now.")
        device.confirmed = True
        device.save(update_fields=["confirmed"])
        codes = two_factor_recovery_codes_reset(user=user)
        two_factor_enrolled.send(sender=type(user), user=user)  # audited (audit.receivers)
    return device, codes


def two_factor_recovery_codes_reset(*, user) -> list[str]:
    """New single-use recovery codes; the old ones stop working. Only their use is stored, not shown again."""
    device, _ = StaticDevice.objects.get_or_create(user=user, name="Recovery codes", defaults={"confirmed": True})
    device.token_set.all().delete()
    codes = [StaticToken.random_token() for _ in range(RECOVERY_CODE_COUNT)]
    StaticToken.objects.bulk_create(StaticToken(device=device, token=code) for code in codes)
    return codes


def two_factor_verify(*, user, token: str) -> Device | None:
    """The confirmed device that accepts the code: the authenticator, or a recovery code (then used up)."""
    token = _normalized(token)
    if not token:
        return None
    return match_token(user, token)


def sign_in_second_factor(*, request, user, token: str) -> Device | None:
    """The second step of a sign-in (page or API token), after the password was right.

    Refused while the username or IP is locked out (``request.axes_locked_out`` is then set); a
    wrong or missing code is a failed sign-in (``user_login_failed``: counted by the lockout,
    audited). The sign-in itself (``login`` / token) is the caller's, with the device returned.
    """
    credentials = get_credentials(user.get_username())
    if not AxesProxyHandler.is_allowed(request, credentials):
        request.axes_locked_out = True
        request.axes_credentials = credentials
        return None
    device = two_factor_verify(user=user, token=token)
    if device is None:
        user_login_failed.send(sender=__name__, credentials=credentials, request=request)
    return device


def _normalized(token: str | None) -> str:
    return "".join((token or "").split()).lower()


# Roles ------------------------------------------------------------------------------------------

# What an admin who is not a superuser may grant or take away; the admin role is a superuser's to give.
GRANTABLE_BY_ADMINS = frozenset({Role.TECHNICIAN.value, Role.DOCTOR.value})


def user_roles_check(*, actor, user, roles) -> None:
    """Raise ``ValidationError`` keyed by ``groups`` unless ``actor`` may give ``user`` exactly ``roles``.

    ``actor`` None is the command line (``seed_demo``, ``createsuperuser``): only separation of
    duties applies. Otherwise only a superuser changes a superuser or the admin role, and nobody
    but a superuser changes their own roles.
    """
    roles = {str(r) for r in roles}
    errors = []
    unknown = roles - {r.value for r in Role}
    if unknown:
        errors.append(f"Unknown role(s): {', '.join(sorted(unknown))}.")
    if actor is not None and not actor.is_superuser:
        if not has_role(actor, Role.ADMIN):
            raise PermissionDenied("Only admins change users' roles.")
        changed = roles ^ (set(user.groups.values_list("name", flat=True)) if user.pk else set())
        if user.is_superuser:
            errors.append("Only a superuser can change a superuser.")
        elif changed and user.pk == actor.pk:
            errors.append("You cannot change your own roles.")
        elif changed - GRANTABLE_BY_ADMINS:
            errors.append("Only a superuser can grant or remove the admin role.")
    if roles_conflict(roles=roles, is_superuser=user.is_superuser):
        errors.append(SEPARATION_OF_DUTIES)
    if errors:
        raise ValidationError({"groups": errors})


def user_roles_set(*, actor, user, roles):
    """Give ``user`` exactly ``roles`` (audited), after :func:`user_roles_check`."""
    user_roles_check(actor=actor, user=user, roles=roles)
    with transaction.atomic(), acting(actor=actor):
        user.groups.set(Group.objects.filter(name__in={str(r) for r in roles}))
    user._hv_roles = None  # accounts.roles.user_roles reads them again
    return user
