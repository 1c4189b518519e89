"""What a backup records about its database, and a restore must find again (plain SQL on a DB-API cursor)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PG_MEMBER = "database/portal.pgdump"
SQLITE_MEMBER = "database/portal.sqlite3"
_FACTS = {
    "audit_events": "SELECT count(*) FROM authority_auditevent",
    "certificates": "SELECT count(*) FROM authority_certificate",
    "revoked": "SELECT count(*) FROM authority_certificate WHERE revoked_at IS NOT NULL",
    "crl_number": "SELECT coalesce(max(number), 0) FROM authority_crl",
}


@dataclass(frozen=True)
class Snapshot:
    """A staged copy of the database and what the manifest says about it."""

    member: str
    path: Path
    info: dict[str, Any]  # vendor, format, server version, applied migrations (PostgreSQL: schema, extensions)
    facts: dict[str, Any]  # counts and the audit chain head, for the restore to compare


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


def migrations_from(cursor: Any) -> list[list[str]]:
    cursor.execute("SELECT app, name FROM django_migrations ORDER BY app, name")
    return [[str(app), str(name)] for app, name in cursor.fetchall()]
