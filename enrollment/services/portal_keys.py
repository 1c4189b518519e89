"""Portal-made keys: the signer makes a peer's key and CSR, and a sweeper queues what was lost."""

from __future__ import annotations

from datetime import timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID
from django.db import transaction
from django.utils import timezone

from authority.audit import audit_record
from core.tasks import send_by_name
from enrollment import task_names
from enrollment.models import Peer, PortalKey
from enrollment.services.renewal import renewal_auto_approve
from pki.keys import encrypt_private_key, generate_private_key


def peer_key_generate(*, peer_id: int) -> bool:
    """Signer side: make the peer's RSA-3072 key and a CSR for it; keep the key only encrypted.

    Safe to call twice: a peer whose key exists is left alone. Returns True if a key was made.
    A renewal is then approved at once if the site policy allows it (``renewal_auto_approve``).
    """
    made = _portal_key_make(peer_id=peer_id)
    if Peer.objects.filter(pk=peer_id, renews__isnull=False, decision=Peer.Decision.PENDING).exists():
        renewal_auto_approve(peer_id=peer_id)
    return made


def _portal_key_make(*, peer_id: int) -> bool:
    with transaction.atomic():
        portal_key = PortalKey.objects.select_for_update().select_related("peer").get(peer_id=peer_id)
        peer = portal_key.peer
        if portal_key.encrypted_pem or portal_key.destroyed_at or peer.decision == Peer.Decision.REJECTED:
            return False
        key = generate_private_key("rsa-3072")
        csr = (
            x509.CertificateSigningRequestBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, peer.fqdn)]))
            .sign(key, hashes.SHA256())
        )
        portal_key.encrypted_pem = encrypt_private_key(key, portal_key.handoff_passphrase.encode()).decode("ascii")
        portal_key.handoff_passphrase = ""
        portal_key.made_at = timezone.now()
        portal_key.save(update_fields=["encrypted_pem", "handoff_passphrase", "made_at"])
        peer.csr_pem = csr.public_bytes(serialization.Encoding.PEM).decode("ascii")
        peer.save(update_fields=["csr_pem"])
        audit_record("peer.key_generated", actor="signer", target=f"peer:{peer.pk}", key_type="rsa-3072")
    return True


def portal_keys_requeue_stale(*, older_than: timedelta) -> int:
    """Queue key generation again for portal keys still not made (lost message, broker was down).

    Returns how many reached the broker; a claimed key whose message did not is tried next round.
    """
    cutoff = timezone.now() - older_than
    stale = PortalKey.objects.filter(encrypted_pem="", destroyed_at__isnull=True, queued_at__lt=cutoff)
    queued = 0
    for pk, peer_id, queued_at in list(stale.values_list("pk", "peer_id", "queued_at")[:1000]):
        if PortalKey.objects.filter(pk=pk, queued_at=queued_at).update(queued_at=timezone.now()) == 1:
            queued += send_by_name(task_names.PEER_KEY_GENERATE, peer_id)
    return queued
