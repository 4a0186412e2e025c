"""Reads about users' sign-in: lockout counters and two-factor state."""
from __future__ import annotations

from axes.models import AccessAttempt
from django.conf import settings
from django.db.models import QuerySet, Sum
from django.utils import timezone
from django_otp.plugins.otp_totp.models import TOTPDevice

from .roles import Role, has_role


def _recent_failures() -> QuerySet[AccessAttempt]:
    """Failure rows still inside the cool-off (each row: one username × IP × user agent)."""
    if settings.AXES_COOLOFF_TIME is None:
        return AccessAttempt.objects.all()
    return AccessAttempt.objects.filter(attempt_time__gte=timezone.now() - settings.AXES_COOLOFF_TIME)


def login_failures(*, username: str | None, ip_address: str | None) -> tuple[int, int]:
    """Recent failed sign-ins counted against the username (from any IP) and, separately, the IP (any username)."""
    recent = _recent_failures()
    by_username = by_ip = 0
    if username:
        by_username = recent.filter(username=username).aggregate(n=Sum("failures_since_start"))["n"] or 0
    if ip_address:
        by_ip = recent.filter(ip_address=ip_address).aggregate(n=Sum("failures_since_start"))["n"] or 0
    return by_username, by_ip


def login_locked(*, username: str | None, ip_address: str | None) -> bool:
    """Whether sign-in (and password re-entry) is refused for this username or from this IP."""
    by_username, by_ip = login_failures(username=username, ip_address=ip_address)
    return by_username >= settings.AXES_FAILURE_LIMIT or by_ip >= settings.HV_LOGIN_IP_FAILURE_LIMIT


def two_factor_enrolled(*, user) -> bool:
    """The user has a confirmed authenticator app: sign-in asks for its code (or a recovery code).

    Recovery codes alone do not count: once an admin deletes a lost authenticator, the user enrols again.
    """
    return TOTPDevice.objects.filter(user=user, confirmed=True).exists()


def two_factor_required(*, user) -> bool:
    """Doctors and admins must enrol when ``HV_REQUIRE_2FA`` is on."""
    return bool(settings.HV_REQUIRE_2FA) and has_role(user, Role.DOCTOR, Role.ADMIN)
