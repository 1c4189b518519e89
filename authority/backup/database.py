"""The database part of a backup: one consistent snapshot, and its restore onto an empty database.

PostgreSQL (``postgres``): pg_dump of the portal's schema in an exported snapshot, pg_restore in one
transaction. SQLite (``sqlite``): the online backup API both ways. ``facts`` is what the manifest
records about the snapshot and what a restore must find again.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connections
from django.db.backends.base.base import BaseDatabaseWrapper

from authority.backup import postgres, sqlite
from authority.backup.errors import BackupError
from authority.backup.facts import PG_MEMBER, SQLITE_MEMBER, Snapshot, facts_from

__all__ = [
    "PG_MEMBER",
    "SQLITE_MEMBER",
    "Snapshot",
    "live_facts",
    "load",
    "snapshot",
    "tables_with_rows",
    "vendor",
    "wipe",
]

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


def _connection(using: str) -> BaseDatabaseWrapper:
    connection = connections[using]
    if connection.vendor not in ("postgresql", "sqlite"):
        raise BackupError(f"backups are made of PostgreSQL and SQLite databases, not {connection.vendor}")
    return connection


def vendor(using: str = DEFAULT_DB_ALIAS) -> str:
    return str(_connection(using).vendor)


def snapshot(staging: Path, using: str = DEFAULT_DB_ALIAS) -> Snapshot:
    """Stage a consistent copy of the database in ``staging`` (a private directory)."""
    connection = _connection(using)
    if connection.vendor == "postgresql":
        return postgres.snapshot(connection, staging)
    return sqlite.snapshot(connection, staging)


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
        postgres.wipe(connection)


def load(path: Path, info: dict[str, Any], staging: Path, using: str = DEFAULT_DB_ALIAS) -> None:
    """Restore the staged copy onto the (empty, or wiped) target database."""
    connection = _connection(using)
    if info.get("vendor") != connection.vendor:
        raise BackupError(
            f"the backup is of a {info.get('vendor')} database and this portal runs on {connection.vendor}; "
            "restore it onto the same kind of database"
        )
    if connection.vendor == "postgresql":
        postgres.load(connection, path, info, staging)
    else:
        sqlite.load(connection, path)


def live_facts(using: str = DEFAULT_DB_ALIAS) -> dict[str, Any]:
    """``facts_from`` the target after a restore, read the way the snapshot read them."""
    connection = _connection(using)
    if connection.vendor == "sqlite":
        with sqlite.cursor_on(sqlite.database_path(connection)) as cursor:
            return facts_from(cursor)
    with connection.cursor() as cursor:
        return facts_from(cursor)
