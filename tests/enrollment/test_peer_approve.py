"""enrollment.services.peer_approve: pending -> approved plus the signing order, once (T16, T29)."""

from __future__ import annotations

import re
import threading
from typing import Any

import pytest
from django.db import connection

from authority import task_names
from authority.models import AuditEvent, CertificateAuthority, CertificateRequest
from enrollment.models import Peer
from enrollment.services import EnrollmentError, peer_approve, peer_register
from tests.conftest import fixture_bytes

pytestmark = pytest.mark.django_db

FQDN = "client.example.com"
CSR = fixture_bytes("client-rsa2048.csr").decode()


def _register(owner: Any, **overrides: Any) -> Peer:
    options: dict[str, Any] = {
        "owner": owner, "fqdn": FQDN, "kind": "client", "networks": [], "address": None, "csr_pem": CSR, "actor": owner,
    }  # fmt: skip
    options.update(overrides)
    return peer_register(**options)


def _approve(peer: Peer, approver: Any, **overrides: Any) -> Peer:
    options: dict[str, Any] = {
        "peer_id": peer.pk, "approver": approver, "allow_self_approval": False, "actor": approver, "enqueue": False,
    }  # fmt: skip
    options.update(overrides)
    return peer_approve(**options)


def _actions() -> list[str]:
    """The business events, in order (the persona fixtures' role grants are events too, but not ours)."""
    events = AuditEvent.objects.exclude(action__startswith="role.").order_by("seq")
    return list(events.values_list("action", flat=True))


def test_it_approves_and_creates_the_signing_request(ca: CertificateAuthority, owner: Any, admin: Any) -> None:
    peer = _register(owner)

    approved = _approve(peer, admin)

    assert approved.decision == Peer.Decision.APPROVED
    assert approved.status == "approved"
    assert approved.decided_by == admin
    assert approved.decided_at is not None
    request = approved.certificate_request
    assert request is not None
    assert request.status == CertificateRequest.Status.PENDING
    assert request.ca == ca
    assert (request.fqdn, request.kind, request.csr_pem) == (FQDN, "client", CSR)
    assert request.requested_by == owner
    assert request.approved_by == admin
    assert request.validity_days == 365


def test_it_audits_the_approval(ca: CertificateAuthority, owner: Any, admin: Any) -> None:
    peer = _register(owner)

    approved = _approve(peer, admin)

    assert _actions() == ["ca.imported", "peer.registered", "certificate.requested", "peer.approved"]
    event = AuditEvent.objects.get(action="peer.approved")
    assert event.actor == "user:carol"
    assert event.target == f"peer:{peer.pk}"
    assert approved.certificate_request is not None
    assert event.data == {"request": approved.certificate_request.pk}


def test_it_passes_the_validity_on(ca: CertificateAuthority, owner: Any, admin: Any) -> None:
    approved = _approve(_register(owner), admin, validity_days=30)

    assert approved.certificate_request is not None
    assert approved.certificate_request.validity_days == 30


def test_it_wakes_the_signer_only_after_commit_with_no_payload(
    ca: CertificateAuthority,
    owner: Any,
    admin: Any,
    sent_tasks: list[tuple[str, tuple[Any, ...], dict[str, Any]]],
    django_capture_on_commit_callbacks: Any,
) -> None:
    sent = sent_tasks
    peer = _register(owner)

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        approved = _approve(peer, admin, enqueue=True)
    assert sent == []  # nothing leaves before the commit
    for callback in callbacks:
        callback()

    assert approved.certificate_request is not None
    # the signer's message carries nothing: no id, no key, no PEM; the owner's mail goes by peer id
    assert sent == [
        (task_names.CERTIFICATES_ISSUE_PENDING, (), {"retry": False}),
        ("enrollment.peer_notify", (peer.pk, "approved"), {"retry": False}),
    ]


def test_it_approves_even_when_the_broker_is_down(
    ca: CertificateAuthority,
    owner: Any,
    admin: Any,
    broker_down: None,
    django_capture_on_commit_callbacks: Any,
) -> None:
    peer = _register(owner)

    with django_capture_on_commit_callbacks(execute=True):
        approved = _approve(peer, admin, enqueue=True)

    assert approved.status == "approved"
    assert CertificateRequest.objects.get().status == CertificateRequest.Status.PENDING  # the sweeper sends it


def test_it_refuses_self_approval_with_403_and_audits_it(ca: CertificateAuthority, admin: Any) -> None:
    peer = _register(admin)

    with pytest.raises(EnrollmentError, match="you cannot approve a request you filed yourself") as refused:
        _approve(peer, admin)

    assert refused.value.status == 403
    peer.refresh_from_db()
    assert peer.decision == Peer.Decision.PENDING
    assert peer.decided_by is None
    assert not CertificateRequest.objects.exists()
    assert _actions()[-1] == "peer.approve_refused"
    event = AuditEvent.objects.get(action="peer.approve_refused")
    assert (event.actor, event.target) == ("user:carol", f"peer:{peer.pk}")


def test_it_allows_self_approval_when_the_site_policy_does(ca: CertificateAuthority, admin: Any) -> None:
    peer = _register(admin)

    approved = _approve(peer, admin, allow_self_approval=True)

    assert approved.status == "approved"
    assert approved.certificate_request is not None
    assert approved.certificate_request.requested_by == approved.certificate_request.approved_by == admin


def test_it_refuses_to_approve_twice_with_409(
    ca: CertificateAuthority, owner: Any, admin: Any, second_admin: Any
) -> None:
    peer = _register(owner)
    _approve(peer, admin)
    events = AuditEvent.objects.count()

    with pytest.raises(EnrollmentError, match=re.escape(f"{FQDN} is approved, not pending")) as refused:
        _approve(peer, second_admin)

    assert refused.value.status == 409
    assert CertificateRequest.objects.count() == 1
    assert AuditEvent.objects.count() == events
    peer.refresh_from_db()
    assert peer.decided_by == admin


def test_it_refuses_to_approve_a_rejected_peer(ca: CertificateAuthority, owner: Any, admin: Any) -> None:
    peer = _register(owner)
    Peer.objects.filter(pk=peer.pk).update(decision=Peer.Decision.REJECTED)

    with pytest.raises(EnrollmentError, match="is rejected, not pending") as refused:
        _approve(peer, admin)

    assert refused.value.status == 409
    assert not CertificateRequest.objects.exists()


def test_it_keeps_the_peer_pending_when_there_is_no_ca(owner: Any, admin: Any) -> None:
    peer = _register(owner)

    with pytest.raises(EnrollmentError, match="there is no CA yet") as refused:
        _approve(peer, admin)

    assert refused.value.status == 409
    peer.refresh_from_db()
    assert peer.decision == Peer.Decision.PENDING
    assert peer.decided_by is None
    assert not CertificateRequest.objects.exists()
    assert _actions() == ["peer.registered"]


def test_it_keeps_the_peer_pending_when_the_validity_is_refused(
    ca: CertificateAuthority, owner: Any, admin: Any
) -> None:
    peer = _register(owner)

    with pytest.raises(EnrollmentError, match="between 1 and 825 days") as refused:
        _approve(peer, admin, validity_days=1000)

    assert refused.value.status == 409
    peer.refresh_from_db()
    assert peer.status == "pending"
    assert not CertificateRequest.objects.exists()


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_two_concurrent_approvals_make_one_transition(
    ca: CertificateAuthority, owner: Any, admin: Any, second_admin: Any
) -> None:
    peer = _register(owner)
    outcomes: list[object] = []

    if connection.vendor == "postgresql":
        # Real concurrency: two connections race for the row lock.
        start = threading.Barrier(2)

        def approve(approver: Any) -> None:
            try:
                start.wait()
                outcomes.append(_approve(peer, approver))
            except EnrollmentError as exc:
                outcomes.append(exc)
            finally:
                connection.close()

        threads = [threading.Thread(target=approve, args=(who,)) for who in (admin, second_admin)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    else:
        # SQLite's in-memory test database cannot hold two writers; the second call comes after the first.
        for approver in (admin, second_admin):
            try:
                outcomes.append(_approve(peer, approver))
            except EnrollmentError as exc:
                outcomes.append(exc)

    winners = [o for o in outcomes if isinstance(o, Peer)]
    losers = [o for o in outcomes if isinstance(o, EnrollmentError)]
    assert len(winners) == 1
    assert len(losers) == 1
    assert losers[0].status == 409
    assert CertificateRequest.objects.count() == 1
    assert _actions().count("peer.approved") == 1
    assert _actions().count("certificate.requested") == 1
    peer.refresh_from_db()
    assert peer.decided_by == winners[0].decided_by
