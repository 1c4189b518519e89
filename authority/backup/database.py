"""The database part of a backup: one consistent snapshot, and its restore onto an empty database.

- PostgreSQL: ``pg_dump --format=custom`` of the portal's schema, without owners or privileges (the
  target's roles may be named differently; ``db_roles`` grants them again). The facts the manifest
  records are read in a REPEATABLE READ transaction whose snapshot pg_dump imports
  (``pg_export_snapshot``), so they describe exactly what was dumped. Restore runs ``pg_restore
  --single-transaction``: it loads everything or nothing.
- SQLite: the online backup API copies the file in one step under one read transaction, while the
  portal goes on writing (WAL). Restore copies it back the same way, which also takes care of the
  target's WAL.

The password never goes on a command line: libpq reads it from ``PGPASSWORD`` in the child's
environment.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from psycopg.conninfo import make_conninfo

from authority.backup.errors import BackupError

PG_MEMBER = "database/portal.pgdump"
SQLITE_MEMBER = "database/portal.sqlite3"
# Tables whose rows migrations make (or that hold only scheduling flags): rows there do not make a
# target "in use". Everything else that matters also writes an audit event.
MIGRATION_FILLED = frozenset(
    {
        "django_migrations",
        "django_content_type",
        "auth_permission",
        "auth_group",
        "auth_group_permissions",
        "authority_audithead",
        "authority_taskwakeup",
        "bundles_siteprofile",
        "bundles_renderclaim",
        "enrollment_sitepolicy",
    }
)
# Libpq connection keywords taken from the database OPTIONS (the rest are Django's own).
_LIBPQ = (
    "sslmode",
    "sslrootcert",
    "sslcert",
    "sslkey",
    "sslcrl",
    "connect_timeout",
    "application_name",
    "options",
    "service",
    "passfile",
    "target_session_attrs",
)
_FACTS = {
    "audit_events": "SELECT count(*) FROM authority_auditevent",
    "certificates": "SELECT count(*) FROM authority_certificate",
    "revoked": "SELECT count(*) FROM authority_certificate WHERE revoked_at IS NOT NULL",
    "crl_number": "SELECT coalesce(max(number), 0) FROM authority_crl",
}
_TIMEOUT = 6 * 3600


@dataclass(frozen=True)
class Snapshot:
    """A staged copy of the database and what the manifest says about it."""

    member: str
    path: Path
    info: dict[str, Any]  # vendor, format, schema, server version, applied migrations
    facts: dict[str, Any]  # counts and the audit chain head, for the restore to compare


def _connection(using: str) -> BaseDatabaseWrapper:
    connection = connections[using]
    if connection.vendor not in ("postgresql", "sqlite"):
        raise BackupError(f"backups are made of PostgreSQL and SQLite databases, not {connection.vendor}")
    return connection


def facts_from(cursor: Any) -> dict[str, Any]:
    """What a restore must find again: counts, the newest CRL number, the audit chain head, the CA key
    files, and a digest of every certificate's serial and revocation. Plain SQL on a DB-API cursor,
    so a staged SQLite copy is read exactly as the live database is."""
    facts: dict[str, Any] = {}
    for name, sql in _FACTS.items():
        cursor.execute(sql)
        facts[name] = int(cursor.fetchone()[0])
    cursor.execute("SELECT seq, hash FROM authority_audithead WHERE id = 1")
    head = cursor.fetchone()
    facts["audit_head"] = {"seq": int(head[0]), "hash": str(head[1])} if head else {"seq": 0, "hash": ""}
    cursor.execute("SELECT key_file FROM authority_certificateauthority ORDER BY id")
    facts["ca_key_files"] = [str(row[0]) for row in cursor.fetchall()]
    digest = hashlib.sha256()
    cursor.execute("SELECT serial, revoked_at, revocation_reason FROM authority_certificate ORDER BY serial")
    while rows := cursor.fetchmany(5000):
        for serial, revoked_at, reason in rows:
            digest.update(f"{serial} {'' if revoked_at is None else 'revoked'} {reason}\n".encode())
    facts["certificates_sha256"] = digest.hexdigest()
    return facts


def _migrations(cursor: Any) -> list[list[str]]:
    cursor.execute("SELECT app, name FROM django_migrations ORDER BY app, name")
    return [[str(app), str(name)] for app, name in cursor.fetchall()]


# --- PostgreSQL ------------------------------------------------------------------------------


def _libpq(connection: BaseDatabaseWrapper) -> tuple[str, dict[str, str]]:
    """A conninfo string without the password, and an environment carrying it."""
    config = connection.settings_dict
    params = {
        "dbname": config.get("NAME") or "",
        "host": config.get("HOST") or "",
        "port": str(config.get("PORT") or ""),
        "user": config.get("USER") or "",
    }
    for key, value in (config.get("OPTIONS") or {}).items():
        if key in _LIBPQ and isinstance(value, str | int):
            params[key] = str(value)
    env = dict(os.environ)
    if config.get("PASSWORD"):
        env["PGPASSWORD"] = str(config["PASSWORD"])
    return make_conninfo(**{k: v for k, v in params.items() if v}), env


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise BackupError(f"{name} is not installed (PostgreSQL's client tools, e.g. apt install postgresql-client)")
    return path


def _run(args: Sequence[str], env: dict[str, str], what: str) -> str:
    result = subprocess.run(list(args), env=env, capture_output=True, text=True, timeout=_TIMEOUT, check=False)
    if result.returncode != 0:
        raise BackupError(f"{what} failed: {result.stderr.strip()[-2000:] or result.returncode}")
    return result.stdout


def _pattern(schema: str) -> str:
    """A pg_dump pattern that matches exactly this schema name."""
    return '"' + schema.replace('"', '""') + '"'


def _pg_snapshot(connection: BaseDatabaseWrapper, staging: Path) -> Snapshot:
    path = staging / PG_MEMBER
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    conninfo, env = _libpq(connection)
    pg_dump = _tool("pg_dump")
    with transaction.atomic(using=connection.alias), connection.cursor() as cursor:
        cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        cursor.execute("SELECT pg_export_snapshot(), current_schema(), current_setting('server_version')")
        snapshot_id, schema, version = cursor.fetchone()
        facts = facts_from(cursor)
        migrations = _migrations(cursor)
        # pg_dump --schema leaves out extensions (pg_trgm: the FQDN search index needs it); name them.
        cursor.execute(
            "SELECT e.extname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace "
            "WHERE n.nspname = current_schema() ORDER BY e.extname"
        )
        extensions = [str(row[0]) for row in cursor.fetchall()]
        # pg_dump reads in this transaction's snapshot, which stays open until it is done.
        _run(
            [
                pg_dump,
                "--format=custom",
                f"--snapshot={snapshot_id}",
                f"--schema={_pattern(schema)}",
                "--no-owner",
                "--no-privileges",
                f"--file={path}",
                f"--dbname={conninfo}",
            ],
            env,
            "pg_dump",
        )
    info = {
        "vendor": "postgresql",
        "format": "pg_dump custom",
        "schema": schema,
        "server_version": version,
        "extensions": extensions,
        "migrations": migrations,
    }
    return Snapshot(PG_MEMBER, path, info, facts)


_TOC = re.compile(r"^\s*\d+;\s+\d+\s+\d+\s+(?P<desc>SCHEMA|COMMENT)\s+-\s+(?P<rest>.*)$")


def _toc_without_schema(toc: str, schema: str) -> str:
    """pg_restore's list minus the schema's own CREATE and COMMENT: the target database has the schema."""
    kept = []
    for line in toc.splitlines():
        match = _TOC.match(line)
        if match:
            rest = match["rest"]
            if (match["desc"] == "SCHEMA" and rest.startswith(f"{schema} ")) or (
                match["desc"] == "COMMENT" and rest.startswith(f"SCHEMA {schema} ")
            ):
                continue
        kept.append(line)
    return "\n".join(kept) + "\n"


def _pg_wipe(connection: BaseDatabaseWrapper) -> None:
    """Drop every table, view, sequence, function and type of the portal's schema (not the schema)."""
    with transaction.atomic(using=connection.alias), connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT c.oid::regclass::text, c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S')
              AND NOT EXISTS (SELECT FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
                              AND d.deptype = 'e')
            """
        )
        relations = cursor.fetchall()
        # Views before tables before sequences; CASCADE takes what depends on them (triggers, constraints).
        for kinds, keyword in ((("v",), "VIEW"), (("m",), "MATERIALIZED VIEW"), (("f",), "FOREIGN TABLE"),
                               (("r", "p"), "TABLE"), (("S",), "SEQUENCE")):  # fmt: skip
            names = [name for name, relkind in relations if relkind in kinds]
            if names:
                cursor.execute(f"DROP {keyword} IF EXISTS {', '.join(names)} CASCADE")
        cursor.execute(
            """
            SELECT p.oid::regprocedure::text FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
            WHERE n.nspname = current_schema()
              AND NOT EXISTS (SELECT FROM pg_depend d WHERE d.classid = 'pg_proc'::regclass AND d.objid = p.oid
                              AND d.deptype = 'e')
            """
        )
        for (function,) in cursor.fetchall():
            cursor.execute(f"DROP FUNCTION IF EXISTS {function} CASCADE")
        cursor.execute(
            """
            SELECT t.oid::regtype::text FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
            WHERE n.nspname = current_schema() AND t.typtype IN ('e', 'd', 'r', 'm')
              AND NOT EXISTS (SELECT FROM pg_depend d WHERE d.classid = 'pg_type'::regclass AND d.objid = t.oid
                              AND d.deptype = 'e')
            """
        )
        for (type_name,) in cursor.fetchall():
            cursor.execute(f"DROP TYPE IF EXISTS {type_name} CASCADE")


def _pg_extensions(connection: BaseDatabaseWrapper, names: list[str], schema: str) -> None:
    """Create the extensions the backed-up schema had (pg_trgm is trusted: the database owner may)."""
    quote = connection.ops.quote_name
    for name in names:
        try:
            with transaction.atomic(using=connection.alias), connection.cursor() as cursor:
                cursor.execute(f"CREATE EXTENSION IF NOT EXISTS {quote(name)} SCHEMA {quote(schema)}")
        except DatabaseError as exc:
            raise BackupError(
                f"the backup needs the extension {name}, which this role may not create ({str(exc).strip()}); "
                f"have a superuser run CREATE EXTENSION {name} in the target database, then restore again"
            ) from None


def _pg_load(connection: BaseDatabaseWrapper, path: Path, info: dict[str, Any], staging: Path) -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_schema()")
        (schema,) = cursor.fetchone()
    if schema is None:
        raise BackupError("the target database has no schema on its search_path to restore into")
    if info.get("schema") != schema:
        raise BackupError(
            f"the backup is of schema {info.get('schema')!r}, the target's is {schema!r}: restore into a "
            f"database whose search_path starts with {info.get('schema')!r}"
        )
    _pg_extensions(connection, [str(name) for name in info.get("extensions", [])], schema)
    conninfo, env = _libpq(connection)
    pg_restore = _tool("pg_restore")
    listing = staging / "restore.list"
    toc = _run([pg_restore, "--list", str(path)], env, "pg_restore --list")
    listing.write_text(_toc_without_schema(toc, schema), encoding="utf-8")
    connection.close()  # nothing of ours holds a lock while pg_restore works
    _run(
        [
            pg_restore,
            "--no-owner",
            "--no-privileges",
            "--single-transaction",
            "--exit-on-error",
            f"--use-list={listing}",
            f"--dbname={conninfo}",
            str(path),
        ],
        env,
        "pg_restore",
    )


# --- SQLite ----------------------------------------------------------------------------------


def _sqlite_path(connection: BaseDatabaseWrapper) -> Path:
    name = str(connection.settings_dict["NAME"])
    if name == ":memory:" or name.startswith("file:"):
        raise BackupError("an in-memory SQLite database cannot be backed up or restored")
    return Path(name)


def _sqlite_snapshot(connection: BaseDatabaseWrapper, staging: Path) -> Snapshot:
    source_path = _sqlite_path(connection)
    path = staging / SQLITE_MEMBER
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    source = sqlite3.connect(source_path, timeout=30)
    target = sqlite3.connect(path)
    try:
        source.backup(target)  # one step (pages=-1): one read transaction, a consistent copy
        target.execute("PRAGMA journal_mode=DELETE")  # the copy is one self-contained file
    finally:
        source.close()
        target.close()
    with _sqlite_cursor(path) as cursor:
        facts = facts_from(cursor)
        migrations = _migrations(cursor)
        cursor.execute("SELECT sqlite_version()")
        (version,) = cursor.fetchone()
    info = {"vendor": "sqlite", "format": "sqlite3 database", "server_version": version, "migrations": migrations}
    return Snapshot(SQLITE_MEMBER, path, info, facts)


@contextmanager
def _sqlite_cursor(path: Path) -> Iterator[sqlite3.Cursor]:
    db = sqlite3.connect(path, timeout=30)
    try:
        yield db.cursor()
    finally:
        db.close()


def _sqlite_load(connection: BaseDatabaseWrapper, path: Path) -> None:
    target_path = _sqlite_path(connection)
    with _sqlite_cursor(path) as cursor:
        cursor.execute("PRAGMA integrity_check")
        verdict = cursor.fetchone()
    if verdict is None or verdict[0] != "ok":
        raise BackupError(f"the backed-up SQLite database fails its integrity check: {verdict}")
    connection.close()
    target_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    source = sqlite3.connect(path)
    target = sqlite3.connect(target_path, timeout=30)
    try:
        source.backup(target)  # replaces every page of the target, its WAL included
    finally:
        source.close()
        target.close()
    os.chmod(target_path, 0o600)


# --- the interface ---------------------------------------------------------------------------


def vendor(using: str = DEFAULT_DB_ALIAS) -> str:
    return str(_connection(using).vendor)


def snapshot(staging: Path, using: str = DEFAULT_DB_ALIAS) -> Snapshot:
    """Stage a consistent copy of the database in ``staging`` (a private directory)."""
    connection = _connection(using)
    if connection.vendor == "postgresql":
        return _pg_snapshot(connection, staging)
    return _sqlite_snapshot(connection, staging)


def tables_with_rows(using: str = DEFAULT_DB_ALIAS) -> list[str]:
    """The portal's tables that hold rows someone made (not the ones migrations fill)."""
    connection = _connection(using)
    with connection.cursor() as cursor:
        tables = connection.introspection.table_names(cursor)
        found = []
        for table in sorted(set(tables) - MIGRATION_FILLED):
            cursor.execute(f"SELECT 1 FROM {connection.ops.quote_name(table)} LIMIT 1")  # noqa: S608 (a table name from the catalog, quoted)
            if cursor.fetchone():
                found.append(table)
    return found


def wipe(using: str = DEFAULT_DB_ALIAS) -> None:
    """Empty the target before a forced restore. SQLite needs nothing: the copy replaces every page."""
    connection = _connection(using)
    if connection.vendor == "postgresql":
        _pg_wipe(connection)


def load(path: Path, info: dict[str, Any], staging: Path, using: str = DEFAULT_DB_ALIAS) -> None:
    """Restore the staged copy onto the (empty, or wiped) target database."""
    connection = _connection(using)
    if info.get("vendor") != connection.vendor:
        raise BackupError(
            f"the backup is of a {info.get('vendor')} database and this portal runs on {connection.vendor}; "
            "restore it onto the same kind of database"
        )
    if connection.vendor == "postgresql":
        _pg_load(connection, path, info, staging)
    else:
        _sqlite_load(connection, path)


def live_facts(using: str = DEFAULT_DB_ALIAS) -> dict[str, Any]:
    """``facts_from`` the target after a restore, read the way the snapshot read them."""
    connection = _connection(using)
    if connection.vendor == "sqlite":
        with _sqlite_cursor(_sqlite_path(connection)) as cursor:
            return facts_from(cursor)
    with connection.cursor() as cursor:
        return facts_from(cursor)
