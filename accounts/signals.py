"""Sign-in, sign-out and failed sign-in go to the audit trail."""
from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed
from django.dispatch import receiver

from cases.audit import AuditAction, client_ip, record_event


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
