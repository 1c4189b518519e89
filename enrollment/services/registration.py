"""Registration: a new peer waiting for approval, with its owner's CSR or a key the signer makes."""

from __future__ import annotations

import ipaddress
import secrets
from dataclasses import dataclass

from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone

from authority.audit import audit_record
from authority.services import Actor, actor_name
from core.tasks import send_by_name
from enrollment import task_names
from enrollment.models import Peer, PortalKey
from enrollment.services.errors import EnrollmentError
from pki.csr import vet_csr
from pki.errors import PkiError
from pki.names import validate_fqdn

MAX_NETWORKS = 64


def parse_networks(values: list[str]) -> list[str]:
    if len(values) > MAX_NETWORKS:
        raise EnrollmentError(f"at most {MAX_NETWORKS} networks are accepted", field="networks")
    networks = []
    for value in values:
        try:
            text = str(value).strip()
            if "%" in text:  # an IPv6 zone (fe80::%eth0/64) is local to one host and must not reach the configs
                raise ValueError(text)
            network = ipaddress.ip_network(text, strict=True)
        except ValueError:
            raise EnrollmentError(
                f"{str(value)[:60]!r} is not a network in CIDR form like 10.10.10.0/24 (host bits must be zero)",
                field="networks",
            ) from None
        networks.append(network)
    return [str(n) for n in sorted(set(networks), key=lambda n: (n.version, n))]


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
    clean_networks = parse_networks(networks)
    clean_address = None
    if address:
        try:
            if "%" in address:  # an IPv6 zone (fe80::1%eth0), see parse_networks
                raise ValueError(address)
            clean_address = str(ipaddress.ip_address(address.strip()))
        except ValueError:
            raise EnrollmentError(f"{address[:60]!r} is not an IP address", field="address") from None
    if kind == Peer.Kind.SERVER and clean_address is None:
        raise EnrollmentError("a VPN gateway needs its public address", field="address")
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
    ``portal_keys_requeue_stale`` queues it again (SECURITY.md T17).
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
