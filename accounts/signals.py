"""Roles stay separated however they are assigned; the signals other apps hear from accounts."""
from django.contrib.auth.models import Group
from django.core.exceptions import ValidationError
from django.db.models.signals import m2m_changed, pre_save
from django.dispatch import Signal, receiver

from .models import User
from .roles import SEPARATION_OF_DUTIES, roles_conflict

# Sent with ``user`` when a user confirms an authenticator app (the audit app records it).
two_factor_enrolled = Signal()


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
