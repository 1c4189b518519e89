"""The hash-chained audit log: audit_record, audit_verify and its command (T31, T32)."""

from __future__ import annotations

import io
import threading
from typing import Any

import pytest
from django.core.management import call_command
from django.db import connection, transaction

from authority.audit import GENESIS, audit_record, audit_verify, event_hash
from authority.models import AuditEvent, AuditHead
from enrollment.services import EnrollmentError, peer_approve, peer_register
from tests.conftest import fixture_bytes

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("audit_tamperable")]  # they play the attacker

EVENTS = 20
CONTENT_FIELDS = ("at", "actor", "action", "target", "data", "prev_hash", "hash")


def _chain(count: int = EVENTS) -> None:
    for n in range(1, count + 1):
        audit_record("test.event", actor=f"user:u{n % 3}", target=f"thing:{n}", n=n, note=f"event number {n}")


def _verify_fails_at(seq: int) -> str:
    result = audit_verify()
    assert not result.ok
    assert result.first_bad_seq == seq, result.problem
    return result.problem


def _shift_up_from(seq: int) -> None:
    """Make room at ``seq``: renumber seq..end one up, highest first (seq is unique)."""
    for row_seq in AuditEvent.objects.filter(seq__gte=seq).order_by("-seq").values_list("seq", flat=True):
        AuditEvent.objects.filter(seq=row_seq).update(seq=row_seq + 1)


# --- the intact chain --------------------------------------------------------------------------


def test_it_verifies_an_intact_chain() -> None:
    _chain()

    result = audit_verify()

    assert result.ok
    assert result.count == EVENTS
    assert result.first_bad_seq is None
    assert list(AuditEvent.objects.values_list("seq", flat=True)) == list(range(1, EVENTS + 1))
    head = AuditHead.objects.get(pk=1)
    assert head.seq == EVENTS
    assert head.hash == AuditEvent.objects.get(seq=EVENTS).hash


def test_it_verifies_an_empty_log() -> None:
    result = audit_verify()

    assert result.ok
    assert result.count == 0


def test_it_links_each_event_to_the_previous_one() -> None:
    _chain(3)

    first, second, third = AuditEvent.objects.order_by("seq")
    assert first.prev_hash == GENESIS
    assert second.prev_hash == first.hash
    assert third.prev_hash == second.hash
    assert first.hash == event_hash(
        GENESIS, seq=1, at=first.at, actor=first.actor, action=first.action, target=first.target, data=first.data
    )


def test_it_verifies_across_batches() -> None:
    _chain()

    assert audit_verify(batch=3).ok
    AuditEvent.objects.filter(seq=16).update(target="thing:999")
    result = audit_verify(batch=3)
    assert result.first_bad_seq == 16


# --- each tamper class names the first bad seq -----------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("data", {"n": 7, "note": "nothing happened"}),
        ("actor", "user:someone-else"),
        ("action", "test.harmless"),
        ("target", "thing:70"),
        ("at", "2001-01-01T00:00:00Z"),
    ],
)
def test_it_detects_an_altered_event(field: str, value: Any) -> None:
    _chain()

    AuditEvent.objects.filter(seq=7).update(**{field: value})

    assert "do not match its hash" in _verify_fails_at(7)


def test_it_detects_a_deleted_middle_event() -> None:
    _chain()

    AuditEvent.objects.filter(seq=10).delete()

    assert "event 10 is missing" in _verify_fails_at(10)


@pytest.mark.parametrize(("a", "b"), [(5, 12), (5, 6)])
def test_it_detects_two_swapped_events(a: int, b: int) -> None:
    _chain()
    first = AuditEvent.objects.filter(seq=a).values(*CONTENT_FIELDS).get()
    second = AuditEvent.objects.filter(seq=b).values(*CONTENT_FIELDS).get()

    AuditEvent.objects.filter(seq=a).update(**second)
    AuditEvent.objects.filter(seq=b).update(**first)

    _verify_fails_at(a)


def test_it_detects_a_forged_event_inserted_in_the_middle() -> None:
    _chain()
    _shift_up_from(10)
    previous = AuditEvent.objects.get(seq=9)

    AuditEvent.objects.create(
        seq=10, at=previous.at, actor="user:admin", action="certificate.revoked", target="certificate:abc",
        data={}, prev_hash=previous.hash, hash="f" * 64,
    )  # fmt: skip

    _verify_fails_at(10)


def test_it_detects_a_forged_event_even_when_its_own_hash_is_right() -> None:
    """A forger who knows the hash function can make the new row check out; the next row then does not."""
    _chain()
    _shift_up_from(10)
    previous = AuditEvent.objects.get(seq=9)
    forged = {"seq": 10, "at": previous.at, "actor": "user:admin", "action": "x", "target": "y", "data": {}}

    AuditEvent.objects.create(**forged, prev_hash=previous.hash, hash=event_hash(previous.hash, **forged))

    _verify_fails_at(11)


def test_it_detects_a_truncated_tail_through_the_head() -> None:
    _chain()

    AuditEvent.objects.filter(seq__gt=EVENTS - 3).delete()

    problem = _verify_fails_at(EVENTS - 2)
    assert f"ends at {EVENTS - 3} but the chain head says {EVENTS}" in problem


def test_it_detects_a_rewritten_tail_when_the_head_was_left_alone() -> None:
    """Re-hashing every later event makes the rows consistent with each other, not with the head."""
    _chain()
    AuditEvent.objects.filter(seq=15).update(data={"n": 15, "note": "rewritten"})
    prev = AuditEvent.objects.get(seq=14).hash
    for row in AuditEvent.objects.filter(seq__gte=15).order_by("seq"):
        digest = event_hash(
            prev, seq=row.seq, at=row.at, actor=row.actor, action=row.action, target=row.target, data=row.data
        )
        AuditEvent.objects.filter(pk=row.pk).update(prev_hash=prev, hash=digest)
        prev = digest

    _verify_fails_at(EVENTS + 1)


# --- the command ------------------------------------------------------------------------------------


def test_the_command_prints_ok_and_the_count() -> None:
    _chain()
    out, err = io.StringIO(), io.StringIO()

    call_command("audit_verify", stdout=out, stderr=err)

    assert out.getvalue().strip() == f"OK {EVENTS} events"
    assert err.getvalue() == ""


def test_the_command_exits_1_and_names_the_first_bad_seq() -> None:
    _chain()
    AuditEvent.objects.filter(seq=7).update(data={"n": 7, "note": "edited"})
    out, err = io.StringIO(), io.StringIO()

    with pytest.raises(SystemExit) as exited:
        call_command("audit_verify", stdout=out, stderr=err)

    assert exited.value.code == 1
    assert "FAILED at sequence 7" in err.getvalue()
    assert "6 events verified" in err.getvalue()
    assert "OK" not in out.getvalue()


# --- T32: security events survive the business rollback ----------------------------------------------


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_it_keeps_committed_events_through_a_later_rollback(owner: Any) -> None:
    audit_record("test.before", actor="test", target="thing:1")

    # An event written inside the business transaction goes with it: atomic with the change.
    def doomed_change() -> None:
        with transaction.atomic():
            audit_record("test.doomed", actor="test", target="thing:2")
            raise RuntimeError("the business change failed")

    with pytest.raises(RuntimeError, match="the business change failed"):
        doomed_change()
    assert not AuditEvent.objects.filter(action="test.doomed").exists()

    # A refused self-approval is a security event: it is committed although the call fails.
    peer = peer_register(
        owner=owner, fqdn="client.example.com", kind="client", networks=[], address=None,
        csr_pem=fixture_bytes("client-rsa2048.csr").decode(), actor=owner,
    )  # fmt: skip
    with pytest.raises(EnrollmentError) as refused:
        peer_approve(peer_id=peer.pk, approver=owner, allow_self_approval=False, actor=owner)
    assert refused.value.status == 403

    connection.close()  # read back through a fresh connection: only committed rows remain
    refusal = AuditEvent.objects.get(action="peer.approve_refused")
    assert refusal.actor == "user:alice"
    assert refusal.target == f"peer:{peer.pk}"
    assert refusal.data == {"reason": "self-approval"}
    assert list(AuditEvent.objects.values_list("action", flat=True)) == [
        "test.before",
        "peer.registered",
        "peer.approve_refused",
    ]
    assert list(AuditEvent.objects.values_list("seq", flat=True)) == [1, 2, 3]
    result = audit_verify()
    assert result.ok
    assert result.count == 3


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_concurrent_appends_form_one_contiguous_chain() -> None:
    if connection.vendor != "postgresql":
        pytest.skip("real concurrent writers need PostgreSQL; SQLite's in-memory test database serialises them")
    threads, per_thread = 4, 25
    errors: list[BaseException] = []
    start = threading.Barrier(threads)

    def append(worker: int) -> None:
        try:
            start.wait()
            for n in range(per_thread):
                audit_record("test.concurrent", actor=f"worker:{worker}", target=f"thing:{n}")
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            connection.close()

    workers = [threading.Thread(target=append, args=(w,)) for w in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()

    assert errors == []
    assert list(AuditEvent.objects.values_list("seq", flat=True)) == list(range(1, threads * per_thread + 1))
    result = audit_verify()
    assert result.ok
    assert result.count == threads * per_thread
