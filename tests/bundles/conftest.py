"""Helpers for bundle tests; the `gateway` and `client_peer` fixtures live in tests/conftest.py."""

from __future__ import annotations

from typing import Any

from authority.services import certificate_issue
from bundles import services
from bundles.models import Bundle
from enrollment.models import Peer
from enrollment.services import peer_approve, peer_key_generate, peer_register_full
from tests.conftest import fixture_bytes

ANY_CSR = fixture_bytes("client-nocn.csr").decode()  # no CN, no SAN: fits any FQDN


def issue(
    owner: Any,
    approver: Any,
    fqdn: str,
    *,
    kind: str = "client",
    networks: tuple[str, ...] = (),
    address: str | None = None,
    portal_key: bool = False,
) -> tuple[Peer, str]:
    """Register, approve and sign a peer through the real services. Returns it and its key passphrase."""
    registration = peer_register_full(
        owner=owner,
        fqdn=fqdn,
        kind=kind,
        networks=list(networks),
        address=address,
        csr_pem=None if portal_key else ANY_CSR,
        actor=owner,
    )
    peer = registration.peer
    if portal_key:
        assert peer_key_generate(peer_id=peer.pk)
    approved = peer_approve(peer_id=peer.pk, approver=approver, actor=approver, enqueue=False)
    assert approved.certificate_request is not None
    assert certificate_issue(request_id=approved.certificate_request.pk) is not None
    approved.refresh_from_db()
    assert approved.status == "issued", approved.status
    return approved, registration.key_passphrase


def render(peer: Peer) -> Bundle:
    outcome = services.bundle_render(peer_id=peer.pk)
    assert outcome.bundle is not None, outcome.reason
    return outcome.bundle
