"""Reads: is this registration or renewal a resend (a reload, Back) of one the user already made?

A reload of the page that answered a registration sends the same form again; the pages then lead
to the user's own peer instead of refusing a duplicate (the passphrase of a portal-made key is
never kept by the web tier, so it cannot be shown again).
"""

from __future__ import annotations

import ipaddress

from django.contrib.auth.models import User

from enrollment.models import Peer
from enrollment.selectors import live_renewal


def registration_resent(
    owner: User, *, fqdn: str, kind: str, networks: list[str], address: str | None, csr_pem: str | None
) -> Peer | None:
    """The owner's own pending peer that exactly this registration made, or None.

    A reload of the page that answered a registration sends the same form again. When the live
    peer with that FQDN is the sender's own, still waiting, and made of the same input (kind,
    networks, address, key source and CSR), the page leads to that peer instead of refusing a
    duplicate. ``networks`` must be the service's clean form (``parse_networks``).
    """
    peer = (
        Peer.objects.filter(owner_id=owner.pk, fqdn=fqdn, retired_at__isnull=True, decision=Peer.Decision.PENDING)
        .order_by("-pk")
        .first()
    )
    if peer is None or peer.kind != kind or list(peer.networks) != list(networks):
        return None
    if (peer.address or None) != _ip_or_none(address):
        return None
    if csr_pem:
        return peer if peer.key_source == Peer.KeySource.CSR and peer.csr_pem.strip() == csr_pem.strip() else None
    return peer if peer.key_source == Peer.KeySource.PORTAL else None


def _ip_or_none(address: str | None) -> str | None:
    try:
        return str(ipaddress.ip_address((address or "").strip())) if address else None
    except ValueError:
        return None


def renewal_resent(peer: Peer, *, csr_pem: str | None) -> Peer | None:
    """The live renewal of ``peer`` that exactly this renewal request made (a reload), or None.

    Only a renewal that has not been decided by a person yet counts, with the same key source and CSR.
    """
    renewal = live_renewal(peer)
    if renewal is None or renewal.owner_id != peer.owner_id or renewal.decided_by_id is not None:
        return None
    if csr_pem:
        same = renewal.key_source == Peer.KeySource.CSR and renewal.csr_pem.strip() == csr_pem.strip()
    else:
        same = renewal.key_source == Peer.KeySource.PORTAL
    return renewal if same else None
