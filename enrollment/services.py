"""Peer registration and approval: the write path for peers (one function per state change)."""

from __future__ import annotations

import ipaddress

from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone

from ca_portal.authority.audit import audit_record
from ca_portal.authority.services import Actor, AuthorityError, actor_name, certificate_request_create
from ca_portal.pki.csr import vet_csr
from ca_portal.pki.errors import PkiError
from ca_portal.pki.names import validate_fqdn
from enrollment.models import Peer

MAX_NETWORKS = 64


class EnrollmentError(Exception):
    """Refused input or action. ``field`` names the input at fault, if any."""

    def __init__(self, message: str, *, field: str = "__all__", status: int = 400) -> None:
        super().__init__(message)
        self.field = field
        self.status = status


def parse_networks(values: list[str]) -> list[str]:
    if len(values) > MAX_NETWORKS:
        raise EnrollmentError(f"at most {MAX_NETWORKS} networks are accepted", field="networks")
    networks = []
    for value in values:
        try:
            network = ipaddress.ip_network(str(value).strip(), strict=True)
        except ValueError:
            raise EnrollmentError(
                f"{str(value)[:60]!r} is not a network in CIDR form like 10.10.10.0/24 (host bits must be zero)",
                field="networks",
            ) from None
        networks.append(str(network))
    return sorted(set(networks), key=lambda n: (ipaddress.ip_network(n).version, ipaddress.ip_network(n)))


def peer_register(
    *,
    owner: User,
    fqdn: str,
    kind: str,
    networks: list[str],
    address: str | None,
    csr_pem: str,
    actor: Actor,
) -> Peer:
    """Record a peer waiting for approval. Everything is validated before anything is written."""
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
            clean_address = str(ipaddress.ip_address(address.strip()))
        except ValueError:
            raise EnrollmentError(f"{address[:60]!r} is not an IP address", field="address") from None
    if kind == Peer.Kind.SERVER and clean_address is None:
        raise EnrollmentError("a VPN gateway needs its public address", field="address")
    try:
        vet_csr(csr_pem, fqdn=fqdn)
    except PkiError as exc:
        raise EnrollmentError(str(exc), field="csr") from None
    with transaction.atomic():
        if Peer.objects.select_for_update().filter(fqdn=fqdn).exclude(decision=Peer.Decision.REJECTED).exists():
            raise EnrollmentError(f"{fqdn} is already registered", field="fqdn", status=409)
        peer = Peer.objects.create(
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
        )
    return peer


def peer_approve(
    *,
    peer_id: int,
    approver: User,
    allow_self_approval: bool,
    actor: Actor,
    validity_days: int | None = None,
    enqueue: bool = True,
) -> Peer:
    """pending -> approved, and the signing order to the signer. Exactly one caller wins a race."""
    with transaction.atomic():
        peer = Peer.objects.select_for_update().get(pk=peer_id)
        if peer.decision != Peer.Decision.PENDING:
            raise EnrollmentError(f"{peer.fqdn} is {peer.status}, not pending", status=409)
        if peer.owner_id == approver.pk and not allow_self_approval:
            refused = True
        else:
            refused = False
            claimed = Peer.objects.filter(pk=peer.pk, decision=Peer.Decision.PENDING).update(
                decision=Peer.Decision.APPROVED, decided_by=approver, decided_at=timezone.now()
            )
            if claimed != 1:
                raise EnrollmentError(f"{peer.fqdn} was decided by someone else meanwhile", status=409)
            try:
                request = certificate_request_create(
                    fqdn=peer.fqdn,
                    kind=peer.kind,
                    csr_pem=peer.csr_pem,
                    validity_days=validity_days,
                    requested_by=peer.owner,
                    approved_by=approver,
                    actor=actor,
                    enqueue=enqueue,
                )
            except (PkiError, AuthorityError) as exc:
                raise EnrollmentError(str(exc), status=409) from None
            Peer.objects.filter(pk=peer.pk).update(certificate_request=request)
            audit_record("peer.approved", actor=actor_name(actor), target=f"peer:{peer.pk}", request=request.pk)
    if refused:
        # Recorded in its own transaction: a refused attempt is a security event (T29, T32).
        audit_record("peer.approve_refused", actor=actor_name(actor), target=f"peer:{peer_id}", reason="self-approval")
        raise EnrollmentError("you cannot approve a request you filed yourself", status=403)
    peer.refresh_from_db()
    return peer
