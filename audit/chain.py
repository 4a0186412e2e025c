"""Tamper evidence: the audit trail and the signatures are hash chains.

Each row of a chained table (the audit trail and the signatures) stores its place in the table's
chain (``seq``, 1, 2, 3 … without gaps), the previous row's hash (``prev_hash``) and its own hash:
sha256 over the canonical JSON of its fields, ``seq`` and ``prev_hash`` included. Editing a row
breaks its hash, deleting one leaves a gap, inserting one breaks a link; ``manage.py verify_audit``
finds the first such row. Someone who rewrites the chain from the edited row onwards is caught by
comparing the head that verify_audit printed earlier (``--anchor``).
"""
from __future__ import annotations

import datetime
import decimal
import hashlib
import json
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import connections, models, transaction
from django.utils import timezone

GENESIS_HASH = "0" * 64

# What each row's hash covers besides seq and prev_hash, by attname. Listed, not derived from the
# model, so that a new field never silently changes how existing rows hash: a test fails until the
# field is deliberately covered (which needs a versioned hash for the older rows) or named as left out
# in that test (tests/security/test_audit_chain.py).
CHAINED_FIELDS: dict[str, tuple[str, ...]] = {
    "audit.auditevent": (
        "timestamp", "actor_id", "actor_username", "action", "object_type", "object_id", "object_repr",
        "old_values", "new_values", "reason", "ip",
    ),
    "review.signature": (
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
