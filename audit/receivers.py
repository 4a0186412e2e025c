"""What the audit trail hears from other apps: sign-in, sign-out, failed sign-in, two-factor enrolment."""
from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed
from django.dispatch import receiver

from accounts.context import client_ip
from accounts.signals import two_factor_enrolled

from .services import AuditAction, record_event


@receiver(user_logged_in)
def _logged_in(sender, request, user, **kwargs):
    record_event(action=AuditAction.LOGIN, actor=user, obj=user, ip=client_ip(request))


@receiver(user_logged_out)
def _logged_out(sender, request, user, **kwargs):
    if user is not None:
        record_event(action=AuditAction.LOGOUT, actor=user, obj=user, ip=client_ip(request))


@receiver(user_login_failed)
def _login_failed(sender, credentials, request=None, **kwargs):
    record_event(
        action=AuditAction.LOGIN_FAILED,
        actor=None,
        object_type="accounts.user",
        object_repr=str(credentials.get("username", ""))[:150],
        ip=client_ip(request) if request is not None else None,
    )


@receiver(two_factor_enrolled)
def _two_factor_enrolled(sender, user, **kwargs):
    record_event(action=AuditAction.TWO_FACTOR_ENROLLED, actor=user, obj=user)
