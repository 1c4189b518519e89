"""The two PostgreSQL roles (authority/db_roles.py, manage.py db_roles): the runtime role does the
portal's work and cannot rewrite history.

The suite itself cannot run as the runtime role: pytest-django creates its test database, migrates it
and TRUNCATEs tables between transactional tests, all of which the runtime role must not do. So this
test builds the real thing on a database of its own: roles made by ``db_roles`` (as a superuser),
``migrate`` as the owner, then real work as the runtime role (import the CA, register, approve, issue,
revoke, renew, render and download bundles, CRLs, sign in through the login page, the scheduled audit
check), then every way to change the audit log behind the chain's back, each refused by PostgreSQL.
"""

from __future__ import annotations

import secrets
import shutil
from collections.abc import Iterator
from io import StringIO
from pathlib import Path

import psycopg
import pytest
from django.core.management import call_command
from psycopg import errors

from authority.db_roles import RoleError, check_role_names, roles_sql, runtime_privileges
from tests.ops.deployment import Deployment, pg_admin

ALL = ("SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES", "TRIGGER")


def test_the_rule_for_each_table() -> None:
    assert runtime_privileges("authority_auditevent") == ("SELECT", "INSERT")
    assert runtime_privileges("authority_auditcheck") == ("SELECT", "INSERT")
    assert runtime_privileges("authority_auditcheckpoint") == ("SELECT", "INSERT")  # a future audit table too
    assert runtime_privileges("authority_audithead") == ("SELECT", "INSERT", "UPDATE")
    assert runtime_privileges("django_migrations") == ("SELECT",)
    assert runtime_privileges("enrollment_peer") == ("SELECT", "INSERT", "UPDATE", "DELETE")


@pytest.mark.parametrize(
    ("owner", "runtime"),
    [("ca_portal", "ca_portal"), ("postgres", "ca_portal"), ("Owner", "ca_portal"), ("o", 'x"; DROP TABLE y; --')],
)
def test_it_refuses_role_names_it_should_not_use(owner: str, runtime: str) -> None:
    with pytest.raises(RoleError):
        check_role_names(owner, runtime)


def test_it_prints_the_script_for_a_dba() -> None:
    out = StringIO()
    call_command("db_roles", "--owner", "ca_portal_owner", "--runtime", "ca_portal", "--print-sql", stdout=out)
    script = out.getvalue()
    assert script == roles_sql(owner="ca_portal_owner", runtime="ca_portal", database=_database_name())
    for line in (
        "REVOKE ALL ON DATABASE",
        'REVOKE CREATE ON SCHEMA "public" FROM PUBLIC;',
        'ALTER DEFAULT PRIVILEGES FOR ROLE "ca_portal_owner" IN SCHEMA "public" GRANT SELECT, INSERT, UPDATE, '
        'DELETE ON TABLES TO "ca_portal";',
        'ALTER DEFAULT PRIVILEGES FOR ROLE "ca_portal_owner" IN SCHEMA "public" GRANT USAGE, SELECT ON SEQUENCES',
    ):
        assert line in script


def _database_name() -> str:
    from django.conf import settings

    return str(settings.DATABASES["default"]["NAME"])


# --- on a real database -----------------------------------------------------------------------------


@pytest.fixture
def site(tmp_path: Path) -> Iterator[tuple[Deployment, Deployment, str, str]]:
    """A deployment, an empty one to restore into, and the names of the two roles (all dropped after)."""
    deployment = Deployment(tmp_path, "postgresql")
    restored = Deployment(tmp_path, "postgresql", name="restored")
    suffix = secrets.token_hex(3)
    owner, runtime = f"ca_portal_bk_own_{suffix}", f"ca_portal_bk_run_{suffix}"
    try:
        yield deployment, restored, owner, runtime
    finally:
        deployment.drop()
        restored.drop()
        for role in (runtime, owner):
            pg_admin(f'DROP ROLE IF EXISTS "{role}"')


def _privileges(site: Deployment, role: str) -> dict[str, tuple[tuple[str, ...], str]]:
    """Each table: what ``role`` may do on it, and its owner (as the superuser sees it)."""
    columns = ", ".join(f"has_table_privilege(%s, c.oid, '{kind}')" for kind in ALL)
    with psycopg.connect(site.url("postgres")) as conn:
        rows = conn.execute(
            f"SELECT c.relname, pg_get_userbyid(c.relowner), {columns} FROM pg_class c "  # noqa: S608
            "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public' AND c.relkind = 'r'",
            [role] * len(ALL),
        ).fetchall()
    return {row[0]: (tuple(k for k, ok in zip(ALL, row[2:], strict=True) if ok), row[1]) for row in rows}


@pytest.mark.integration
def test_the_runtime_role_works_and_cannot_rewrite_history(
    site: tuple[Deployment, Deployment, str, str], tmp_path: Path
) -> None:
    deployment, restored, owner, runtime = site
    # As a superuser, before the first migrate (the order of a new installation); then migrate as the owner.
    made = deployment.manage("db_roles", "--owner", owner, "--runtime", runtime)
    assert "Roles set up" in made.stdout
    deployment.manage("migrate", "--noinput", "-v0", role=owner)

    # The tables migrate made: all the owner's; the audit ones restricted right away (post_migrate).
    tables = _privileges(deployment, runtime)
    assert {owner_name for _, owner_name in tables.values()} == {owner}
    for table, (allowed, _) in tables.items():
        assert allowed == runtime_privileges(table), table
    assert tables["authority_auditevent"][0] == ("SELECT", "INSERT")
    assert tables["authority_audithead"][0] == ("SELECT", "INSERT", "UPDATE")
    assert "TRUNCATE" not in tables["authority_certificate"][0]

    # Normal work, as the portal does it, through the runtime role.
    deployment.import_ca(role=runtime)
    populated = deployment.scenario("populate", role=runtime)
    assert len(populated["certificates"]) == 4
    assert populated["crl_numbers"] == [1, 2]
    web = deployment.scenario("web", role=runtime)
    assert (web["failed"], web["signed_in"], web["peers"], web["home"]) == (200, 302, 200, 200)
    events = web["state"]["audit"]
    assert events["ok"] is True
    passphrase = tmp_path / "backup-passphrase"
    passphrase.write_text("a backup passphrase for this test\n")
    passphrase.chmod(0o600)
    backed_up = deployment.manage(
        "backup", "--out", str(tmp_path / "b.cabk"), "--passphrase-file", str(passphrase), role=runtime
    )
    assert "Backup written" in backed_up.stdout  # pg_dump needs no more than the runtime role has

    # Every way around the append-only trigger and the hash chain, refused by PostgreSQL itself.
    attempts = [
        "UPDATE authority_auditevent SET actor = 'someone else' WHERE seq = 1",
        "DELETE FROM authority_auditevent WHERE seq = 1",
        "TRUNCATE authority_auditevent",
        "TRUNCATE authority_auditevent, authority_audithead",
        "ALTER TABLE authority_auditevent DISABLE TRIGGER audit_append_only",
        "ALTER TABLE authority_auditevent DISABLE TRIGGER ALL",
        "DROP TRIGGER audit_append_only ON authority_auditevent",
        "DROP FUNCTION authority_audit_append_only() CASCADE",
        "CREATE OR REPLACE FUNCTION authority_audit_append_only() RETURNS trigger LANGUAGE plpgsql "
        "AS $$ BEGIN RETURN NEW; END $$",
        "ALTER TABLE authority_auditevent ADD COLUMN note text",
        "DROP TABLE authority_auditevent",
        "CREATE TRIGGER sneaky BEFORE INSERT ON authority_auditevent FOR EACH ROW "
        "EXECUTE FUNCTION authority_audit_append_only()",
        "SET session_replication_role = replica",
        f'SET ROLE "{owner}"',
        f'ALTER ROLE "{runtime}" SUPERUSER',
        "DELETE FROM authority_audithead",
        "UPDATE authority_auditcheck SET ok = true",
        "DELETE FROM authority_auditcheck",
        "TRUNCATE authority_certificate",
        "INSERT INTO django_migrations (app, name, applied) VALUES ('authority', '9999_x', now())",
        "CREATE TABLE scratch (i int)",
        "CREATE TEMP TABLE scratch (i int)",
    ]
    allowed = []
    for statement in attempts:
        with psycopg.connect(deployment.url(runtime), autocommit=True) as conn:
            try:
                conn.execute(statement)  # type: ignore[arg-type]
            except errors.InsufficientPrivilege:
                continue
            allowed.append(statement)
    assert allowed == [], "the runtime role could run:\n" + "\n".join(allowed)

    after = deployment.scenario("state", role=runtime)
    # Nothing was changed (the backup's own event is the last), and the chain still checks out.
    assert after["audit"] == {**events, "count": events["count"] + 1}
    assert after["last_action"] == "backup.created"

    # A restore as the owner onto another database with the same roles: the runtime role's privileges,
    # which the dump does not carry, are set again by the rule (the audit tables included).
    restored.manage("db_roles", "--owner", owner, "--runtime", runtime)
    shutil.copy2(deployment.var / "ca-key-passphrase", restored.var / "ca-key-passphrase")
    done = restored.manage("restore", str(tmp_path / "b.cabk"), "--passphrase-file", str(passphrase), role=owner).stdout
    assert f"runtime role privileges set again for {runtime}" in done
    assert "Audit chain: OK" in done
    tables = _privileges(restored, runtime)
    assert {owner_name for _, owner_name in tables.values()} == {owner}
    for table, (allowed, _) in tables.items():
        assert allowed == runtime_privileges(table), table
    assert restored.scenario("state", role=runtime)["certificates"] == after["certificates"]

    # Safe to run again; the owner still could drop the trigger (which is why the portal must not be it).
    again = deployment.manage("db_roles", "--owner", owner, "--runtime", runtime)
    assert "authority_auditevent (SELECT, INSERT)" in again.stdout
    with psycopg.connect(deployment.url(owner), autocommit=True) as conn:
        conn.execute("BEGIN")
        conn.execute("ALTER TABLE authority_auditevent DISABLE TRIGGER audit_append_only")
        conn.execute("ROLLBACK")
