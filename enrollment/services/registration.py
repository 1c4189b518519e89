"""Registration: a new peer waiting for approval, with its owner's CSR or a key the signer makes."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone

from authority.audit import audit_record
from authority.services import Actor, actor_name
from core.roles import is_ca_admin
from core.tasks import send_by_name
from enrollment import task_names
from enrollment.models import Peer, PortalKey
from enrollment.networks import network_overlaps
from enrollment.services.errors import EnrollmentError
from pki import networks as networks_rules
from pki.csr import vet_csr
from pki.errors import PkiError
from pki.names import validate_fqdn

MAX_NETWORKS = networks_rules.MAX_NETWORKS


def parse_networks(values: list[str], *, kind: str = "client") -> list[str]:
    """The networks behind a peer, canonical and in address order, or a refusal on field "networks".

    The rules are ``pki.networks``: the ones the renderers apply, so whatever is accepted here renders.
    A VPN gateway (kind server) needs at least one.
    """
    try:
        return networks_rules.clean_networks(values, required=kind == Peer.Kind.SERVER)
    except networks_rules.NetworkRejected as exc:
        raise EnrollmentError(str(exc), field="networks") from None


def parse_address(value: str | None) -> str | None:
    """A peer's public address, canonical (None when empty), or a refusal on field "address" (``pki.networks``)."""
    try:
        return networks_rules.clean_peer_address(value)
    except networks_rules.NetworkRejected as exc:
        raise EnrollmentError(str(exc), field="address") from None


def networks_overlap_refuse(*, owner: User, fqdn: str, networks: list[str]) -> None:
    """Refuse networks that overlap what a live peer (the VPN gateway included) already holds (T35).

    For CA admins the registration goes on: the overlap is shown on the approval page, and approving
    it needs an acknowledgement (``peer_approve``). A user is told which of their networks conflicts
    and, unless it is the gateway's (every bundle names those) or their own peer's, nothing about the
    other peer: its FQDN or its network would tell them about another user's site.
    """
    if not networks or is_ca_admin(owner):
        return
    found = network_overlaps(networks, fqdn=fqdn)
    if not found:
        return
    overlap = found[0]
    holder = overlap.owner
    if holder.kind == Peer.Kind.SERVER:
        message = f"{overlap.network} overlaps the VPN gateway's network {overlap.other}: it is not behind this peer"
    elif holder.owner_id == owner.pk:
        message = f"{overlap.network} overlaps {overlap.other}, already behind your peer {holder.fqdn}"
    else:
        message = (
            f"{overlap.network} overlaps a network already in use on this VPN; "
            "if it really is behind this peer, ask a CA admin"
        )
    raise EnrollmentError(message, field="networks")


@dataclass(frozen=True)
class Registration:
    peer: Peer
    key_passphrase: str  # only for portal-made keys: shown to the owner once, never stored by the web tier


def peer_register(
    *,
    owner: User,
    fqdn: str,
    kind: str,
    networks: list[str],
    address: str | None,
    csr_pem: str | None,
    actor: Actor,
) -> Peer:
    """Record a peer that brings its own CSR. See ``peer_register_full`` for portal-made keys."""
    if not csr_pem:
        raise EnrollmentError("a certificate request is required", field="csr")
    return peer_register_full(
        owner=owner, fqdn=fqdn, kind=kind, networks=networks, address=address, csr_pem=csr_pem, actor=actor
    ).peer


def peer_register_full(
    *,
    owner: User,
    fqdn: str,
    kind: str,
    networks: list[str],
    address: str | None,
    csr_pem: str | None,
    actor: Actor,
) -> Registration:
    """Record a peer waiting for approval. Everything is validated before anything is written.

    Without a CSR the signer makes an RSA-3072 key for the peer (never the web process); the
    returned passphrase protects that key and must be shown to the owner now: it is not kept.
    """
    clean_networks, clean_address = _peer_input_clean(
        fqdn=fqdn, kind=kind, networks=networks, address=address, csr_pem=csr_pem
    )
    with transaction.atomic():
        live = Peer.objects.select_for_update().filter(fqdn=fqdn, retired_at__isnull=True)
        if live.exclude(decision=Peer.Decision.REJECTED).exists():
            raise EnrollmentError(f"{fqdn} is already registered", field="fqdn", status=409)
        networks_overlap_refuse(owner=owner, fqdn=fqdn, networks=clean_networks)
        peer, passphrase = _peer_create(
            owner=owner, fqdn=fqdn, kind=kind, networks=clean_networks, address=clean_address, csr_pem=csr_pem
        )
        audit_record(
            "peer.registered",
            actor=actor_name(actor),
            target=f"peer:{peer.pk}",
            fqdn=fqdn,
            kind=kind,
            networks=clean_networks,
            address=clean_address,
            owner=owner.get_username(),
            key_source=peer.key_source,
        )
    return Registration(peer=peer, key_passphrase=passphrase)


def _peer_input_clean(
    *, fqdn: str, kind: str, networks: list[str], address: str | None, csr_pem: str | None
) -> tuple[list[str], str | None]:
    """Validate what a new peer (registered or renewal) is made of; returns its networks and address, clean."""
    try:
        validate_fqdn(fqdn)
    except PkiError as exc:
        raise EnrollmentError(str(exc), field="fqdn") from None
    if kind not in Peer.Kind.values:
        raise EnrollmentError("the kind must be client or server", field="kind")
    clean_address = parse_address(address)
    if kind == Peer.Kind.SERVER and clean_address is None:
        raise EnrollmentError("a VPN gateway needs its public address", field="address")
    clean_networks = parse_networks(networks, kind=kind)
    if csr_pem:
        try:
            vet_csr(csr_pem, fqdn=fqdn)
        except PkiError as exc:
            raise EnrollmentError(str(exc), field="csr") from None
    return clean_networks, clean_address


def _peer_create(
    *,
    owner: User,
    fqdn: str,
    kind: str,
    networks: list[str],
    address: str | None,
    csr_pem: str | None,
    renews: Peer | None = None,
) -> tuple[Peer, str]:
    """Inside the caller's transaction: the peer row and, without a CSR, the portal key the signer makes.

    Returns the peer and the passphrase of a portal-made key ("" with a CSR). The key is queued
    after commit; a broker that is down is not the caller's problem: the row is committed and
    ``portal_keys_requeue_stale`` queues it again (docs/security.md T17).
    """
    passphrase = "" if csr_pem else secrets.token_urlsafe(18)
    peer = Peer.objects.create(
        owner=owner,
        fqdn=fqdn,
        kind=kind,
        networks=networks,
        address=address,
        csr_pem=csr_pem or "",
        key_source=Peer.KeySource.CSR if csr_pem else Peer.KeySource.PORTAL,
        renews=renews,
    )
    if not csr_pem:
        PortalKey.objects.create(peer=peer, handoff_passphrase=passphrase, queued_at=timezone.now())
        transaction.on_commit(lambda: send_by_name(task_names.PEER_KEY_GENERATE, peer.pk))
    return peer, passphrase
