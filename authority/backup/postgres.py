"""The PostgreSQL side of a backup: pg_dump of the portal's schema in an exported snapshot, and its restore.

The manifest's facts are read in a REPEATABLE READ transaction whose snapshot pg_dump imports
(``pg_export_snapshot``), so they describe exactly what was dumped. The dump has no owners and no
privileges (the target's roles may be named differently; ``db_roles`` grants them again), and no
extensions (``pg_dump --schema`` leaves them out): the restore creates those first, then runs
``pg_restore --single-transaction``, which loads everything or nothing. The password never goes on a
command line: libpq reads it from ``PGPASSWORD`` in the child's environment.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from django.db import DatabaseError, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from psycopg.conninfo import make_conninfo

from authority.backup.errors import BackupError
from authority.backup.facts import PG_MEMBER, Snapshot, facts_from, migrations_from

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
_TIMEOUT = 6 * 3600


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


def snapshot(connection: BaseDatabaseWrapper, staging: Path) -> Snapshot:
    path = staging / PG_MEMBER
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    conninfo, env = _libpq(connection)
    pg_dump = _tool("pg_dump")
    with transaction.atomic(using=connection.alias), connection.cursor() as cursor:
        cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        cursor.execute("SELECT pg_export_snapshot(), current_schema(), current_setting('server_version')")
        snapshot_id, schema, version = cursor.fetchone()
        facts = facts_from(cursor)
        migrations = migrations_from(cursor)
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
                # zlib level 1: half the time of the default level 6 for 4 % more bytes (measured on 20,000
                # certificates: 8.7 s and 64 MB against 16.7 s and 61 MB; uncompressed 1.8 s and 144 MB).
                "--compress=1",
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


def wipe(connection: BaseDatabaseWrapper) -> None:
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


def _extensions(connection: BaseDatabaseWrapper, names: list[str], schema: str) -> None:
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


def load(connection: BaseDatabaseWrapper, path: Path, info: dict[str, Any], staging: Path) -> None:
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
    _extensions(connection, [str(name) for name in info.get("extensions", [])], schema)
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
