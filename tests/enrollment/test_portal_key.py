"""Keys the portal makes for a peer: made in the signer, kept only encrypted, queued again when lost (T17, T22)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from django.utils import timezone

from authority.models import AuditEvent, CertificateAuthority, CertificateRequest
from authority.services import certificate_issue
from core.tasks import send_by_name
from enrollment.models import Peer, PortalKey
from enrollment.services import (
    EnrollmentError,
    Registration,
    peer_approve,
    peer_key_generate,
    peer_register_full,
    peer_reject,
    portal_keys,
    portal_keys_requeue_stale,
)
from pki.csr import vet_csr
from pki.errors import KeyRejected
from pki.keys import load_private_key

pytestmark = pytest.mark.django_db

FQDN = "laptop.example.com"


def _queued(sent: list[tuple[str, tuple[Any, ...], dict[str, Any]]]) -> list[tuple[str, tuple[Any, ...]]]:
    """What was sent to the broker: task names and arguments."""
    return [(name, args) for name, args, _options in sent]


def _register(owner: Any, fqdn: str = FQDN) -> Registration:
    return peer_register_full(
        owner=owner, fqdn=fqdn, kind="client", networks=[], address=None, csr_pem=None, actor=owner
    )


def _spki(key: Any) -> bytes:
    return bytes(key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo))


def test_registration_without_a_csr_waits_for_the_signer(owner: Any) -> None:
    registration = _register(owner)

    peer = registration.peer
    assert peer.key_source == Peer.KeySource.PORTAL
    assert (peer.csr_pem, peer.key_ready, peer.progress) == ("", False, "making-key")
    portal_key = PortalKey.objects.get(peer=peer)
    assert portal_key.handoff_passphrase == registration.key_passphrase
    assert len(registration.key_passphrase) >= 24
    assert (portal_key.encrypted_pem, portal_key.made_at, portal_key.destroyed_at) == ("", None, None)
    assert registration.key_passphrase not in str(AuditEvent.objects.get().data)


def test_registration_queues_only_the_peer_id_after_commit(
    owner: Any, sent_tasks: list[tuple[str, tuple[Any, ...], dict[str, Any]]], django_capture_on_commit_callbacks: Any
) -> None:
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        registration = _register(owner)
    assert sent_tasks == []
    for callback in callbacks:
        callback()

    assert _queued(sent_tasks) == [("enrollment.peer_key_generate", (registration.peer.pk,))]


def test_registration_with_a_broker_that_is_down_still_records_the_peer(
    owner: Any, monkeypatch: pytest.MonkeyPatch, django_capture_on_commit_callbacks: Any
) -> None:
    from ca_portal.celery import app

    def down(*args: Any, **kwargs: Any) -> None:
        raise ConnectionRefusedError("broker down")

    monkeypatch.setattr(app, "send_task", down)

    with django_capture_on_commit_callbacks(execute=True):
        registration = _register(owner)

    assert Peer.objects.get() == registration.peer
    assert send_by_name("enrollment.peer_key_generate", registration.peer.pk) is False


def test_the_signer_makes_an_encrypted_rsa_3072_key_and_its_csr(owner: Any) -> None:
    registration = _register(owner)
    peer = registration.peer

    assert peer_key_generate(peer_id=peer.pk) is True

    portal_key = PortalKey.objects.get(peer=peer)
    assert portal_key.encrypted_pem.startswith("-----BEGIN ENCRYPTED PRIVATE KEY-----\n")
    assert "BEGIN PRIVATE KEY" not in portal_key.encrypted_pem
    assert portal_key.handoff_passphrase == ""
    assert portal_key.made_at is not None
    key = load_private_key(portal_key.encrypted_pem.encode(), registration.key_passphrase.encode())
    assert isinstance(key, rsa.RSAPrivateKey)
    assert key.key_size == 3072
    with pytest.raises(KeyRejected):
        load_private_key(portal_key.encrypted_pem.encode(), b"not the passphrase")

    peer.refresh_from_db()
    assert peer.key_ready
    assert peer.progress == "pending"
    csr = x509.load_pem_x509_csr(peer.csr_pem.encode())
    assert csr.is_signature_valid
    assert csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == FQDN
    assert _spki(csr.public_key()) == _spki(key.public_key())
    assert vet_csr(peer.csr_pem, fqdn=FQDN).key_type == "rsa-3072"
    event = AuditEvent.objects.get(action="peer.key_generated")
    assert (event.actor, event.target, event.data) == ("signer", f"peer:{peer.pk}", {"key_type": "rsa-3072"})

    # A second delivery of the task changes nothing.
    before = (portal_key.encrypted_pem, peer.csr_pem)
    assert peer_key_generate(peer_id=peer.pk) is False
    portal_key.refresh_from_db()
    peer.refresh_from_db()
    assert (portal_key.encrypted_pem, peer.csr_pem) == before
    assert AuditEvent.objects.filter(action="peer.key_generated").count() == 1


def test_a_portal_made_key_is_approved_and_issued_for_its_public_key(
    ca: CertificateAuthority, owner: Any, admin: Any
) -> None:
    registration = _register(owner)
    peer = registration.peer
    with pytest.raises(EnrollmentError, match="still being made") as early:
        peer_approve(peer_id=peer.pk, approver=admin, actor=admin, enqueue=False)
    assert early.value.status == 409
    assert not CertificateRequest.objects.exists()
    peer.refresh_from_db()
    assert peer.decision == Peer.Decision.PENDING

    peer_key_generate(peer_id=peer.pk)
    approved = peer_approve(peer_id=peer.pk, approver=admin, actor=admin, enqueue=False)
    assert approved.certificate_request is not None
    certificate = certificate_issue(request_id=approved.certificate_request.pk)

    assert certificate is not None
    key = load_private_key(
        PortalKey.objects.get(peer=peer).encrypted_pem.encode(), registration.key_passphrase.encode()
    )
    issued = x509.load_der_x509_certificate(bytes(certificate.der))
    assert _spki(issued.public_key()) == _spki(key.public_key())


def test_no_key_is_made_for_a_rejected_peer(owner: Any, admin: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    peer = _register(owner).peer
    peer_reject(peer_id=peer.pk, approver=admin, reason="not needed", actor=admin)
    portal_key = PortalKey.objects.get(peer=peer)
    assert (portal_key.handoff_passphrase, portal_key.encrypted_pem) == ("", "")
    assert portal_key.destroyed_at is not None

    def no_keys(*args: Any) -> None:
        raise AssertionError("a key was generated")

    monkeypatch.setattr(portal_keys, "generate_private_key", no_keys)

    assert peer_key_generate(peer_id=peer.pk) is False
    peer.refresh_from_db()
    assert peer.csr_pem == ""
    assert not AuditEvent.objects.filter(action="peer.key_generated").exists()


def test_no_key_is_made_for_a_rejected_peer_whose_hand_off_was_not_wiped(
    owner: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    peer = _register(owner).peer
    Peer.objects.filter(pk=peer.pk).update(decision=Peer.Decision.REJECTED)
    monkeypatch.setattr(portal_keys, "generate_private_key", lambda *a: pytest.fail("a key was generated"))

    assert peer_key_generate(peer_id=peer.pk) is False
    assert PortalKey.objects.get(peer=peer).encrypted_pem == ""


def test_no_key_is_made_again_after_it_was_destroyed(owner: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    peer = _register(owner).peer
    PortalKey.objects.filter(peer=peer).update(destroyed_at=timezone.now(), handoff_passphrase="")
    monkeypatch.setattr(portal_keys, "generate_private_key", lambda *a: pytest.fail("a key was generated"))

    assert peer_key_generate(peer_id=peer.pk) is False


def test_rejecting_destroys_a_made_key(owner: Any, admin: Any) -> None:
    peer = _register(owner).peer
    PortalKey.objects.filter(peer=peer).update(
        encrypted_pem="-----BEGIN ENCRYPTED PRIVATE KEY-----\nstand-in\n", handoff_passphrase="", made_at=timezone.now()
    )

    peer_reject(peer_id=peer.pk, approver=admin, reason="duplicate", actor=admin)

    portal_key = PortalKey.objects.get(peer=peer)
    assert portal_key.encrypted_pem == ""
    assert portal_key.destroyed_at is not None


# --- the sweeper ---------------------------------------------------------------------------------


def test_the_sweeper_queues_only_stale_keys_not_yet_made(
    owner: Any, sent_tasks: list[tuple[str, tuple[Any, ...], dict[str, Any]]]
) -> None:
    long_ago = timezone.now() - timedelta(minutes=10)
    stale = _register(owner, "stale.example.com").peer
    fresh = _register(owner, "fresh.example.com").peer
    made = _register(owner, "made.example.com").peer
    destroyed = _register(owner, "destroyed.example.com").peer
    PortalKey.objects.exclude(peer=fresh).update(queued_at=long_ago)
    PortalKey.objects.filter(peer=made).update(encrypted_pem="-----BEGIN ENCRYPTED PRIVATE KEY-----\n...")
    PortalKey.objects.filter(peer=destroyed).update(destroyed_at=timezone.now(), handoff_passphrase="")

    assert portal_keys_requeue_stale(older_than=timedelta(seconds=60)) == 1

    assert _queued(sent_tasks) == [("enrollment.peer_key_generate", (stale.pk,))]
    assert PortalKey.objects.get(peer=stale).queued_at > long_ago
    assert PortalKey.objects.get(peer=made).queued_at == long_ago
    # The claim moved queued_at forward: the next round leaves it alone until it is stale again.
    assert portal_keys_requeue_stale(older_than=timedelta(seconds=60)) == 0
    assert len(sent_tasks) == 1
    assert portal_keys_requeue_stale(older_than=timedelta(seconds=-1)) == 2  # stale and fresh, both unmade
    assert sorted(args for _name, args in _queued(sent_tasks)[1:]) == sorted([(stale.pk,), (fresh.pk,)])


def test_the_sweeper_counts_only_what_reached_the_broker(owner: Any, broker_down: None) -> None:
    _register(owner)
    PortalKey.objects.update(queued_at=timezone.now() - timedelta(minutes=10))

    assert portal_keys_requeue_stale(older_than=timedelta(seconds=60)) == 0
    assert PortalKey.objects.get().queued_at > timezone.now() - timedelta(minutes=1)  # claimed; retried next round
