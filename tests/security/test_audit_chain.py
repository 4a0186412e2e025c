"""The audit trail and the signatures are hash chains: `manage.py verify_audit` names the first row
that someone with direct SQL access edited, deleted or inserted, with the trigger switched off.

The tampering is plain SQL through django.db.connection, so the same tests run on SQLite and
PostgreSQL (where they first disable the append-only trigger, as such an attacker would).
"""
import datetime
import io

import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from accounts.roles import Role
from audit import chain as audit
from audit.models import AuditEvent
from audit.services import record_event
from review.models import Signature

from ..conftest import CELLS
from ..factories import SignatureFactory, UserFactory, make_classified_sample
from ..module_data import _module_media_root, module_media, module_records  # noqa: F401 (fixtures)

pytestmark = pytest.mark.django_db
CHAINED = (AuditEvent, Signature)


# Helpers: an attacker with SQL access ------------------------------------------------------------

def _sql(sql: str, params=()) -> None:
    with connection.cursor() as cursor:
        cursor.execute(sql, list(params))


def _table(model) -> str:
    return connection.ops.quote_name(model._meta.db_table)


def _attack(model) -> None:
    """Switch the append-only trigger off, as someone with SQL access could (PostgreSQL only has it);
    the test's transaction rolls it back."""
    if connection.vendor == "postgresql":
        _sql("SET CONSTRAINTS ALL IMMEDIATE")  # ALTER TABLE is refused while deferred checks are pending
        _sql(f"ALTER TABLE {_table(model)} DISABLE TRIGGER ALL")


def _update(model, pk: int, **values) -> None:
    columns = ", ".join(f"{connection.ops.quote_name(model._meta.get_field(k).column)} = %s" for k in values)
    _sql(f"UPDATE {_table(model)} SET {columns} WHERE id = %s", [*values.values(), pk])  # noqa: S608


def _insert_copy(model, source_pk: int, **overrides) -> int:
    """INSERT … SELECT a copy of a row, with some columns replaced; returns the new row's id."""
    columns = [f.column for f in model._meta.concrete_fields if f.column != "id" or "id" in overrides]
    quote = connection.ops.quote_name
    select = ["%s" if c in overrides else quote(c) for c in columns]
    _sql(f"INSERT INTO {_table(model)} ({', '.join(map(quote, columns))}) "  # noqa: S608
         f"SELECT {', '.join(select)} FROM {_table(model)} WHERE id = %s",
         [*(overrides[c] for c in columns if c in overrides), source_pk])
    return overrides.get("id") or model.objects.order_by("-pk").values_list("pk", flat=True).first()


def _verify(*args) -> str:
    """verify_audit's output when it passes; pytest.fail when it finds tampering."""
    out = io.StringIO()
    try:
        call_command("verify_audit", *args, stdout=out)
    except CommandError as error:
        pytest.fail(f"verify_audit found tampering: {error}")
    return out.getvalue()


def _problem(*args) -> str:
    with pytest.raises(CommandError) as error:
        call_command("verify_audit", *args, stdout=io.StringIO())
    return str(error.value)


def _head(model) -> str:
    return next(line.split("head ")[1] for line in _verify().splitlines() if model._meta.label_lower in line)


# Chains built through the services ---------------------------------------------------------------

def _audit_rows(technician):
    for i in range(4):
        record_event(action="update", actor=technician, object_type="cases.sample", object_id=str(i),
                     object_repr=f"HV-{i}", old_values={"status": "registered"}, new_values={"status": "x", "n": i},
                     reason=f"reason {i}", ip="10.0.0.1")


def _signatures(technician, doctor):
    for path in sorted(CELLS.glob("*/*.jpeg"))[:4]:
        sample = make_classified_sample(technician=technician, files=[(path.name, path.read_bytes())],
                                        ai_classes=["NEUTROPHIL"])
        SignatureFactory(sample=sample, signer=doctor)  # reviews the cell and signs, through the services


# What each model's tampering edits, and a column value that keeps its unique constraints happy.
EDIT = {AuditEvent: "reason", Signature: "printed_name"}
UNIQUE_OVERRIDES = {AuditEvent: lambda row: {}, Signature: lambda row: {"version": row.version + 100}}


def _build_chains():
    """Both chains after real work, built once for the module (tests.module_data): audit rows and four
    signed samples. Each test tampers inside its own savepoint, so the next one finds them intact."""
    technician, doctor = UserFactory(role=Role.TECHNICIAN), UserFactory(role=Role.DOCTOR)
    _audit_rows(technician)
    _signatures(technician, doctor)


chains = module_records(_build_chains)
_media_in_tmp = module_media


@pytest.fixture(params=CHAINED, ids=lambda m: m.__name__)
def chain(request, chains):
    """(model, its rows in chain order)."""
    model = request.param
    rows = list(model.objects.order_by("seq"))
    assert len(rows) >= 4
    return model, rows


# Tests ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("model", CHAINED, ids=lambda m: m.__name__)
def test_every_field_is_chained_or_deliberately_left_out(model):
    fields = {f.attname for f in model._meta.concrete_fields} - {"id", *audit.CHAIN_FIELDS}
    assert fields == set(audit.CHAINED_FIELDS[model._meta.label_lower])


def test_clean_chains_verify_with_row_counts_and_heads(chain):
    output = _verify()
    for model in CHAINED:
        rows = list(model.objects.order_by("seq").values_list("seq", "prev_hash", "hash"))
        assert [r[0] for r in rows] == list(range(1, len(rows) + 1))
        assert rows[0][1] == audit.GENESIS_HASH
        assert all(rows[i][1] == rows[i - 1][2] for i in range(1, len(rows)))
        label = model._meta.label_lower
        assert f"OK {label}: {len(rows)} rows, head {label}:{len(rows)}:{rows[-1][2]}" in output


def test_hash_is_the_same_after_the_database_round_trip(technician):
    # Values whose stored form differs from the Python one: a non-UTC time, an uncompressed IPv6
    # address, integer JSON keys, tuples, floats and non-ASCII text, an empty IP (stored as NULL).
    india = datetime.timezone(datetime.timedelta(hours=5, minutes=30))
    events = [
        AuditEvent.objects.create(
            timestamp=datetime.datetime(2026, 3, 1, 9, 30, 0, 0, tzinfo=india), actor_username="ü-user",
            action="update", object_type="cases.sample", new_values={1: "one", "f": 0.1, "tiny": 1e-7, "t": (1, 2),
                                                                     "nested": [{"ß": None, "b": True}]},
            ip="2001:0db8:0000:0000:0000:0000:0000:0001",
        ),
        record_event(action="download", actor=technician, object_repr="Ångström", ip="", reason="x\r\ny"),
    ]
    for event in events:
        stored = AuditEvent.objects.get(pk=event.pk)
        assert stored.hash == event.hash == audit.chain_hash(instance=stored)
    _verify()


def test_edited_row_is_named(chain):
    model, rows = chain
    row = rows[len(rows) // 2]
    _attack(model)
    _update(model, row.pk, **{EDIT[model]: "tampered"})
    assert f"row id {row.pk} (seq {row.seq}) was edited" in _problem()


def test_edited_and_rehashed_row_is_named(chain):
    model, rows = chain
    row = rows[len(rows) // 2]
    _attack(model)
    _update(model, row.pk, **{EDIT[model]: "tampered"})
    _update(model, row.pk, hash=audit.chain_hash(instance=model.objects.get(pk=row.pk)))
    assert f"row id {row.pk} (seq {row.seq}) was edited and re-hashed" in _problem()


def test_chain_rewritten_to_the_end_is_caught_by_an_earlier_head(chain):
    model, rows = chain
    anchor = _head(model)
    _attack(model)
    _update(model, rows[1].pk, **{EDIT[model]: "tampered"})
    prev = rows[0].hash
    for row in rows[1:]:
        _update(model, row.pk, prev_hash=prev)
        prev = audit.chain_hash(instance=model.objects.get(pk=row.pk))
        _update(model, row.pk, hash=prev)
    _verify()  # self-consistent again: only a head kept elsewhere can tell
    last = rows[-1]
    assert f"row id {last.pk} (seq {last.seq}) no longer has the anchored hash" in _problem("--anchor", anchor)


def test_heads_printed_before_the_apps_moved_still_anchor(chain):
    """Heads kept from before the audit trail and signatures had apps of their own (``cases.…``)."""
    model, rows = chain
    former = {"auditevent": "cases.auditevent", "signature": "cases.signature"}[model._meta.model_name]
    anchor = _head(model).replace(model._meta.label_lower, former, 1)
    assert "OK" in _verify("--anchor", anchor)
    _attack(model)
    _update(model, rows[-1].pk, **({"reason": "x"} if model is AuditEvent else {"printed_name": "x"}))
    _update(model, rows[-1].pk, hash=audit.chain_hash(instance=model.objects.get(pk=rows[-1].pk)))
    assert "no longer has the anchored hash" in _problem("--anchor", anchor)


def test_deleted_row_is_named(chain):
    model, rows = chain
    gone, after = rows[1], rows[2]
    _attack(model)
    _sql(f"DELETE FROM {_table(model)} WHERE id = %s", [gone.pk])  # noqa: S608
    assert f"seq {gone.seq} is missing before row id {after.pk} (seq {after.seq})" in _problem()


def test_rows_deleted_from_the_end_are_caught_by_an_earlier_head(chain):
    model, rows = chain
    anchor = _head(model)
    _attack(model)
    _sql(f"DELETE FROM {_table(model)} WHERE id = %s", [rows[-1].pk])  # noqa: S608
    _verify()
    assert f"the anchored row seq {rows[-1].seq} is gone" in _problem("--anchor", anchor)


def test_row_inserted_with_a_copied_hash_is_named(chain):
    model, rows = chain
    copied, head = rows[1], rows[-1]
    _attack(model)
    new = _insert_copy(model, copied.pk, seq=head.seq + 1, **UNIQUE_OVERRIDES[model](copied))
    assert f"row id {new} (seq {head.seq + 1}) was edited" in _problem()


def test_row_inserted_with_a_forged_hash_is_named(chain):
    model, rows = chain
    head = rows[-1]
    _attack(model)
    new = _insert_copy(model, head.pk, seq=head.seq + 1, prev_hash=head.hash, hash="f" * 64,
                       **UNIQUE_OVERRIDES[model](head))
    assert f"row id {new} (seq {head.seq + 1}) was edited" in _problem()


def test_row_inserted_with_a_valid_hash_but_an_older_id_is_named(chain):
    """Someone who knows the algorithm appends a consistent row but back-dates its id."""
    model, rows = chain
    head = rows[-1]
    forged = model.objects.get(pk=rows[0].pk)
    overrides = {"id": 0, "seq": head.seq + 1, "prev_hash": head.hash, **UNIQUE_OVERRIDES[model](forged)}
    for column, value in overrides.items():
        setattr(forged, column, value)
    overrides["hash"] = audit.chain_hash(instance=forged)
    _attack(model)
    _insert_copy(model, rows[0].pk, **overrides)
    assert f"row id 0 (seq {head.seq + 1}) was inserted out of order" in _problem()


def test_row_inserted_past_the_end_is_named(chain):
    model, rows = chain
    head = rows[-1]
    _attack(model)
    new = _insert_copy(model, head.pk, seq=head.seq + 3, **UNIQUE_OVERRIDES[model](head))
    assert f"seq {head.seq + 1}-{head.seq + 2} is missing before row id {new} (seq {head.seq + 3})" in _problem()


def test_backfill_chains_rows_written_before_the_chain(chain):
    model, rows = chain
    _attack(model)
    _sql(f"UPDATE {_table(model)} SET prev_hash = '', hash = ''")  # noqa: S608
    assert f"row id {rows[0].pk} (seq 1) was edited" in _problem()
    assert audit.chain_backfill(model=model, using="default") == len(rows)
    _verify()
    assert list(model.objects.order_by("seq").values_list("hash", flat=True)) == [r.hash for r in rows]


def test_backfill_refuses_to_reseal_a_row_in_the_middle_of_a_chain(chain):
    model, rows = chain
    _attack(model)
    _update(model, rows[1].pk, hash="")
    with pytest.raises(ValueError, match=f"row id {rows[1].pk} has no hash but is older"):
        audit.chain_backfill(model=model, using="default")


def test_bulk_create_is_refused_because_it_would_skip_the_chain():
    with pytest.raises(PermissionError, match="one at a time"):
        AuditEvent.objects.bulk_create([AuditEvent(actor_username="x", action="x", object_type="x")])

