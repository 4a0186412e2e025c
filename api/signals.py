"""An API token is a password-equivalent: it is revoked when the password changes and at every sign-out."""
from django.contrib.auth import get_user_model
from django.contrib.auth.signals import user_logged_out
from django.db.models.signals import post_save, pre_save
from django.dispatch import receiver

from .services import api_tokens_revoke

User = get_user_model()


@receiver(pre_save, sender=User, dispatch_uid="hv-api-password-changed")
def _note_password_change(sender, instance, update_fields=None, **kwargs):
    if instance.pk is None or (update_fields is not None and "password" not in update_fields):
        instance._hv_password_changed = False
        return
    stored = sender.objects.filter(pk=instance.pk).values_list("password", flat=True).first()
    instance._hv_password_changed = stored is not None and stored != instance.password


@receiver(post_save, sender=User, dispatch_uid="hv-api-revoke-on-password-change")
def _revoke_on_password_change(sender, instance, created, **kwargs):
    if getattr(instance, "_hv_password_changed", False):
        instance._hv_password_changed = False
        api_tokens_revoke(user=instance)


@receiver(user_logged_out, dispatch_uid="hv-api-revoke-on-sign-out")
def _revoke_on_sign_out(sender, request, user, **kwargs):
    if user is not None:
        api_tokens_revoke(user=user)
