"""Two PostgreSQL roles: an owner that migrates, and a runtime role that cannot rewrite history.

The portal used to connect as the owner of its tables, and a table's owner can drop or disable the
append-only trigger on the audit log (authority/migrations/0009_audit_append_only.py) and then
rewrite it; the hash chain would notice, but only after the fact. With two roles (docs/backup.md,
"Database roles"):

- the **owner** owns the database, its schema's objects and the trigger; only ``manage.py migrate``
  (and ``restore``) connect as it;
- the **runtime** role (the portal's ``DATABASE_URL``) has DML only: no DDL (it owns nothing and may
  not create in the schema or make temporary tables), no TRUNCATE, no REFERENCES, no TRIGGER. On
  the audit tables (``authority_audit*``) it may only SELECT and INSERT, except the chain head
  (``authority_audithead``), whose one row every append UPDATEs. It reads ``django_migrations`` and
  writes nothing there.

``roles_sql`` is the whole set-up as one idempotent script (``manage.py db_roles --print-sql``
shows it). ``runtime_grants_sql`` is its part for the tables, run again after every ``migrate``
(``restrict_after_migrate``) and ``restore``: ``ALTER DEFAULT PRIVILEGES`` gives a table made by a
later migration full DML, and only this part knows which tables are audit tables.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connections

AUDIT_PREFIX = "authority_audit"  # every audit table: SELECT and INSERT only ...
AUDIT_UPDATED = ("authority_audithead",)  # ... but the chain head, UPDATEd by every append (never DELETEd)
READ_ONLY = ("django_migrations",)  # written by migrate, as the owner
DML = ("SELECT", "INSERT", "UPDATE", "DELETE")
_ROLE = re.compile(r"[a-z_][a-z0-9_]{0,62}")


class RoleError(ValueError):
    """A role set-up that cannot be made: a bad name, or a role with powers it must not have."""


def check_role_names(owner: str, runtime: str) -> None:
    for name in (owner, runtime):
        if not _ROLE.fullmatch(name):
            raise RoleError(f"{name!r} is not a role name to use here: lower-case letters, digits and _ (max 63)")
    if owner == runtime:
        raise RoleError("the owner and the runtime role must be two different roles")
    if "postgres" in (owner, runtime):
        raise RoleError("use roles of the portal's own, not the postgres superuser")


def runtime_privileges(table: str) -> tuple[str, ...]:
    """What the runtime role may do on ``table`` (the rule ``runtime_grants_sql`` applies)."""
    if table in READ_ONLY:
        return ("SELECT",)
    if table in AUDIT_UPDATED:
        return ("SELECT", "INSERT", "UPDATE")
    if table.startswith(AUDIT_PREFIX):
        return ("SELECT", "INSERT")
    return DML


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _names(names: tuple[str, ...]) -> str:
    return ", ".join(_literal(name) for name in names)


def runtime_grants_sql(*, runtime: str, schema: str) -> str:
    """Reset the runtime role's privileges on every table and sequence of ``schema`` to the rule of
    ``runtime_privileges``. One statement (a DO block), so a running portal sees the old or the new
    privileges, never none. Run it as the owner (or a superuser)."""
    role, nsp = _literal(runtime), _literal(schema)
    audit_like = _literal(AUDIT_PREFIX.replace("_", "\\_") + "%")
    return f"""DO $grants$
DECLARE
    obj record;
BEGIN
    FOR obj IN
        SELECT c.oid::regclass AS name, c.relname
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = {nsp} AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
    LOOP
        EXECUTE format('REVOKE ALL ON TABLE %s FROM %I', obj.name, {role});
        IF obj.relname IN ({_names(READ_ONLY)}) THEN
            EXECUTE format('GRANT SELECT ON TABLE %s TO %I', obj.name, {role});
        ELSIF obj.relname IN ({_names(AUDIT_UPDATED)}) THEN
            EXECUTE format('GRANT SELECT, INSERT, UPDATE ON TABLE %s TO %I', obj.name, {role});
        ELSIF obj.relname LIKE {audit_like} THEN
            EXECUTE format('GRANT SELECT, INSERT ON TABLE %s TO %I', obj.name, {role});
        ELSE
            EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON TABLE %s TO %I', obj.name, {role});
        END IF;
    END LOOP;
    FOR obj IN
        SELECT c.oid::regclass AS name
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = {nsp} AND c.relkind = 'S'
    LOOP
        EXECUTE format('REVOKE ALL ON SEQUENCE %s FROM %I', obj.name, {role});
        EXECUTE format('GRANT USAGE, SELECT ON SEQUENCE %s TO %I', obj.name, {role});
    END LOOP;
END
$grants$;
"""  # noqa: S608 (identifiers and literals quoted by _ident/_literal, and format's %I inside)


def roles_sql(*, owner: str, runtime: str, database: str, schema: str = "public") -> str:
    """The whole two-role set-up as one script for a superuser; safe to run again (after migrate too)."""
    check_role_names(owner, runtime)
    o, r, db, nsp = _ident(owner), _ident(runtime), _ident(database), _ident(schema)
    lo, lr, lnsp = _literal(owner), _literal(runtime), _literal(schema)
    return f"""-- ca_portal: the owner role {owner} (migrate, restore) and the runtime role {runtime} (DATABASE_URL).
-- Run as a superuser, connected to the database {database}. Safe to run again. docs/backup.md, "Database roles".
BEGIN;
DO $roles$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = {lo}) THEN
        CREATE ROLE {o} LOGIN;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = {lr}) THEN
        CREATE ROLE {r} LOGIN NOINHERIT;
    END IF;
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = {lo} AND rolsuper) THEN
        RAISE EXCEPTION 'the owner role % is a superuser; use a role of the portal''s own', {lo};
    END IF;
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = {lr}
               AND (rolsuper OR rolcreaterole OR rolcreatedb OR rolreplication OR rolbypassrls)) THEN
        RAISE EXCEPTION 'the runtime role % may not be superuser, createrole, createdb, replication or bypassrls',
            {lr};
    END IF;
    -- A member of the owner role could act as the owner (SET ROLE): the runtime role is no member of anything.
    IF EXISTS (SELECT FROM pg_auth_members WHERE member = (SELECT oid FROM pg_roles WHERE rolname = {lr})) THEN
        RAISE EXCEPTION 'the runtime role % is a member of other roles; revoke those memberships first', {lr};
    END IF;
END
$roles$;

-- The database and what is in its schema belong to the owner; PUBLIC may not connect, create or make temp tables.
ALTER DATABASE {db} OWNER TO {o};
REVOKE ALL ON DATABASE {db} FROM PUBLIC;
GRANT CONNECT, TEMPORARY ON DATABASE {db} TO {o};
GRANT CONNECT ON DATABASE {db} TO {r};
REVOKE CREATE ON SCHEMA {nsp} FROM PUBLIC;
GRANT USAGE, CREATE ON SCHEMA {nsp} TO {o};
GRANT USAGE ON SCHEMA {nsp} TO {r};
DO $owner$
DECLARE
    obj record;
BEGIN
    -- Tables, views and their own sequences (identity and serial ones follow their table).
    FOR obj IN
        SELECT c.oid::regclass AS name
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = {lnsp} AND c.relkind IN ('r', 'p', 'v', 'm', 'f') AND c.relowner <> {lo}::regrole
          AND NOT EXISTS (SELECT FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
                          AND d.deptype = 'e')
    LOOP
        EXECUTE format('ALTER TABLE %s OWNER TO %I', obj.name, {lo});
    END LOOP;
    FOR obj IN
        SELECT c.oid::regclass AS name
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = {lnsp} AND c.relkind = 'S' AND c.relowner <> {lo}::regrole
          AND NOT EXISTS (SELECT FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
                          AND d.deptype IN ('a', 'i', 'e'))
    LOOP
        EXECUTE format('ALTER SEQUENCE %s OWNER TO %I', obj.name, {lo});
    END LOOP;
    -- Functions: the audit log's append-only trigger function.
    FOR obj IN
        SELECT p.oid::regprocedure AS name
        FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
        WHERE n.nspname = {lnsp} AND p.proowner <> {lo}::regrole
          AND NOT EXISTS (SELECT FROM pg_depend d WHERE d.classid = 'pg_proc'::regclass AND d.objid = p.oid
                          AND d.deptype = 'e')
    LOOP
        EXECUTE format('ALTER FUNCTION %s OWNER TO %I', obj.name, {lo});
    END LOOP;
END
$owner$;

-- What the runtime role may do on the tables there are now ...
{runtime_grants_sql(runtime=runtime, schema=schema).rstrip()}

-- ... and on those later migrations make (the audit restrictions are applied again after each migrate).
ALTER DEFAULT PRIVILEGES FOR ROLE {o} IN SCHEMA {nsp} GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {r};
ALTER DEFAULT PRIVILEGES FOR ROLE {o} IN SCHEMA {nsp} GRANT USAGE, SELECT ON SEQUENCES TO {r};
COMMIT;
"""  # noqa: S608 (validated role names; every identifier and literal quoted by _ident/_literal)


def apply_roles(*, owner: str, runtime: str, using: str = DEFAULT_DB_ALIAS) -> str:
    """Run ``roles_sql`` on the database (as a superuser, or the current owner of everything in it)."""
    connection = connections[using]
    if connection.vendor != "postgresql":
        raise RoleError("database roles are a PostgreSQL set-up; this portal runs on " + connection.vendor)
    connection.ensure_connection()
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_database(), current_schema()")
        database, schema = cursor.fetchone()
    script = roles_sql(owner=owner, runtime=runtime, database=database, schema=schema)
    # The script has its own BEGIN/COMMIT; run it on a connection in autocommit mode.
    with connection.cursor() as cursor:
        cursor.execute(script)
    return script


def runtime_roles(using: str = DEFAULT_DB_ALIAS) -> list[str]:
    """The roles the current user's default privileges give DML on new tables of the schema: its runtime roles."""
    with connections[using].cursor() as cursor:
        cursor.execute(
            """
            SELECT DISTINCT pg_get_userbyid(a.grantee)
            FROM pg_default_acl d, aclexplode(d.defaclacl) a
            WHERE d.defaclrole = (SELECT oid FROM pg_roles WHERE rolname = current_user)
              AND d.defaclnamespace = (SELECT oid FROM pg_namespace WHERE nspname = current_schema())
              AND d.defaclobjtype = 'r' AND a.grantee <> 0
              AND a.privilege_type IN ('INSERT', 'UPDATE', 'DELETE')
            ORDER BY 1
            """
        )
        return [row[0] for row in cursor.fetchall()]


def restrict_runtime_roles(using: str = DEFAULT_DB_ALIAS) -> list[str]:
    """Apply ``runtime_grants_sql`` for every runtime role of the current user; returns their names.
    Nothing to do on SQLite, or where no two-role set-up was made."""
    connection = connections[using]
    if connection.vendor != "postgresql":
        return []
    roles = runtime_roles(using)
    if roles:
        with connection.cursor() as cursor:
            cursor.execute("SELECT current_schema()")
            (schema,) = cursor.fetchone()
            for role in roles:
                cursor.execute(runtime_grants_sql(runtime=role, schema=schema))
    return roles


def is_superuser(using: str = DEFAULT_DB_ALIAS) -> bool:
    """Whether the connection's role is a PostgreSQL superuser (False on SQLite)."""
    connection = connections[using]
    if connection.vendor != "postgresql":
        return False
    with connection.cursor() as cursor:
        cursor.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
        row = cursor.fetchone()
    return bool(row and row[0])


def restrict_after_migrate(sender: Any, using: str = DEFAULT_DB_ALIAS, **kwargs: Any) -> None:
    """post_migrate: a table a migration just made has the runtime role's full DML from the default
    privileges; put the audit tables back to SELECT and INSERT."""
    restrict_runtime_roles(using)


@dataclass(frozen=True)
class TablePrivileges:
    table: str
    privileges: tuple[str, ...]  # of SELECT INSERT UPDATE DELETE TRUNCATE REFERENCES TRIGGER, in that order
    owner: str


def table_privileges(role: str, using: str = DEFAULT_DB_ALIAS) -> list[TablePrivileges]:
    """What ``role`` may do on each table of the schema, as PostgreSQL reports it (for the command and the tests)."""
    kinds = ("SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES", "TRIGGER")
    columns = ", ".join(f"has_table_privilege(%s, c.oid, '{kind}')" for kind in kinds)
    with connections[using].cursor() as cursor:
        cursor.execute(
            f"""
            SELECT c.relname, pg_get_userbyid(c.relowner), {columns}
            FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p')
            ORDER BY c.relname
            """,  # noqa: S608 (the columns are the fixed list above; the role is a parameter)
            [role] * len(kinds),
        )
        return [
            TablePrivileges(
                row[0], tuple(kind for kind, allowed in zip(kinds, row[2:], strict=True) if allowed), row[1]
            )
            for row in cursor.fetchall()
        ]
