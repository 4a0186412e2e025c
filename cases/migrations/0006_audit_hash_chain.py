"""Make the audit trail and the signatures hash chains (tamper evidence, see audit.chain).

Adds seq / prev_hash / hash to both tables and chains the rows that already exist, in id order.
On PostgreSQL the append-only trigger is switched off for the backfill and on again, inside
this migration's transaction.
"""
from django.db import migrations, models

from audit.chain import chain_backfill

# The fields each hash covers, as of this migration (audit.chain.CHAINED_FIELDS may grow later).
CHAINED_FIELDS = {
    "AuditEvent": (
        "timestamp", "actor_id", "actor_username", "action", "object_type", "object_id", "object_repr",
        "old_values", "new_values", "reason", "ip",
    ),
    "Signature": (
        "sample_id", "signer_id", "printed_name", "meaning", "signed_at", "version", "amendment_reason",
        "snapshot", "snapshot_sha256",
    ),
}


def chain_existing_rows(apps, schema_editor):
    for name, fields in CHAINED_FIELDS.items():
        chain_backfill(model=apps.get_model("cases", name), using=schema_editor.connection.alias, fields=fields)


def chain_fields(model_name):
    return [
        migrations.AddField(
            model_name=model_name,
            name="seq",
            field=models.PositiveBigIntegerField(
                null=True, editable=False, help_text="Place in the table's hash chain", unique=True
            ),
        ),
        migrations.AddField(
            model_name=model_name,
            name="prev_hash",
            field=models.CharField(default="", editable=False, help_text="The previous row's hash", max_length=64),
            preserve_default=False,
        ),
        migrations.AddField(
            model_name=model_name,
            name="hash",
            field=models.CharField(
                default="", editable=False, help_text="sha256 of this row's fields, seq and prev_hash", max_length=64
            ),
            preserve_default=False,
        ),
    ]


def seq_required(model_name):
    return migrations.AlterField(
        model_name=model_name,
        name="seq",
        field=models.PositiveBigIntegerField(editable=False, help_text="Place in the table's hash chain", unique=True),
    )


class Migration(migrations.Migration):
    dependencies = [("cases", "0005_basophil")]

    operations = [
        *chain_fields("auditevent"),
        *chain_fields("signature"),
        migrations.RunPython(chain_existing_rows, migrations.RunPython.noop),
        seq_required("auditevent"),
        seq_required("signature"),
    ]
