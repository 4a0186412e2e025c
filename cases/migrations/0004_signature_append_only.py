"""Signatures are append-only in the database too (PostgreSQL trigger)."""
from django.db import migrations

FORWARD = """
CREATE OR REPLACE FUNCTION cases_signature_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION USING
        MESSAGE = 'cases_signature is append-only: ' || TG_OP || ' refused',
        ERRCODE = 'insufficient_privilege';
END;
$$ LANGUAGE plpgsql;

DROP TRIGGER IF EXISTS cases_signature_no_update_delete ON cases_signature;
CREATE TRIGGER cases_signature_no_update_delete
    BEFORE UPDATE OR DELETE ON cases_signature
    FOR EACH ROW EXECUTE FUNCTION cases_signature_append_only();
"""

BACKWARD = """
DROP TRIGGER IF EXISTS cases_signature_no_update_delete ON cases_signature;
DROP FUNCTION IF EXISTS cases_signature_append_only();
"""


def forward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(FORWARD)


def backward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(BACKWARD)


class Migration(migrations.Migration):
    dependencies = [("cases", "0003_review_and_signoff")]
    operations = [migrations.RunPython(forward, backward)]
