"""Reads: the networks live peers hold, and where a peer's networks overlap them (docs/security.md T35).

The rules of what a network is live in ``pki.networks``; this module only finds who holds what.
``enrollment.selectors`` re-exports these names.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from django.db.models import QuerySet

from authority.models import CertificateRequest
from enrollment.models import Peer
from pki.networks import Overlap, overlaps


@dataclass(frozen=True)
class NetworkHolder:
    """A live peer that holds networks, as an overlap names it (to CA admins; users see less)."""

    peer_id: int
    fqdn: str
    kind: str
    owner_id: int
    pending: bool

    def __str__(self) -> str:
        what = f"the VPN gateway {self.fqdn}" if self.kind == Peer.Kind.SERVER else self.fqdn
        return f"{what} (peer {self.peer_id}{', pending' if self.pending else ''})"


NetworksInUse = list[tuple[NetworkHolder, list[str]]]


def live_peers() -> QuerySet[Peer]:
    """Peers whose networks are taken: not rejected, retired, revoked or failed (pending ones included,
    so two requests for one network meet at the second registration or, at the latest, at approval)."""
    return (
        Peer.objects.filter(retired_at__isnull=True)
        .exclude(decision=Peer.Decision.REJECTED)
        .exclude(certificate_request__status=CertificateRequest.Status.FAILED)
        .exclude(certificate_request__certificate__revoked_at__isnull=False)
    )


def networks_in_use() -> NetworksInUse:
    """Every live peer with networks behind it (the VPN gateway's are its protected networks), by id.

    One query; a page that checks many peers (the approval queue) reads this once and passes it on.
    """
    rows = (
        live_peers()
        .exclude(networks=[])
        .order_by("pk")
        .values_list("pk", "fqdn", "kind", "owner_id", "decision", "networks")
    )
    return [
        (NetworkHolder(pk, fqdn, kind, owner_id, decision == Peer.Decision.PENDING), list(networks))
        for pk, fqdn, kind, owner_id, decision, networks in rows
    ]


def network_overlaps(
    networks: Sequence[str], *, fqdn: str, in_use: NetworksInUse | None = None
) -> list[Overlap[NetworkHolder]]:
    """Where ``networks`` (of a peer named ``fqdn``) overlap a network another live peer holds.

    Peers with the same FQDN are one peer over time (a renewal and the peer it renews share their
    networks, and the gateway's files name one of them), so they never conflict.
    """
    if not networks:
        return []
    taken = in_use if in_use is not None else networks_in_use()
    return overlaps(networks, [(holder, nets) for holder, nets in taken if holder.fqdn != fqdn])
