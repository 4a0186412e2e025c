"""Sign-in, sign-out and failed sign-in go to the audit trail; roles stay separated however they are assigned."""
from django.contrib.auth.models import Group
from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed
from django.core.exceptions import ValidationError
from django.db.models.signals import m2m_changed, pre_save
from django.dispatch import receiver

from cases.audit import AuditAction, client_ip, record_event

from .models import User
from .roles import SEPARATION_OF_DUTIES, roles_conflict


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


# Separation of duties, for every way a role is given (admin forms, services, shell, group pages):
# accounts.services checks who may give which role; these refuse any write that would leave one
# user both signing results and managing users.


@receiver(m2m_changed, sender=User.groups.through, dispatch_uid="hv-roles-separated")
def _roles_stay_separated(sender, instance, action, reverse, pk_set, **kwargs):
    if action != "pre_add" or not pk_set:
        return
    if reverse:  # group.user_set.add(...)
        users, added = User.objects.filter(pk__in=pk_set), {instance.name}
    else:
        users, added = [instance], set(Group.objects.filter(pk__in=pk_set).values_list("name", flat=True))
    for user in users:
        held = set(user.groups.values_list("name", flat=True)) | added
        if roles_conflict(roles=held, is_superuser=user.is_superuser):
            raise ValidationError({"groups": SEPARATION_OF_DUTIES})


@receiver(pre_save, sender=User, dispatch_uid="hv-superuser-never-signs")
def _superuser_never_signs(sender, instance, update_fields=None, **kwargs):
    if not instance.is_superuser or instance.pk is None:
        return
    if update_fields is not None and "is_superuser" not in update_fields:
        return
    if roles_conflict(roles=instance.groups.values_list("name", flat=True), is_superuser=True):
        raise ValidationError({"is_superuser": SEPARATION_OF_DUTIES})
