"""Make the audit table append-only in the database itself (PostgreSQL).

A trigger refuses UPDATE and DELETE of audit rows, whatever the client: the ORM,
a raw SQL session or a database console. (SQLite relies on the ORM guards.)
"""
from django.db import migrations

FORWARD = """
CREATE OR REPLACE FUNCTION cases_auditevent_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION USING
        MESSAGE = 'cases_auditevent is append-only: ' || TG_OP || ' refused',
        ERRCODE = 'insufficient_privilege';
END;
$$ LANGUAGE plpgsql;

DROP TRIGGER IF EXISTS cases_auditevent_no_update_delete ON cases_auditevent;
CREATE TRIGGER cases_auditevent_no_update_delete
    BEFORE UPDATE OR DELETE ON cases_auditevent
    FOR EACH ROW EXECUTE FUNCTION cases_auditevent_append_only();
"""

BACKWARD = """
DROP TRIGGER IF EXISTS cases_auditevent_no_update_delete ON cases_auditevent;
DROP FUNCTION IF EXISTS cases_auditevent_append_only();
"""


def forward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(FORWARD)


def backward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(BACKWARD)


class Migration(migrations.Migration):
    dependencies = [("cases", "0001_initial")]
    operations = [migrations.RunPython(forward, backward)]
