"""The audit log: append-only and hash-chained.

``audit_record`` appends inside the caller's transaction: a state change and its event commit
together or not at all. Events about attempts and failures (signing intent, a refused approval,
a failed signature) are recorded in transactions of their own that commit before, or after the
rollback of, the business work, so they survive it (docs/security.md T32).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import transaction
from django.utils import timezone

from authority.inserts import insert_rows
from authority.models import AuditEvent, AuditHead

GENESIS = "0" * 64


def canonical(event: dict[str, Any]) -> bytes:
    return json.dumps(event, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def event_hash(
    prev_hash: str, *, seq: int, at: datetime, actor: str, action: str, target: str, data: dict[str, Any]
) -> str:
    return _digest(prev_hash, (seq, at.isoformat(), actor, action, target, data))


def _digest(prev_hash: str, fields: tuple[int, str, str, str, str, dict[str, Any]]) -> str:
    """``fields``: seq, at (ISO 8601 text), actor, action, target, data."""
    seq, at, actor, action, target, data = fields
    body = {"seq": seq, "at": at, "actor": actor, "action": action, "target": target, "data": data}
    return hashlib.sha256(prev_hash.encode("ascii") + canonical(body)).hexdigest()


Event = tuple[str, str, str, dict[str, Any]]  # action, actor, target, data
# seq, at, actor, action, target, data, prev_hash, hash: the columns of an AuditEvent, in this order.
_COLUMNS = ("seq", "at", "actor", "action", "target", "data", "prev_hash", "hash")
_Row = tuple[int, datetime, str, str, str, dict[str, Any], str, str]


def audit_record(action: str, *, actor: str, target: str, **data: Any) -> AuditEvent:
    """Append one event. Never pass key material, passphrases or PEM private keys in ``data``."""
    return audit_record_many([(action, actor, target, data)])[0]


def audit_record_many(events: list[Event]) -> list[AuditEvent]:
    """Append events (action, actor, target, data) in order, under one lock of the chain head."""
    # No savepoint: an audit append that fails must fail the state change it records.
    with transaction.atomic(savepoint=False):
        head = _locked_head()
        rows = [AuditEvent(**dict(zip(_COLUMNS, row, strict=True))) for row in _chain(head, events)]
        if len(rows) == 1:
            rows[0].save()
        else:
            AuditEvent.objects.bulk_create(rows)
        head.save(update_fields=["seq", "hash"])
    return rows


def audit_append_many(events: list[Event]) -> None:
    """``audit_record_many`` for the signer's batches: the same rows and chain, written in one
    multi-row INSERT without making a model instance per event."""
    if not events:
        return
    with transaction.atomic(savepoint=False):
        head = _locked_head()
        insert_rows(AuditEvent, _COLUMNS, _chain(head, events))
        head.save(update_fields=["seq", "hash"])


def _locked_head() -> AuditHead:
    try:
        return AuditHead.objects.select_for_update().get(pk=1)
    except AuditHead.DoesNotExist:  # made by a migration; only a flushed test database lacks it
        head, _ = AuditHead.objects.select_for_update().get_or_create(pk=1)
        return head


def _chain(head: AuditHead, events: list[Event]) -> list[_Row]:
    """The rows that extend the chain from ``head`` (which is moved to the last of them)."""
    at = timezone.now()
    at_text = at.isoformat()
    rows: list[_Row] = []
    seq, prev = head.seq, head.hash
    for action, actor, target, data in events:
        seq += 1
        digest = _digest(prev, (seq, at_text, actor, action, target, data))
        rows.append((seq, at, actor, action, target, data, prev, digest))
        prev = digest
    head.seq, head.hash = seq, prev
    return rows


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    count: int
    first_bad_seq: int | None
    problem: str


def audit_verify(batch: int = 2000) -> VerifyResult:
    """Walk the chain in sequence order; name the first sequence number that does not check out.

    Detects an altered event (its hash), a deleted or inserted event (a gap, or a prev_hash that
    no longer matches), reordered events, and a truncated tail (the head row is ahead of the log).
    """
    expected_seq, prev, count = 1, GENESIS, 0
    while True:
        rows = list(AuditEvent.objects.filter(seq__gte=expected_seq).order_by("seq")[:batch])
        if not rows:
            break
        for row in rows:
            if row.seq != expected_seq:
                return VerifyResult(False, count, expected_seq, f"event {expected_seq} is missing (next is {row.seq})")
            if row.prev_hash != prev:
                return VerifyResult(False, count, row.seq, "the link to the previous event is broken")
            digest = event_hash(
                prev, seq=row.seq, at=row.at, actor=row.actor, action=row.action, target=row.target, data=row.data
            )
            if digest != row.hash:
                return VerifyResult(False, count, row.seq, "the event's contents do not match its hash")
            prev, expected_seq, count = row.hash, expected_seq + 1, count + 1
    head = AuditHead.objects.filter(pk=1).first()
    if head is not None and (head.seq != count or head.hash != prev):
        return VerifyResult(False, count, count + 1, f"the log ends at {count} but the chain head says {head.seq}")
    return VerifyResult(True, count, None, "")
