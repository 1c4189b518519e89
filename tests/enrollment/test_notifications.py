"""Mail to peer owners: approved, rejected and issued, each naming the FQDN and linking the peer's page."""

from __future__ import annotations

from typing import Any

import pytest
from django.core import mail
from django.test import Client

from authority import services as authority_services
from authority.models import CertificateAuthority, CertificateRequest
from authority.services import certificate_issue
from enrollment.models import Peer
from enrollment.services import (
    peer_approve,
    peer_notify,
    peer_register,
    peer_reject,
    peers_issued_notify,
)
from tests.conftest import fixture_bytes, login

pytestmark = pytest.mark.django_db

FQDN = "client.example.com"
CSR = fixture_bytes("client-rsa2048.csr").decode()
NOCN_CSR = fixture_bytes("client-nocn.csr").decode()  # no CN: fits any FQDN


def _peer(owner: Any) -> Peer:
    return peer_register(owner=owner, fqdn=FQDN, kind="client", networks=[], address=None, csr_pem=CSR, actor=owner)


@pytest.mark.parametrize(
    ("event", "subject", "says"),
    [
        ("approved", f"{FQDN}: approved, the certificate is being signed", f"A CA admin approved {FQDN}."),
        ("rejected", f"{FQDN}: request rejected", f"A CA admin rejected the request for {FQDN}:"),
        ("issued", f"{FQDN}: your certificate is ready", f"The certificate for {FQDN} is issued."),
    ],
)
def test_it_mails_the_owner(owner: Any, event: str, subject: str, says: str) -> None:
    peer = _peer(owner)

    assert peer_notify(peer_id=peer.pk, event=event) is True

    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert message.subject == subject
    assert FQDN in message.subject
    assert message.to == ["alice@example.org"]
    assert message.from_email  # DEFAULT_FROM_EMAIL
    assert says in message.body
    assert message.body.startswith("Hello alice,\n")
    assert f"https://ca.example.org/peers/{peer.pk}/" in message.body
    assert "PRIVATE KEY" not in message.body


def test_a_rejection_mail_carries_the_reason(owner: Any, admin: Any) -> None:
    peer = _peer(owner)
    peer_reject(peer_id=peer.pk, approver=admin, reason="use a name under corp.example.net", actor=admin)

    peer_notify(peer_id=peer.pk, event="rejected")

    body = mail.outbox[0].body
    assert f"A CA admin rejected the request for {FQDN}: use a name under corp.example.net" in body
    assert "register it again" in body


def test_no_mail_goes_to_a_user_without_an_address(owner: Any) -> None:
    owner.email = ""
    owner.save()
    peer = _peer(owner)

    for event in ("approved", "rejected", "issued"):
        assert peer_notify(peer_id=peer.pk, event=event) is False

    assert mail.outbox == []


def test_an_unknown_event_sends_nothing(owner: Any) -> None:
    peer = _peer(owner)

    assert peer_notify(peer_id=peer.pk, event="deleted") is False
    assert mail.outbox == []


def test_it_mails_the_issued_notice_by_request_id(ca: CertificateAuthority, owner: Any, admin: Any) -> None:
    peer = peer_approve(peer_id=_peer(owner).pk, approver=admin, actor=admin, enqueue=False)
    assert peer.certificate_request is not None

    assert peers_issued_notify(request_ids=[peer.certificate_request.pk]) == 1

    assert [m.subject for m in mail.outbox] == [f"{FQDN}: your certificate is ready"]


def test_an_issued_notice_for_a_request_without_a_peer_sends_nothing(ca: CertificateAuthority) -> None:
    request = authority_services.certificate_request_create(
        fqdn=FQDN, kind="client", csr_pem=CSR, validity_days=30, requested_by=None, approved_by=None,
        actor="test", enqueue=False,
    )  # fmt: skip

    assert peers_issued_notify(request_ids=[request.pk]) == 0
    assert peers_issued_notify(request_ids=[999999]) == 0
    assert mail.outbox == []


# --- the decisions queue their notices after commit -------------------------------------------------


@pytest.fixture
def notices(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, ...]]:
    """Run the notification tasks in-process instead of sending them to the broker."""
    from ca_portal.celery import app

    sent: list[tuple[Any, ...]] = []

    def send_task(name: str, args: tuple[Any, ...], **kwargs: Any) -> None:
        sent.append((name, *args))
        if name == "enrollment.peer_notify":
            peer_notify(peer_id=args[0], event=args[1])
        if name == "enrollment.peers_issued_notify":
            peers_issued_notify(request_ids=args[0])

    monkeypatch.setattr(app, "send_task", send_task)
    monkeypatch.setattr(authority_services, "signer_wakeup", lambda **kw: True)
    return sent


def test_approve_reject_and_issue_each_mail_the_owner_once(
    client: Client,
    ca: CertificateAuthority,
    owner: Any,
    admin: Any,
    notices: list[tuple[Any, ...]],
    django_capture_on_commit_callbacks: Any,
) -> None:
    approved = _peer(owner)
    login(client, admin)
    with django_capture_on_commit_callbacks(execute=True):
        client.post(f"/peers/approvals/{approved.pk}/approve/")
    request_id = CertificateRequest.objects.get().pk
    with django_capture_on_commit_callbacks(execute=True):
        certificate_issue(request_id=request_id)
    rejected = peer_register(
        owner=owner, fqdn="other.example.com", kind="client", networks=[], address=None,
        csr_pem=fixture_bytes("client-nocn.csr").decode(), actor=owner,
    )  # fmt: skip
    with django_capture_on_commit_callbacks(execute=True):
        client.post(f"/peers/approvals/{rejected.pk}/reject/", {"reason": "duplicate laptop"})

    assert notices == [
        ("enrollment.peer_notify", approved.pk, "approved"),
        ("enrollment.peers_issued_notify", [request_id]),  # one message per signer batch
        ("bundles.bundles_render_stale",),  # the issuance also wakes the bundles sweeper
        ("enrollment.peer_notify", rejected.pk, "rejected"),
    ]
    assert [m.subject for m in mail.outbox] == [
        f"{FQDN}: approved, the certificate is being signed",
        f"{FQDN}: your certificate is ready",
        "other.example.com: request rejected",
    ]
    assert "duplicate laptop" in mail.outbox[2].body


def test_a_refused_approval_mails_nobody(
    client: Client,
    ca: CertificateAuthority,
    admin: Any,
    notices: list[tuple[Any, ...]],
    django_capture_on_commit_callbacks: Any,
) -> None:
    own = _peer(admin)
    login(client, admin)

    with django_capture_on_commit_callbacks(execute=True):
        client.post(f"/peers/approvals/{own.pk}/approve/")

    assert notices == []
    assert mail.outbox == []


def test_a_broker_that_is_down_loses_the_notice_but_not_the_decision(
    ca: CertificateAuthority,
    owner: Any,
    admin: Any,
    monkeypatch: pytest.MonkeyPatch,
    broker_down: None,
    django_capture_on_commit_callbacks: Any,
) -> None:
    monkeypatch.setattr(authority_services, "signer_wakeup", lambda **kw: True)
    peer = _peer(owner)

    with django_capture_on_commit_callbacks(execute=True):
        approved = peer_approve(peer_id=peer.pk, approver=admin, actor=admin)

    assert approved.status == "approved"
    assert mail.outbox == []


def test_a_signer_batch_sends_one_notice_that_mails_every_owner(
    ca: CertificateAuthority,
    owner: Any,
    other_user: Any,
    admin: Any,
    notices: list[tuple[Any, ...]],
    django_capture_on_commit_callbacks: Any,
) -> None:
    peers = [
        peer_register(owner=user, fqdn=f"host{i}.example.com", kind="client", networks=[], address=None,
                      csr_pem=NOCN_CSR, actor=user)
        for i, user in enumerate([owner, other_user, owner])
    ]  # fmt: skip
    for peer in peers:
        peer_approve(peer_id=peer.pk, approver=admin, actor=admin, enqueue=False)
    request_ids = sorted(CertificateRequest.objects.values_list("pk", flat=True))
    mail.outbox.clear()

    with django_capture_on_commit_callbacks(execute=True):
        assert authority_services.certificates_issue_pending() == 3

    assert notices == [
        ("enrollment.peers_issued_notify", request_ids),  # one message for the whole batch
        ("bundles.bundles_render_stale",),  # one wake-up of the bundles sweeper
    ]
    assert sorted((m.to[0], m.subject) for m in mail.outbox) == [
        (owner.email, "host0.example.com: your certificate is ready"),
        (owner.email, "host2.example.com: your certificate is ready"),
        (other_user.email, "host1.example.com: your certificate is ready"),
    ]


def test_a_mail_that_fails_is_queued_again_alone(
    ca: CertificateAuthority,
    owner: Any,
    admin: Any,
    monkeypatch: pytest.MonkeyPatch,
    sent_tasks: list[tuple[str, tuple[Any, ...], dict[str, Any]]],
) -> None:
    from enrollment.services import notifications

    peers = [
        peer_register(owner=owner, fqdn=f"host{i}.example.com", kind="client", networks=[], address=None,
                      csr_pem=NOCN_CSR, actor=owner)
        for i in range(3)
    ]  # fmt: skip
    request_ids = [
        peer_approve(peer_id=p.pk, approver=admin, actor=admin, enqueue=False).certificate_request_id for p in peers
    ]
    real_mail = notifications.send_mail

    def flaky_mail(subject: str, *args: Any, **kwargs: Any) -> int:
        if subject.startswith("host1."):
            raise ConnectionRefusedError("SMTP server down")
        return int(real_mail(subject, *args, **kwargs))

    monkeypatch.setattr(notifications, "send_mail", flaky_mail)
    mail.outbox.clear()

    assert peers_issued_notify(request_ids=[r for r in request_ids if r is not None]) == 2

    assert sorted(m.subject for m in mail.outbox) == [
        "host0.example.com: your certificate is ready",
        "host2.example.com: your certificate is ready",
    ]
    assert [(name, args) for name, args, _options in sent_tasks] == [
        ("enrollment.peer_notify", (peers[1].pk, "issued"))
    ]
