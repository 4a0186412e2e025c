"""Append-only audit trail: who, when, what, old value, new value, reason, IP.

Model changes of audited models (Patient, Sample, CellImage and, later, predictions,
reviews and signatures) are recorded by signal handlers, so the Django admin and shell are
covered as well as services. The acting user, client IP and reason come from a context
that the request middleware (and services, via ``audit_context``) set.
"""
from __future__ import annotations

import contextvars
import datetime
import decimal
import hashlib
import json
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from django.conf import settings
from django.db import connections, models, transaction
from django.db.models.signals import m2m_changed, post_delete, post_save, pre_save
from django.utils import timezone

_actor: contextvars.ContextVar = contextvars.ContextVar("hv_audit_actor", default=None)
_ip: contextvars.ContextVar = contextvars.ContextVar("hv_audit_ip", default=None)
_reason: contextvars.ContextVar = contextvars.ContextVar("hv_audit_reason", default="")

# Fields never written to the audit trail (secrets) or not worth it (bookkeeping).
_SKIP_FIELDS = {"password", "last_login", "updated_at"}


class AuditAction(StrEnum):
    CREATE = "create"
    UPDATE = "update"
    DELETE = "delete"
    LOGIN = "login"
    LOGOUT = "logout"
    LOGIN_FAILED = "login_failed"
    DOWNLOAD = "download"


def client_ip(request) -> str | None:
    if request is None:
        return None
    return request.META.get("REMOTE_ADDR") or None


@contextmanager
def audit_context(*, actor=None, ip: str | None = None, reason: str | None = None):
    """Set who is acting (and why) for the audit rows written inside the block."""
    tokens = []
    if actor is not None:
        tokens.append((_actor, _actor.set(actor)))
    if ip is not None:
        tokens.append((_ip, _ip.set(ip)))
    if reason is not None:
        tokens.append((_reason, _reason.set(reason)))
    try:
        yield
    finally:
        for var, token in reversed(tokens):
            var.reset(token)


def current_actor():
    return _actor.get()


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
    from .models import AuditEvent

    actor = actor if actor is not None else _actor.get()
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
        reason=reason if reason is not None else _reason.get(),
        ip=ip if ip is not None else _ip.get(),
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


# Tamper evidence: hash chains -------------------------------------------------
#
# Each row of a chained table (the audit trail and the signatures) stores its place in the table's
# chain (``seq``, 1, 2, 3 … without gaps), the previous row's hash (``prev_hash``) and its own hash:
# sha256 over the canonical JSON of its fields, ``seq`` and ``prev_hash`` included. Editing a row
# breaks its hash, deleting one leaves a gap, inserting one breaks a link; ``manage.py verify_audit``
# finds the first such row. Someone who rewrites the chain from the edited row onwards is caught by
# comparing the head that verify_audit printed earlier (``--anchor``).

GENESIS_HASH = "0" * 64

# What each row's hash covers besides seq and prev_hash, by attname. Listed, not derived from the
# model, so that a new field never silently changes how existing rows hash: a test fails until the
# field is deliberately covered (which needs a versioned hash for the older rows) or named as left out
# in that test (tests/security/test_audit_chain.py).
CHAINED_FIELDS: dict[str, tuple[str, ...]] = {
    "cases.auditevent": (
        "timestamp", "actor_id", "actor_username", "action", "object_type", "object_id", "object_repr",
        "old_values", "new_values", "reason", "ip",
    ),
    "cases.signature": (
        "sample_id", "signer_id", "printed_name", "meaning", "signed_at", "version", "amendment_reason",
        "snapshot", "snapshot_sha256",
    ),
}
CHAIN_FIELDS = ("seq", "prev_hash", "hash")


def _chain_value(field: models.Field, value: Any) -> Any:
    """The value as it reads back from the database, in canonical JSON terms (so a row written
    and a row read hash the same on SQLite and PostgreSQL)."""
    if value is None:
        return None
    if isinstance(field, models.DateTimeField):
        if settings.USE_TZ and timezone.is_naive(value):
            value = timezone.make_aware(value)  # what Django stores for a naive value
        if timezone.is_aware(value):
            value = value.astimezone(datetime.UTC)
        return value.isoformat(timespec="microseconds")
    if isinstance(field, models.DateField | models.TimeField):
        return field.to_python(value).isoformat()
    if isinstance(field, models.JSONField):
        return json.loads(json.dumps(value, cls=field.encoder), cls=field.decoder)  # int keys become strings
    if isinstance(field, models.DecimalField):
        return format(field.to_python(value).quantize(decimal.Decimal(1).scaleb(-field.decimal_places)), "f")
    if isinstance(field, models.GenericIPAddressField):
        return field.get_prep_value(value) or None  # IPv6 compressed; "" is stored as NULL
    return field.to_python(value)


def chain_hash(*, instance: models.Model, fields: tuple[str, ...] | None = None) -> str:
    """The hash a chained row must carry, from its fields, ``seq`` and ``prev_hash``."""
    meta = instance._meta
    names = fields if fields is not None else CHAINED_FIELDS[meta.label_lower]
    payload = {name: _chain_value(meta.get_field(name), getattr(instance, name)) for name in names}
    payload["seq"] = instance.seq
    payload["prev_hash"] = instance.prev_hash
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def _chain_lock(*, model: type[models.Model], using: str) -> None:
    """Serialize appends to one chain until the transaction ends, so that rows join it in commit
    order. SQLite needs nothing: the transaction holds the database's write lock from its start
    (IMMEDIATE, see settings). The unique ``seq`` refuses a fork on any database."""
    connection = connections[using]
    if connection.vendor == "postgresql":
        key = int.from_bytes(hashlib.sha256(model._meta.db_table.encode()).digest()[:8], "big", signed=True)
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [key])


def chain_seal(*, instance: models.Model, using: str) -> None:
    """Give a new row its place at the end of its table's chain. Call inside the transaction that
    inserts the row (the append-only models' save does)."""
    model = type(instance)
    _chain_lock(model=model, using=using)
    last = model._base_manager.using(using).order_by("-seq").values_list("seq", "hash").first()
    instance.seq, instance.prev_hash = (last[0] + 1, last[1]) if last else (1, GENESIS_HASH)
    instance.hash = chain_hash(instance=instance)


def _append_only_trigger(*, model: type[models.Model], using: str, enabled: bool) -> None:
    """Switch the PostgreSQL trigger that refuses UPDATE/DELETE (migrations 0002, 0004)."""
    connection = connections[using]
    if connection.vendor != "postgresql":
        return
    table = model._meta.db_table
    with connection.cursor() as cursor:
        # ALTER TABLE is refused while the transaction has deferred checks pending on the table.
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        verb = "ENABLE" if enabled else "DISABLE"
        cursor.execute(f"ALTER TABLE {connection.ops.quote_name(table)} {verb} TRIGGER "  # noqa: S608
                       f"{connection.ops.quote_name(table + '_no_update_delete')}")


def chain_backfill(*, model: type[models.Model], using: str, fields: tuple[str, ...] | None = None) -> int:
    """Chain the rows that have no hash yet (written before the chain existed), in id order, after
    the chained ones. For the migration that introduced the chain; refuses an unchained row older
    than a chained one, so it can never re-seal a tampered row in the middle of a chain.
    Works on migration (historical) models. Returns the number of rows chained."""
    connection = connections[using]
    rows = model._base_manager.using(using)
    pending = list(rows.filter(hash="").order_by("pk").values_list("pk", flat=True))
    if not pending:
        return 0
    head = rows.exclude(hash="").order_by("-seq").values_list("pk", "seq", "hash").first()
    if head is not None and pending[0] < head[0]:
        raise ValueError(f"{model._meta.db_table} row id {pending[0]} has no hash but is older than the chained "
                         f"row id {head[0]}: the chain was tampered with; not re-sealing it.")
    seq, prev = (head[1], head[2]) if head else (0, GENESIS_HASH)
    quote = connection.ops.quote_name
    sql = (f"UPDATE {quote(model._meta.db_table)} SET {quote('seq')} = %s, {quote('prev_hash')} = %s, "  # noqa: S608
           f"{quote('hash')} = %s WHERE {quote(model._meta.pk.column)} = %s")
    with transaction.atomic(using=using):
        _append_only_trigger(model=model, using=using, enabled=False)
        for start in range(0, len(pending), 1000):
            chunk = rows.filter(pk__in=pending[start:start + 1000]).order_by("pk")
            updates = []
            for row in chunk:
                seq += 1
                row.seq, row.prev_hash = seq, prev
                prev = chain_hash(instance=row, fields=fields)
                updates.append((seq, row.prev_hash, prev, row.pk))
            with connection.cursor() as cursor:
                cursor.executemany(sql, updates)
        _append_only_trigger(model=model, using=using, enabled=True)
    return len(pending)


@dataclass(frozen=True)
class ChainCheck:
    """The outcome of walking one chain: its length and head, or the first tampered row."""

    table: str
    rows: int
    head: str  # "table:seq:hash" of the last row, to keep elsewhere and pass back as an anchor
    problem: str = ""

    @property
    def ok(self) -> bool:
        return not self.problem


def chain_verify(*, model: type[models.Model], anchor: tuple[int, str] | None = None) -> ChainCheck:
    """Walk a table's chain in ``seq`` order and stop at the first row that was edited, deleted
    or inserted out of order. ``anchor`` (seq, hash) is a head printed by an earlier run: the row
    must still be there with that hash, which catches a chain rewritten from some row onwards or
    rows deleted from its end."""
    table = model._meta.label_lower
    rows = model._base_manager.order_by(models.F("seq").asc(nulls_last=True), "pk")
    expected_seq, expected_prev, previous = 1, GENESIS_HASH, None
    anchor_found = False

    def failed(problem: str) -> ChainCheck:
        return ChainCheck(table=table, rows=expected_seq - 1, head="", problem=f"{table}: {problem}")

    for row in rows.iterator(chunk_size=2000):
        where = f"row id {row.pk} (seq {row.seq})"
        if row.seq is None or row.seq < expected_seq:
            return failed(f"{where} was inserted out of order: the next row should have seq {expected_seq}.")
        if row.seq > expected_seq:
            missing = str(expected_seq) if row.seq == expected_seq + 1 else f"{expected_seq}-{row.seq - 1}"
            return failed(f"seq {missing} is missing before {where}: deleted, or {where} was inserted "
                          "out of order.")
        if previous is not None and row.pk < previous.pk:
            return failed(f"{where} was inserted out of order: its id is lower than that of the row before it "
                          f"(id {previous.pk}).")
        if chain_hash(instance=row) != row.hash:
            return failed(f"{where} was edited: its content does not match its hash (or it was inserted with a "
                          "forged or copied hash).")
        if row.prev_hash != expected_prev:
            return failed(f"the link before {where} is broken: row id {previous.pk if previous else '-'} "
                          f"(seq {expected_seq - 1}) was edited and re-hashed, or {where} was inserted.")
        if anchor is not None and row.seq == anchor[0]:
            if row.hash != anchor[1]:
                return failed(f"{where} no longer has the anchored hash: the chain was rewritten at or before it.")
            anchor_found = True
        expected_seq, expected_prev, previous = expected_seq + 1, row.hash, row
    if anchor is not None and not anchor_found:
        return failed(f"the anchored row seq {anchor[0]} is gone: rows were deleted from the end of the chain.")
    return ChainCheck(table=table, rows=expected_seq - 1, head=f"{table}:{expected_seq - 1}:{expected_prev}")
