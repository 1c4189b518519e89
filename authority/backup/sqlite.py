"""The SQLite side of a backup: the online backup API, both ways.

One step of the backup API copies the whole file under one read transaction while the portal goes
on writing (WAL); the copy is switched to a rollback journal, so it is one self-contained file.
Restore copies it back the same way, replacing every page of the target, its WAL included.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from django.db.backends.base.base import BaseDatabaseWrapper

from authority.backup.errors import BackupError
from authority.backup.facts import SQLITE_MEMBER, Snapshot, facts_from, migrations_from


def database_path(connection: BaseDatabaseWrapper) -> Path:
    name = str(connection.settings_dict["NAME"])
    if name == ":memory:" or name.startswith("file:"):
        raise BackupError("an in-memory SQLite database cannot be backed up or restored")
    return Path(name)


def snapshot(connection: BaseDatabaseWrapper, staging: Path) -> Snapshot:
    source_path = database_path(connection)
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
    with cursor_on(path) as cursor:
        facts = facts_from(cursor)
        migrations = migrations_from(cursor)
        cursor.execute("SELECT sqlite_version()")
        (version,) = cursor.fetchone()
    info = {"vendor": "sqlite", "format": "sqlite3 database", "server_version": version, "migrations": migrations}
    return Snapshot(SQLITE_MEMBER, path, info, facts)


@contextmanager
def cursor_on(path: Path) -> Iterator[sqlite3.Cursor]:
    db = sqlite3.connect(path, timeout=30)
    try:
        yield db.cursor()
    finally:
        db.close()


def load(connection: BaseDatabaseWrapper, path: Path) -> None:
    target_path = database_path(connection)
    with cursor_on(path) as cursor:
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
