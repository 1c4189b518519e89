from django.db import migrations

# PostgreSQL only (docs/security.md T31): the database itself refuses to change or delete an audit event,
# whoever asks through the application's connection; the hash chain still detects what a table owner
# does after dropping the trigger. SQLite (the embedded default) has no such trigger: Django's flush
# deletes rows there, and the file belongs to the portal's user anyway.
CREATE = """
CREATE FUNCTION authority_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the audit log is append-only: % of an audit event refused', TG_OP;
END
$$;
CREATE TRIGGER audit_append_only BEFORE UPDATE OR DELETE ON authority_auditevent
    FOR EACH ROW EXECUTE FUNCTION authority_audit_append_only();
"""
DROP = """
DROP TRIGGER IF EXISTS audit_append_only ON authority_auditevent;
DROP FUNCTION IF EXISTS authority_audit_append_only();
"""


def _create(apps, schema_editor):  # type: ignore[no-untyped-def]
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(CREATE, params=None)


def _drop(apps, schema_editor):  # type: ignore[no-untyped-def]
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP, params=None)


class Migration(migrations.Migration):
    dependencies = [
        ("authority", "0008_task_wakeup"),
    ]

    operations = [migrations.RunPython(_create, _drop)]
