"""Hand the audit trail to the ``audit`` app and the review records to the ``review`` app.

State only: the tables (``cases_auditevent``, ``cases_cellreview``, ``cases_signature``,
``cases_amendment``), their rows, the append-only triggers and the hash chains stay exactly as
they are; ``audit.0001`` and ``review.0001`` take the models over with the same tables. The
content types move with them, so that permissions given to groups and admin log entries follow.
"""
from django.db import migrations

MOVED = {"auditevent": "audit", "cellreview": "review", "signature": "review", "amendment": "review"}


def move_content_types(apps, schema_editor, *, source=None):
    content_type = apps.get_model("contenttypes", "ContentType")
    rows = content_type.objects.using(schema_editor.connection.alias)
    for model, app_label in MOVED.items():
        old, new = ("cases", app_label) if source is None else (app_label, "cases")
        if not rows.filter(app_label=new, model=model).exists():
            rows.filter(app_label=old, model=model).update(app_label=new)


def move_content_types_back(apps, schema_editor):
    move_content_types(apps, schema_editor, source="new")


class Migration(migrations.Migration):
    dependencies = [
        ("cases", "0006_audit_hash_chain"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.RemoveField(model_name="auditevent", name="actor"),
                migrations.RemoveField(model_name="cellreview", name="image"),
                migrations.RemoveField(model_name="cellreview", name="reviewed_by"),
                migrations.RemoveField(model_name="signature", name="sample"),
                migrations.RemoveField(model_name="signature", name="signer"),
                migrations.DeleteModel(name="Amendment"),
                migrations.DeleteModel(name="AuditEvent"),
                migrations.DeleteModel(name="CellReview"),
                migrations.DeleteModel(name="Signature"),
            ],
            database_operations=[],
        ),
        migrations.RunPython(move_content_types, move_content_types_back),
    ]
