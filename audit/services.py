"""Recording the audit trail: who, when, what, old value, new value, reason, IP.

Model changes of audited models (users, patients, samples, images, predictions, reviews,
signatures …) are recorded by signal handlers that each app connects with ``register``, so the
Django admin and shell are covered as well as services. The acting user, client IP and reason
come from ``accounts.context``, which the request middleware (and services, via
``audit_context``) set.
"""
from __future__ import annotations

import datetime
import decimal
import uuid
from enum import StrEnum
from typing import Any

from django.db import models
from django.db.models.signals import m2m_changed, post_delete, post_save, pre_save

from accounts.context import acting, actor_var, client_ip, current_actor, ip_var, reason_var

from .models import AuditEvent

__all__ = ["AuditAction", "audit_context", "client_ip", "current_actor", "record_event", "register", "register_m2m"]

# Fields never written to the audit trail (secrets) or not worth it (bookkeeping).
_SKIP_FIELDS = {"password", "last_login", "updated_at"}

# Who acts, for the rows written inside the block (``accounts.context``; re-exported for the services).
audit_context = acting


class AuditAction(StrEnum):
    CREATE = "create"
    UPDATE = "update"
    DELETE = "delete"
    LOGIN = "login"
    LOGOUT = "logout"
    LOGIN_FAILED = "login_failed"
    DOWNLOAD = "download"
    TWO_FACTOR_ENROLLED = "two_factor_enrolled"


def _json_value(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (datetime.datetime, datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, (decimal.Decimal, uuid.UUID)):
        return str(value)
    if hasattr(value, "name") and hasattr(value, "storage"):  # FieldFile
        return value.name or ""
    if isinstance(value, (list, tuple)):
        return [_json_value(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _json_value(v) for k, v in value.items()}
    return str(value)


def snapshot(instance: models.Model) -> dict[str, Any]:
    data = {}
    for field in instance._meta.concrete_fields:
        if field.name in _SKIP_FIELDS:
            continue
        data[field.attname] = _json_value(field.value_from_object(instance))
    return data


def record_event(
    *,
    action: str,
    actor=None,
    obj: models.Model | None = None,
    object_type: str | None = None,
    object_id: str | None = None,
    object_repr: str | None = None,
    old_values: dict | None = None,
    new_values: dict | None = None,
    reason: str | None = None,
    ip: str | None = None,
):
    actor = actor if actor is not None else actor_var.get()
    if actor is not None and not getattr(actor, "is_authenticated", False):
        actor = None
    if obj is not None:
        object_type = object_type or obj._meta.label_lower
        object_id = object_id or str(obj.pk)
        object_repr = object_repr if object_repr is not None else str(obj)[:200]
    return AuditEvent.objects.create(
        actor_id=getattr(actor, "pk", None),
        actor_username=getattr(actor, "username", "") or "system",
        action=str(action),
        object_type=object_type or "",
        object_id=object_id or "",
        object_repr=(object_repr or "")[:200],
        old_values=old_values or {},
        new_values=new_values or {},
        reason=reason if reason is not None else reason_var.get(),
        ip=ip if ip is not None else ip_var.get(),
    )


def _pre_save(sender, instance, raw=False, **kwargs):
    if raw:
        return
    instance._hv_audit_old = None
    if instance.pk is not None and not instance._state.adding:
        old = sender._default_manager.filter(pk=instance.pk).first()
        if old is not None:
            instance._hv_audit_old = snapshot(old)


def _post_save(sender, instance, created, raw=False, **kwargs):
    if raw:
        return
    new = snapshot(instance)
    old = getattr(instance, "_hv_audit_old", None)
    if created or old is None:
        record_event(action=AuditAction.CREATE, obj=instance, new_values=new)
        return
    changed = [k for k in new if old.get(k) != new[k]]
    if not changed:
        return
    record_event(
        action=AuditAction.UPDATE,
        obj=instance,
        old_values={k: old.get(k) for k in changed},
        new_values={k: new[k] for k in changed},
    )


def _post_delete(sender, instance, **kwargs):
    record_event(action=AuditAction.DELETE, obj=instance, old_values=snapshot(instance))


def _m2m_changed(sender, instance, action, reverse, model, pk_set, **kwargs):
    field = _M2M_FIELDS.get(sender)
    if field is None or reverse or action not in ("pre_add", "pre_remove", "pre_clear", "post_add", "post_remove",
                                                 "post_clear"):
        return
    current = sorted(str(o) for o in getattr(instance, field).all())
    if action.startswith("pre_"):
        instance._hv_audit_m2m_old = current
        return
    old = getattr(instance, "_hv_audit_m2m_old", [])
    if old != current:
        record_event(action=AuditAction.UPDATE, obj=instance, old_values={field: old}, new_values={field: current})


_M2M_FIELDS: dict = {}


def register_m2m(through: type[models.Model], *, field: str) -> None:
    """Audit membership changes of a many-to-many field (e.g. a user's groups = roles)."""
    _M2M_FIELDS[through] = field
    m2m_changed.connect(_m2m_changed, sender=through, dispatch_uid=f"hv-audit-m2m-{through._meta.label_lower}")


def register(model: type[models.Model]) -> type[models.Model]:
    """Audit every create/update/delete of ``model``."""
    uid = f"hv-audit-{model._meta.label_lower}"
    pre_save.connect(_pre_save, sender=model, dispatch_uid=uid + "-pre")
    post_save.connect(_post_save, sender=model, dispatch_uid=uid + "-post")
    post_delete.connect(_post_delete, sender=model, dispatch_uid=uid + "-del")
    return model
