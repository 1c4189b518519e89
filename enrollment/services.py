"""The write path for peers and the site policy: one function per state change, each audited."""

from __future__ import annotations

import ipaddress
import logging
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth.models import User
from django.core.mail import send_mail
from django.db import transaction
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from authority.audit import audit_record
from authority.models import Certificate, CertificateRequest
from authority.services import Actor, AuthorityError, actor_name, certificate_request_create
from core.errors import ServiceError
from core.roles import CA_ADMIN
from core.tasks import send_by_name
from enrollment import task_names
from enrollment.models import Peer, PortalKey, RenewalReminder, SitePolicy
from pki.csr import vet_csr
from pki.errors import PkiError
from pki.est import EstCsr
from pki.keys import encrypt_private_key, generate_private_key
from pki.names import validate_fqdn
from pki.profiles import MAX_LEAF_DAYS

log = logging.getLogger(__name__)

MAX_NETWORKS = 64
MAX_REASON = 500


class EnrollmentError(ServiceError):
    """Refused input or action. ``field`` names the input at fault; ``status`` is the HTTP status."""


# --- site policy -----------------------------------------------------------------------------


def policy_get() -> SitePolicy:
    policy, _ = SitePolicy.objects.get_or_create(pk=1)
    return policy


def policy_update(
    *,
    allowed_domains: list[str],
    default_validity_days: int,
    allow_self_approval: bool,
    actor: User,
    auto_approve_renewals: bool | None = None,
) -> SitePolicy:
    """Save the site policy. ``auto_approve_renewals`` None leaves that setting as it is (and out of the audit)."""
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
        before: dict[str, object] = {
            "allowed_domains": policy.allowed_domains,
            "default_validity_days": policy.default_validity_days,
            "allow_self_approval": policy.allow_self_approval,
        }
        if auto_approve_renewals is not None:
            before["auto_approve_renewals"] = policy.auto_approve_renewals
            policy.auto_approve_renewals = auto_approve_renewals
        policy.allowed_domains = sorted(set(domains))
        policy.default_validity_days = default_validity_days
        policy.allow_self_approval = allow_self_approval
        policy.updated_by = actor
        policy.save()
        after: dict[str, object] = {
            "allowed_domains": policy.allowed_domains,
            "default_validity_days": policy.default_validity_days,
            "allow_self_approval": policy.allow_self_approval,
        }
        if auto_approve_renewals is not None:
            after["auto_approve_renewals"] = policy.auto_approve_renewals
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

    Returns the peer and the passphrase of a portal-made key ("" with a CSR).
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
        transaction.on_commit(lambda: enqueue(task_names.PEER_KEY_GENERATE, peer.pk))
    return peer, passphrase


def enqueue(task_name: str, object_id: int) -> bool:
    """Queue a task by name with an id. A broker that is down is not the caller's problem: the
    row is committed and the sweeper queues it again (SECURITY.md T17)."""
    return send_by_name(task_name, object_id)


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

    ``allow_self_approval`` None means: as the site policy says. Raises ``Peer.DoesNotExist`` for
    an unknown id. Returns the peer as this transaction committed it (no re-read).
    """
    policy = policy_get()
    refused = False
    with transaction.atomic():
        peer = _pending_locked(peer_id)
        if peer.owner_id == approver.pk and not (
            self_approval_allowed(policy) if allow_self_approval is None else allow_self_approval
        ):
            refused = True
        else:
            _approve_locked(
                peer, approver=approver, actor=actor, validity_days=validity_days, enqueue=enqueue, policy=policy
            )
    if refused:
        # Recorded in its own transaction: a refused attempt is a security event (T29, T32).
        audit_record("peer.approve_refused", actor=actor_name(actor), target=f"peer:{peer_id}", reason="self-approval")
        raise EnrollmentError("you cannot approve a request you filed yourself", status=403)
    return peer


def _pending_locked(peer_id: int) -> Peer:
    """The peer, locked, if it can be approved now (pending, key made); else 409."""
    peer = Peer.objects.select_for_update(of=("self",)).select_related("owner").get(pk=peer_id)
    if peer.decision != Peer.Decision.PENDING:
        raise EnrollmentError(f"{peer.fqdn} is {peer.status}, not pending", status=409)
    if not peer.key_ready:
        raise EnrollmentError(f"the key for {peer.fqdn} is still being made; try again in a moment", status=409)
    return peer


def _approve_locked(
    peer: Peer,
    *,
    approver: User | None,
    actor: Actor,
    validity_days: int | None,
    enqueue: bool,
    policy: SitePolicy,
) -> None:
    """pending -> approved and the signing order, inside the caller's transaction, on the locked ``peer``.

    Without an approver it is the site policy that approves (an automatic renewal): no person is
    recorded as the decider, the audit event says ``auto``, and the owner is not mailed until issuance.
    ``peer`` is updated in place to what is written, so callers need not read it again.
    """
    decided_at = timezone.now()  # the decision comes before the request it makes (the auditors' timeline)
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
    # The decision and the link to the request in one statement. The row is locked and was pending
    # (``_pending_locked``); the condition on the decision stays as a second guard, and a miss rolls
    # the request back with everything else.
    claimed = Peer.objects.filter(pk=peer.pk, decision=Peer.Decision.PENDING).update(
        decision=Peer.Decision.APPROVED, decided_by=approver, decided_at=decided_at, certificate_request=request
    )
    if claimed != 1:
        raise EnrollmentError(f"{peer.fqdn} was decided by someone else meanwhile", status=409)
    peer.decision, peer.decided_by, peer.decided_at = Peer.Decision.APPROVED, approver, decided_at
    peer.certificate_request = request
    # The request was made in this transaction, so no certificate can exist for it yet: say so,
    # rather than let ``peer.status`` and the API ask the database.
    CertificateRequest.certificate.related.set_cached_value(request, None)
    if approver is None:
        audit_record("peer.approved", actor=actor_name(actor), target=f"peer:{peer.pk}", request=request.pk, auto=True)
    else:
        audit_record("peer.approved", actor=actor_name(actor), target=f"peer:{peer.pk}", request=request.pk)
        peer_pk = peer.pk
        transaction.on_commit(lambda: _notify_later(peer_pk, "approved"))


def peer_reject(*, peer_id: int, approver: User, reason: str, actor: Actor) -> Peer:
    """pending -> rejected with a reason the owner sees. The FQDN becomes free to register again."""
    reason = (reason or "").strip()
    if not reason:
        raise EnrollmentError("say why the request is rejected; the owner sees it", field="reason")
    if len(reason) > MAX_REASON:
        raise EnrollmentError(f"the reason is limited to {MAX_REASON} characters", field="reason")
    with transaction.atomic():
        peer = Peer.objects.select_for_update(of=("self",)).select_related("owner").get(pk=peer_id)
        decided_at = timezone.now()
        claimed = Peer.objects.filter(pk=peer.pk, decision=Peer.Decision.PENDING).update(
            decision=Peer.Decision.REJECTED, decided_by=approver, decided_at=decided_at, decision_reason=reason
        )
        if claimed != 1:
            raise EnrollmentError(f"{peer.fqdn} is {peer.status}, not pending", status=409)
        PortalKey.objects.filter(peer=peer, destroyed_at__isnull=True).update(
            encrypted_pem="", handoff_passphrase="", destroyed_at=timezone.now()
        )
        audit_record("peer.rejected", actor=actor_name(actor), target=f"peer:{peer.pk}", reason=reason)
        transaction.on_commit(lambda: _notify_later(peer.pk, "rejected"))
    # The peer as committed, without reading it again: it was pending, so it has no signing request.
    peer.decision, peer.decided_by, peer.decided_at = Peer.Decision.REJECTED, approver, decided_at
    peer.decision_reason = reason
    return peer


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
    return _peer_mail(Peer.objects.select_related("owner").get(pk=peer_id), event)


def _peer_mail(peer: Peer, event: str) -> bool:
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


def peers_issued_announce(*, request_ids: list[int], **_signal: object) -> None:
    """Receiver of ``authority.signals.certificates_issued`` (in the signer): queue the owners' mail."""
    send_by_name(task_names.PEERS_ISSUED_NOTIFY, request_ids)


def peers_issued_notify(*, request_ids: list[int]) -> int:
    """Called once per signer batch: mail each issued peer's owner.

    Returns how many owners were mailed. A mail that fails (SMTP down) is queued again on its own,
    so the others are not sent twice by a retry of the whole batch.
    """
    peers = list(Peer.objects.select_related("owner").filter(certificate_request_id__in=request_ids).order_by("pk"))
    if not peers:  # requests made by sign_csr's path for no portal peer, or by tests
        return 0
    mailed = 0
    for peer in peers:
        try:
            mailed += _peer_mail(peer, "issued")
        except OSError:
            log.warning("mail to the owner of peer %s failed; queued again", peer.pk)
            _notify_later(peer.pk, "issued")
    return mailed


def portal_keys_requeue_stale(*, older_than: timedelta) -> int:
    """Queue key generation again for portal keys still not made (lost message, broker was down)."""
    cutoff = timezone.now() - older_than
    stale = PortalKey.objects.filter(encrypted_pem="", destroyed_at__isnull=True, queued_at__lt=cutoff)
    queued = 0
    for pk, peer_id, queued_at in list(stale.values_list("pk", "peer_id", "queued_at")[:1000]):
        if PortalKey.objects.filter(pk=pk, queued_at=queued_at).update(queued_at=timezone.now()) == 1:
            queued += enqueue(task_names.PEER_KEY_GENERATE, peer_id)
    return queued


# --- revocation ------------------------------------------------------------------------------

# What an owner may say about their own peer ("my laptop was stolen"); admins may use every reason.
OWNER_REASONS = ("keyCompromise", "cessationOfOperation", "affiliationChanged", "unspecified")


def peer_revoke(*, peer_id: int, user: User, reason: str, comment: str = "") -> Peer:
    """Revoke the peer's certificate: a CA admin any peer, an owner their own. The FQDN becomes free."""
    from authority.revocation import RevocationError, certificate_revoke
    from core.roles import is_auditor, is_ca_admin

    admin = is_ca_admin(user)
    if is_auditor(user) and not admin:
        raise EnrollmentError("auditors review; they do not revoke", status=403)
    peer = Peer.objects.select_related("certificate_request__certificate").filter(pk=peer_id).first()
    if peer is None or not (admin or peer.owner_id == user.pk):
        raise EnrollmentError("no such peer", status=404)
    if peer.status == "revoked":
        raise EnrollmentError("this peer's certificate is already revoked", status=409)
    if peer.status != "issued":
        raise EnrollmentError("only an issued certificate can be revoked", status=409)
    if not admin and reason not in OWNER_REASONS:
        raise EnrollmentError(f"choose one of: {', '.join(OWNER_REASONS)}", field="reason")
    certificate = peer.certificate_request.certificate  # type: ignore[union-attr]
    with transaction.atomic():
        try:
            certificate_revoke(
                certificate_id=certificate.pk, reason=reason, actor=user, comment=comment.strip(), peer_id=peer.pk
            )
        except RevocationError as exc:
            raise EnrollmentError(str(exc), field=exc.field, status=exc.status) from None
        Peer.objects.filter(pk=peer.pk).update(retired_at=timezone.now())
    return peer_fresh(peer.pk)


# --- renewal ---------------------------------------------------------------------------------

AUTO_RENEWAL_ACTOR = "policy:auto-renewal"
SUPERSEDE_ACTOR = "policy:renewal"


def live_renewal(peer: Peer) -> Peer | None:
    """The renewal of ``peer`` that is under way or done (not rejected, not retired, signing not failed)."""
    return (
        Peer.objects.filter(renews=peer, retired_at__isnull=True)
        .exclude(decision=Peer.Decision.REJECTED)
        .exclude(certificate_request__status=CertificateRequest.Status.FAILED)
        .select_related("certificate_request__certificate")
        .order_by("-pk")
        .first()
    )


def renewal_blocker(peer: Peer, *, now: datetime | None = None) -> str:
    """Why ``peer`` cannot be renewed now ("" if it can). Renewals happen before expiry, once at a time."""
    if peer.retired_at is not None or peer.status == "revoked":
        return f"this certificate is revoked; register {peer.fqdn} again for a new one"
    if peer.status != "issued":
        return f"only an issued certificate can be renewed; this peer is {peer.progress}"
    certificate = _certificate_of(peer)
    moment = now or timezone.now()
    if certificate is None:  # issued without a certificate: never, but the type checker cannot know
        return "this peer has no certificate to renew"
    if certificate.not_after <= moment:
        return (
            f"the certificate expired on {certificate.not_after:%Y-%m-%d %H:%M} UTC; renewals happen before expiry. "
            f"Revoke this peer (reason cessationOfOperation) and register {peer.fqdn} again."
        )
    renewal = live_renewal(peer)
    if renewal is not None:
        return f"{peer.fqdn} is already being renewed (peer {renewal.pk}, {renewal.progress})"
    return ""


def _certificate_of(peer: Peer) -> Certificate | None:
    request = peer.certificate_request
    return getattr(request, "certificate", None) if request is not None else None


def peer_renew(
    *, peer_id: int, user: User, csr_pem: str | None, now: datetime | None = None, actor: Actor = None
) -> Registration:
    """Request a renewal of an issued peer: a new peer with the same identity and a new key.

    Only the owner may renew (404 for anyone else, 403 for auditors). With a CSR the new key is the
    owner's; without one the signer makes it, as at registration, and the passphrase is returned to be
    shown once. The renewal waits for a CA admin unless the site policy approves renewals itself
    (``renewal_auto_approve``). The old certificate stays valid until ``renewals_supersede`` revokes it.
    ``actor`` names who asked in the audit log (default: ``user``; EST passes ``est:<user>``).
    """
    from core.roles import is_auditor, is_ca_admin

    if is_auditor(user) and not is_ca_admin(user):
        raise EnrollmentError("auditors review; they do not renew", status=403)
    old = Peer.objects.filter(pk=peer_id, owner_id=user.pk).first()
    if old is None:
        raise EnrollmentError("no such peer", status=404)
    clean_networks, clean_address = _peer_input_clean(
        fqdn=old.fqdn, kind=old.kind, networks=list(old.networks), address=old.address, csr_pem=csr_pem
    )
    with transaction.atomic():
        old = (
            Peer.objects.select_for_update(of=("self",))
            .select_related("certificate_request__certificate")
            .get(pk=old.pk)
        )
        blocker = renewal_blocker(old, now=now)
        if blocker:
            raise EnrollmentError(blocker, status=409)
        # A renewal whose signing failed is replaced by this one (it never had a certificate).
        failed = Peer.objects.filter(
            renews=old, retired_at__isnull=True, certificate_request__status=CertificateRequest.Status.FAILED
        )
        for stale in list(failed.values_list("pk", flat=True)):
            Peer.objects.filter(pk=stale).update(retired_at=timezone.now())
            audit_record(
                "peer.retired",
                actor=actor_name(actor if actor is not None else user),
                target=f"peer:{stale}",
                reason="failed renewal replaced",
            )
        peer, passphrase = _peer_create(
            owner=user,
            fqdn=old.fqdn,
            kind=old.kind,
            networks=clean_networks,
            address=clean_address,
            csr_pem=csr_pem,
            renews=old,
        )
        audit_record(
            "peer.renewal_requested",
            actor=actor_name(actor if actor is not None else user),
            target=f"peer:{peer.pk}",
            renews=old.pk,
            fqdn=peer.fqdn,
            key_source=peer.key_source,
        )
    if csr_pem:
        renewal_auto_approve(peer_id=peer.pk)
    return Registration(peer=peer_fresh(peer.pk), key_passphrase=passphrase)


def renewal_auto_approve(*, peer_id: int, enqueue: bool = True) -> Peer | None:
    """Approve a pending renewal without a CA admin if the site policy allows it and its identity is unchanged.

    Unchanged: the FQDN and kind of the certificate it replaces, which must still be valid (not revoked),
    the same owner, and a domain the policy allows. Returns the approved peer, or None: it stays in the queue.
    """
    policy = policy_get()
    if not policy.auto_approve_renewals:
        return None
    peer = (
        Peer.objects.select_related("renews__certificate_request__certificate", "renews__certificate_request")
        .filter(pk=peer_id, decision=Peer.Decision.PENDING, renews__isnull=False)
        .first()
    )
    if peer is None or not peer.key_ready or peer.renews is None:
        return None
    old = peer.renews
    certificate = _certificate_of(old)
    unchanged = (
        certificate is not None
        and certificate.revoked_at is None
        and old.retired_at is None
        and certificate.fqdn == peer.fqdn
        and old.certificate_request is not None
        and old.certificate_request.kind == peer.kind
        and old.owner_id == peer.owner_id
        and policy.domain_allowed(peer.fqdn)
    )
    if not unchanged:
        return None
    try:
        with transaction.atomic():
            locked = _pending_locked(peer.pk)
            _approve_locked(
                locked, approver=None, actor=AUTO_RENEWAL_ACTOR, validity_days=None, enqueue=enqueue, policy=policy
            )
    except EnrollmentError as exc:  # raced with an admin, or the CA refuses: a person decides instead
        log.warning("renewal %s not approved automatically: %s", peer_id, exc)
        return None
    return peer_fresh(peer.pk)


def renewals_supersede(*, now: datetime | None = None, grace: timedelta | None = None) -> int:
    """Retire the peers whose renewal is issued and in use; returns how many were retired.

    A renewal is in use once its bundle was downloaded ``grace`` ago (RENEWAL_GRACE_HOURS): then the
    old certificate is revoked as superseded. An old certificate that expired meanwhile is only retired
    (an expired certificate needs no revocation). Safe to run twice, and alongside itself.
    """
    moment = now or timezone.now()
    cutoff = moment - (grace if grace is not None else timedelta(hours=settings.RENEWAL_GRACE_HOURS))
    renewals = Peer.objects.filter(
        renews__isnull=False,
        renews__retired_at__isnull=True,
        retired_at__isnull=True,
        decision=Peer.Decision.APPROVED,
        certificate_request__status=CertificateRequest.Status.ISSUED,
        certificate_request__certificate__revoked_at__isnull=True,
    ).order_by("pk")
    retired = 0
    for renewal_id, old_id in list(renewals.values_list("pk", "renews_id")[:1000]):
        if old_id is not None:
            retired += _supersede_one(renewal_id=renewal_id, old_id=old_id, cutoff=cutoff, now=moment)
    return retired


def _supersede_one(*, renewal_id: int, old_id: int, cutoff: datetime, now: datetime) -> int:
    from authority.revocation import RevocationError, certificate_revoke

    with transaction.atomic():
        old = (
            Peer.objects.select_for_update(of=("self",))
            .select_related("certificate_request__certificate")
            .filter(pk=old_id, retired_at__isnull=True)
            .first()
        )
        if old is None:  # superseded meanwhile
            return 0
        certificate = _certificate_of(old)
        if certificate is None:  # the old peer was never issued: nothing to supersede
            return 0
        if certificate.revoked_at is not None or certificate.not_after <= now:
            how = "revoked" if certificate.revoked_at is not None else "expired"
        else:
            downloaded = Peer.objects.filter(pk=renewal_id, bundles__downloads__at__lte=cutoff).exists()
            if not downloaded:
                return 0
            try:
                certificate_revoke(
                    certificate_id=certificate.pk,
                    reason="superseded",
                    actor=SUPERSEDE_ACTOR,
                    comment=f"replaced by peer {renewal_id}",
                    peer_id=old.pk,
                )
                how = "superseded"
            except RevocationError:  # revoked by someone else a moment ago
                how = "revoked"
        Peer.objects.filter(pk=old.pk).update(retired_at=now)
        audit_record("peer.superseded", actor=SUPERSEDE_ACTOR, target=f"peer:{old.pk}", by=renewal_id, how=how)
    return 1


def renewal_reminder_thresholds() -> tuple[int, ...]:
    """RENEWAL_REMINDER_DAYS, largest first (the setting is parsed and checked at start-up)."""
    return tuple(sorted(settings.RENEWAL_REMINDER_DAYS, reverse=True))


def renewal_reminders_send(*, now: datetime | None = None) -> int:
    """Mail owners whose certificate expires soon, once per threshold (30, 7, 1 days by default).

    Only live issued peers without a renewal under way are reminded. The reminder sent is the one for
    the smallest threshold reached; it also counts for every larger one, so a reminder that was missed
    is never sent late. Owners without an email address get none (and nothing is recorded, so a
    reminder goes out once they add one). Returns the number of mails sent.
    """
    thresholds = renewal_reminder_thresholds()
    if not thresholds:
        return 0
    moment = now or timezone.now()
    under_way = (
        Peer.objects.filter(renews=OuterRef("pk"), retired_at__isnull=True)
        .exclude(decision=Peer.Decision.REJECTED)
        .exclude(certificate_request__status=CertificateRequest.Status.FAILED)
    )
    peers = (
        Peer.objects.filter(
            decision=Peer.Decision.APPROVED,
            retired_at__isnull=True,
            certificate_request__status=CertificateRequest.Status.ISSUED,
            certificate_request__certificate__revoked_at__isnull=True,
            certificate_request__certificate__not_after__gt=moment,
            certificate_request__certificate__not_after__lte=moment + timedelta(days=thresholds[0]),
        )
        .exclude(owner__email="")
        .filter(~Exists(under_way))
        .select_related("owner", "certificate_request__certificate")
        .order_by("pk")
    )
    sent = 0
    for peer in list(peers):
        certificate = _certificate_of(peer)
        if certificate is None:
            continue
        left = certificate.not_after - moment
        due = min(d for d in thresholds if left <= timedelta(days=d))
        try:
            sent += _reminder_send(peer, certificate, due=due, thresholds=thresholds, now=moment)
        except OSError as exc:  # SMTP trouble: nothing recorded, the next run tries again
            log.warning("renewal reminder for peer %s not sent: %s", peer.pk, exc)
    return sent


def _reminder_send(
    peer: Peer, certificate: Certificate, *, due: int, thresholds: tuple[int, ...], now: datetime
) -> int:
    with transaction.atomic():
        _, created = RenewalReminder.objects.get_or_create(certificate=certificate, days=due, defaults={"sent_at": now})
        if not created:
            return 0
        RenewalReminder.objects.bulk_create(
            [RenewalReminder(certificate=certificate, days=d, sent_at=now) for d in thresholds if d > due],
            ignore_conflicts=True,
        )
        link = f"{settings.SITE_URL}/peers/{peer.pk}/renew/"
        expires = f"{certificate.not_after:%Y-%m-%d %H:%M} UTC"
        body = "\n".join(
            [
                f"Hello {peer.owner.get_username()},",
                "",
                f"{peer.fqdn} expires on {expires}: renew it at {link}",
                "",
                "Renewing gives the peer a new certificate (with a new key) while the current one keeps working;",
                "the current one is revoked a few days after you download the new bundle.",
                "",
                "-- ca_portal",
            ]
        )
        # Inside the transaction: a mail that fails records nothing, and the next run sends it.
        send_mail(f"{peer.fqdn}: the certificate expires on {expires}", body, None, [peer.owner.email])
    return 1


# --- EST (RFC 7030) --------------------------------------------------------------------------


def est_actor(user: User) -> str:
    """The audit actor of what a user does through EST: their name, marked with the channel."""
    return f"est:{user.get_username()}"


def peer_est_enroll(*, owner: User, csr: EstCsr) -> Peer:
    """simpleenroll: this owner's peer for this request if the client is asking again, else a new client peer.

    Asking again is sending the same request: same owner, same FQDN, same public key. The newest such
    peer answers whatever its state, so polling never registers a rejected or revoked request again;
    another owner's peers are never looked at. A new peer is registered by ``peer_register`` like any
    other (the same vetting, the same approval, the same audit event, by actor ``est:<user>``).
    """
    from enrollment.selectors import est_peer_for_request, est_peer_to_renew

    found = est_peer_for_request(owner=owner, fqdn=csr.fqdn, public_key_der=csr.public_key_der, renewal=False)
    if found is not None:
        return found
    try:
        return peer_register(
            owner=owner,
            fqdn=csr.fqdn,
            kind=Peer.Kind.CLIENT,
            networks=[],
            address=None,
            csr_pem=csr.pem,
            actor=est_actor(owner),
        )
    except EnrollmentError as exc:
        # Two copies of one request at once: the other registered it a moment ago.
        found = est_peer_for_request(owner=owner, fqdn=csr.fqdn, public_key_der=csr.public_key_der, renewal=False)
        if found is not None:
            return found
        if exc.status == 409 and est_peer_to_renew(owner=owner, fqdn=csr.fqdn) is not None:
            raise EnrollmentError(
                f"{exc}; your certificate for {csr.fqdn} is renewed through simplereenroll "
                "(pki --est with --cert and --key of the current certificate)",
                field=exc.field,
                status=409,
            ) from None
        raise


def peer_est_reenroll(*, owner: User, csr: EstCsr) -> Peer:
    """simplereenroll: this owner's renewal for this request if the client is asking again, else a renewal
    (``peer_renew``) of the owner's issued client peer for the request's FQDN.

    A renewal takes a new key (as on the portal's Renew page): a request with the key of the certificate
    it would replace is refused, which also keeps "asking again" unambiguous.
    """
    from enrollment.selectors import est_peer_for_request, est_peer_to_renew

    found = est_peer_for_request(owner=owner, fqdn=csr.fqdn, public_key_der=csr.public_key_der, renewal=True)
    if found is not None:
        return found
    old = est_peer_to_renew(owner=owner, fqdn=csr.fqdn)
    if old is None:
        raise EnrollmentError(
            f"you have no issued client certificate for {csr.fqdn} to renew; enroll it with simpleenroll",
            field="csr",
            status=404,
        )
    request = old.certificate_request
    if request is not None and bytes(request.public_key_der) == csr.public_key_der:
        raise EnrollmentError(
            f"a renewal needs a new key, and this request has the key of the current certificate for {csr.fqdn}: "
            "make a new key and request (pki --gen, pki --req) and send that",
            field="csr",
            status=409,
        )
    try:
        return peer_renew(peer_id=old.pk, user=owner, csr_pem=csr.pem, actor=est_actor(owner)).peer
    except EnrollmentError:
        found = est_peer_for_request(owner=owner, fqdn=csr.fqdn, public_key_der=csr.public_key_der, renewal=True)
        if found is None:
            raise
        return found
