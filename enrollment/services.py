"""The write path for peers and the site policy: one function per state change, each audited."""

from __future__ import annotations

import ipaddress
import logging
import secrets
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.contrib.auth.models import User
from django.core.mail import send_mail
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from ca_portal.authority.audit import audit_record
from ca_portal.authority.roles import CA_ADMIN
from ca_portal.authority.services import Actor, AuthorityError, actor_name, certificate_request_create
from ca_portal.pki.csr import vet_csr
from ca_portal.pki.errors import PkiError
from ca_portal.pki.keys import encrypt_private_key, generate_private_key
from ca_portal.pki.names import validate_fqdn
from ca_portal.pki.profiles import MAX_LEAF_DAYS
from enrollment.models import Peer, PortalKey, SitePolicy

log = logging.getLogger(__name__)

MAX_NETWORKS = 64
MAX_REASON = 500


class EnrollmentError(Exception):
    """Refused input or action. ``field`` names the input at fault; ``status`` is the HTTP status."""

    def __init__(self, message: str, *, field: str = "__all__", status: int = 400) -> None:
        super().__init__(message)
        self.field = field
        self.status = status


# --- site policy -----------------------------------------------------------------------------


def policy_get() -> SitePolicy:
    policy, _ = SitePolicy.objects.get_or_create(pk=1)
    return policy


def policy_update(
    *, allowed_domains: list[str], default_validity_days: int, allow_self_approval: bool, actor: User
) -> SitePolicy:
    domains = []
    for raw in allowed_domains:
        domain = raw.strip().lower().lstrip(".")
        if not domain:
            continue
        try:
            validate_fqdn(domain)
        except PkiError as exc:
            raise EnrollmentError(f"{raw[:60]!r}: {exc}", field="allowed_domains") from None
        domains.append(domain)
    if not 1 <= default_validity_days <= MAX_LEAF_DAYS:
        raise EnrollmentError(f"the validity must be between 1 and {MAX_LEAF_DAYS} days", field="default_validity_days")
    with transaction.atomic():
        policy = SitePolicy.objects.select_for_update().get_or_create(pk=1)[0]
        before = {
            "allowed_domains": policy.allowed_domains,
            "default_validity_days": policy.default_validity_days,
            "allow_self_approval": policy.allow_self_approval,
        }
        policy.allowed_domains = sorted(set(domains))
        policy.default_validity_days = default_validity_days
        policy.allow_self_approval = allow_self_approval
        policy.updated_by = actor
        policy.save()
        after = {
            "allowed_domains": policy.allowed_domains,
            "default_validity_days": policy.default_validity_days,
            "allow_self_approval": policy.allow_self_approval,
        }
        audit_record("policy.updated", actor=actor_name(actor), target="policy", before=before, after=after)
    return policy


def self_approval_allowed(policy: SitePolicy) -> bool:
    """Only a one-admin site may approve its own requests, and only when the policy says so."""
    if not policy.allow_self_approval:
        return False
    admins = User.objects.filter(Q(is_superuser=True) | Q(groups__name=CA_ADMIN), is_active=True).distinct()
    return admins.count() == 1


# --- registration ----------------------------------------------------------------------------


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
    passphrase = "" if csr_pem else secrets.token_urlsafe(18)
    with transaction.atomic():
        if Peer.objects.select_for_update().filter(fqdn=fqdn).exclude(decision=Peer.Decision.REJECTED).exists():
            raise EnrollmentError(f"{fqdn} is already registered", field="fqdn", status=409)
        peer = Peer.objects.create(
            owner=owner,
            fqdn=fqdn,
            kind=kind,
            networks=clean_networks,
            address=clean_address,
            csr_pem=csr_pem or "",
            key_source=Peer.KeySource.CSR if csr_pem else Peer.KeySource.PORTAL,
        )
        if not csr_pem:
            PortalKey.objects.create(peer=peer, handoff_passphrase=passphrase, queued_at=timezone.now())
            transaction.on_commit(lambda: enqueue("enrollment.peer_key_generate", peer.pk))
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


def enqueue(task_name: str, object_id: int) -> bool:
    """Queue a task by name with an id. A broker that is down is not the caller's problem: the
    row is committed and the sweeper queues it again (SECURITY.md T17)."""
    from ca_portal.celery import app

    try:
        app.send_task(task_name, args=(object_id,), retry=False)
    except Exception:  # kombu's OperationalError and friends: never a 500 for the user
        log.warning("broker unavailable; %s(%s) will be queued by the sweeper", task_name, object_id)
        return False
    return True


def peer_key_generate(*, peer_id: int) -> bool:
    """Signer side: make the peer's RSA-3072 key and a CSR for it; keep the key only encrypted.

    Safe to call twice: a peer whose key exists is left alone. Returns True if a key was made.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.x509.oid import NameOID

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


# --- decisions -------------------------------------------------------------------------------


def peer_approve(
    *,
    peer_id: int,
    approver: User,
    allow_self_approval: bool | None = None,
    actor: Actor,
    validity_days: int | None = None,
    enqueue: bool = True,
) -> Peer:
    """pending -> approved, and the signing order to the signer. Exactly one caller wins a race.

    ``allow_self_approval`` None means: as the site policy says.
    """
    policy = policy_get()
    if allow_self_approval is None:
        allow_self_approval = self_approval_allowed(policy)
    refused = False
    with transaction.atomic():
        peer = Peer.objects.select_for_update(of=("self",)).select_related("owner").get(pk=peer_id)
        if peer.decision != Peer.Decision.PENDING:
            raise EnrollmentError(f"{peer.fqdn} is {peer.status}, not pending", status=409)
        if not peer.key_ready:
            raise EnrollmentError(f"the key for {peer.fqdn} is still being made; try again in a moment", status=409)
        if peer.owner_id == approver.pk and not allow_self_approval:
            refused = True
        else:
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
                    validity_days=validity_days if validity_days is not None else policy.default_validity_days,
                    requested_by=peer.owner,
                    approved_by=approver,
                    actor=actor,
                    enqueue=enqueue,
                    announce_issued=True,
                )
            except (PkiError, AuthorityError) as exc:
                raise EnrollmentError(str(exc), status=409) from None
            Peer.objects.filter(pk=peer.pk).update(certificate_request=request)
            audit_record("peer.approved", actor=actor_name(actor), target=f"peer:{peer.pk}", request=request.pk)
            transaction.on_commit(lambda: _notify_later(peer.pk, "approved"))
    if refused:
        # Recorded in its own transaction: a refused attempt is a security event (T29, T32).
        audit_record("peer.approve_refused", actor=actor_name(actor), target=f"peer:{peer_id}", reason="self-approval")
        raise EnrollmentError("you cannot approve a request you filed yourself", status=403)
    return peer_fresh(peer.pk)


def peer_reject(*, peer_id: int, approver: User, reason: str, actor: Actor) -> Peer:
    """pending -> rejected with a reason the owner sees. The FQDN becomes free to register again."""
    reason = (reason or "").strip()
    if not reason:
        raise EnrollmentError("say why the request is rejected; the owner sees it", field="reason")
    if len(reason) > MAX_REASON:
        raise EnrollmentError(f"the reason is limited to {MAX_REASON} characters", field="reason")
    with transaction.atomic():
        peer = Peer.objects.select_for_update().get(pk=peer_id)
        claimed = Peer.objects.filter(pk=peer.pk, decision=Peer.Decision.PENDING).update(
            decision=Peer.Decision.REJECTED, decided_by=approver, decided_at=timezone.now(), decision_reason=reason
        )
        if claimed != 1:
            raise EnrollmentError(f"{peer.fqdn} is {peer.status}, not pending", status=409)
        PortalKey.objects.filter(peer=peer, destroyed_at__isnull=True).update(
            encrypted_pem="", handoff_passphrase="", destroyed_at=timezone.now()
        )
        audit_record("peer.rejected", actor=actor_name(actor), target=f"peer:{peer.pk}", reason=reason)
        transaction.on_commit(lambda: _notify_later(peer.pk, "rejected"))
    return peer_fresh(peer.pk)


def peer_fresh(peer_id: int) -> Peer:
    """The peer as committed, with what pages and the API show of it, in one query."""
    return Peer.objects.select_related("owner", "decided_by", "certificate_request__certificate").get(pk=peer_id)


# --- notifications ---------------------------------------------------------------------------

_SUBJECTS = {
    "approved": "{fqdn}: approved, the certificate is being signed",
    "rejected": "{fqdn}: request rejected",
    "issued": "{fqdn}: your certificate is ready",
}


def _notify_later(peer_id: int, event: str) -> None:
    from enrollment.tasks import peer_notify_task

    try:
        peer_notify_task.apply_async((peer_id, event), retry=False)
    except Exception:
        log.warning("broker unavailable; notification %s for peer %s not sent", event, peer_id)


def peer_notify(*, peer_id: int, event: str) -> bool:
    """Mail the owner about a decision or the issued certificate. Returns False when there is no address."""
    peer = Peer.objects.select_related("owner", "certificate_request").get(pk=peer_id)
    if event not in _SUBJECTS or not peer.owner.email:
        return False
    link = f"{settings.SITE_URL}/peers/{peer.pk}/"
    lines = [f"Hello {peer.owner.get_username()},", ""]
    if event == "approved":
        lines.append(
            f"A CA admin approved {peer.fqdn}. The certificate is being signed; you get another mail when it is ready."
        )
    elif event == "rejected":
        lines.append(f"A CA admin rejected the request for {peer.fqdn}: {peer.decision_reason}")
        lines.append("You can register it again with the problem fixed.")
    else:
        lines.append(f"The certificate for {peer.fqdn} is issued. Download it from the peer's page.")
    lines += ["", link, "", "-- ca_portal"]
    send_mail(_SUBJECTS[event].format(fqdn=peer.fqdn), "\n".join(lines), None, [peer.owner.email])
    return True


def peer_issued_notify(*, request_id: int) -> bool:
    """Called after the signer issued a request's certificate: tell the peer's owner."""
    peer = Peer.objects.filter(certificate_request_id=request_id).first()
    if peer is None:  # a request made by sign_csr's path for no portal peer, or by tests
        return False
    _bundles_sweep_soon()  # the new peer's bundle, and the gateway's (its remote_id list grew)
    return peer_notify(peer_id=peer.pk, event="issued")


def _bundles_sweep_soon() -> None:
    """Wake the bundles sweeper by task name (the bundles app builds on this one, not the reverse)."""
    from ca_portal.celery import app

    try:
        app.send_task("bundles.bundles_render_stale", retry=False)
    except Exception:
        log.warning("broker unavailable; the periodic sweeper will render the bundles")


def portal_keys_requeue_stale(*, older_than: timedelta) -> int:
    """Queue key generation again for portal keys still not made (lost message, broker was down)."""
    cutoff = timezone.now() - older_than
    stale = PortalKey.objects.filter(encrypted_pem="", destroyed_at__isnull=True, queued_at__lt=cutoff)
    queued = 0
    for pk, peer_id, queued_at in list(stale.values_list("pk", "peer_id", "queued_at")[:1000]):
        if PortalKey.objects.filter(pk=pk, queued_at=queued_at).update(queued_at=timezone.now()) == 1:
            queued += enqueue("enrollment.peer_key_generate", peer_id)
    return queued
