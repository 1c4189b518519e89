"""Reads: the site policy, peers and their renewals, with scoping (every object lookup for a person
goes through here: 404 for what is not theirs). Nothing here writes."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.models import AnonymousUser, User
from django.db.models import Q, QuerySet
from django.http import Http404
from django.utils import timezone

from authority.models import Certificate, CertificateRequest
from authority.services import active_ca
from core.roles import CA_ADMIN, is_auditor, is_ca_admin
from enrollment.models import Peer, SitePolicy
from enrollment.networks import NetworkHolder, NetworksInUse, network_overlaps
from pki.csr import vet_csr
from pki.errors import PkiError
from pki.est import csr_public_key_der
from pki.keys import describe_key
from pki.networks import Overlap

QUEUE_SORTS = {"newest": "-created_at", "oldest": "created_at", "fqdn": "fqdn", "owner": "owner__username"}


# --- site policy ---------------------------------------------------------------------------------


def policy_get() -> SitePolicy:
    """The site policy: its row once a CA admin has saved it, else the defaults (unsaved; nothing is written)."""
    return SitePolicy.objects.filter(pk=1).first() or SitePolicy(pk=1)


def self_approval_allowed(policy: SitePolicy) -> bool:
    """Only a one-admin site may approve its own requests, and only when the policy says so."""
    if not policy.allow_self_approval:
        return False
    admins = User.objects.filter(Q(is_superuser=True) | Q(groups__name=CA_ADMIN), is_active=True).distinct()
    return admins.count() == 1


# --- peers ---------------------------------------------------------------------------------------


def peer_fresh(peer_id: int) -> Peer:
    """The peer as committed, with what pages and the API show of it, in one query."""
    return Peer.objects.select_related("owner", "decided_by", "certificate_request__certificate").get(pk=peer_id)


def certificate_of(peer: Peer) -> Certificate | None:
    """The peer's certificate, if one was issued (from what was loaded with the peer)."""
    request = peer.certificate_request
    return getattr(request, "certificate", None) if request is not None else None


def peers_owned_by(user: User) -> QuerySet[Peer]:
    """The user's own peers, newest first, for their list."""
    peers = Peer.objects.filter(owner_id=user.pk).select_related("certificate_request__certificate")
    return peers.order_by("-created_at")


def peers_visible_to(user: User) -> QuerySet[Peer]:
    peers = Peer.objects.select_related("owner", "certificate_request__certificate", "decided_by")
    if is_ca_admin(user) or is_auditor(user):
        return peers
    return peers.filter(owner_id=user.pk)


def peer_for_user(user: User, peer_id: int) -> Peer:
    peer = peers_visible_to(user).filter(pk=peer_id).first()
    if peer is None:
        raise Http404("no such peer")
    return peer


# The API's status filter: the statuses of ``Peer.status`` as queries.
_IN_FLIGHT = [CertificateRequest.Status.PENDING, CertificateRequest.Status.SIGNING]
PEER_STATUS_FILTERS = {
    "pending": Q(decision=Peer.Decision.PENDING),
    "rejected": Q(decision=Peer.Decision.REJECTED),
    "approved": Q(decision=Peer.Decision.APPROVED)
    & (Q(certificate_request__isnull=True) | Q(certificate_request__status__in=_IN_FLIGHT)),
    "issued": Q(
        decision=Peer.Decision.APPROVED,
        certificate_request__status=CertificateRequest.Status.ISSUED,
        certificate_request__certificate__revoked_at__isnull=True,
    ),
    "failed": Q(decision=Peer.Decision.APPROVED, certificate_request__status=CertificateRequest.Status.FAILED),
    "revoked": Q(decision=Peer.Decision.APPROVED, certificate_request__certificate__revoked_at__isnull=False),
}


def peers_listed(
    user: AbstractBaseUser | AnonymousUser,
    *,
    status: str | None = None,
    kind: str | None = None,
    fqdn: str | None = None,
) -> QuerySet[Peer]:
    """The API's list: the peers this user may see (their own; all for CA admins and auditors), newest first."""
    peers = Peer.objects.select_related("owner", "certificate_request__certificate")
    if not (is_ca_admin(user) or is_auditor(user)):
        peers = peers.filter(owner_id=user.pk)
    if status:
        peers = peers.filter(PEER_STATUS_FILTERS[status])
    if kind:
        peers = peers.filter(kind=kind)
    if fqdn:
        peers = peers.filter(fqdn=fqdn)
    return peers.order_by("-created_at", "-pk")


def peer_seen_by(user: AbstractBaseUser | AnonymousUser, peer_id: int) -> Peer | None:
    """The API's lookup: the peer if this user may see it, else None (the caller answers 404).

    Owners see their own peers whatever their roles, so the roles (one more query) are looked up
    only for a peer that is not the caller's, and then whether it exists or not: both misses cost the
    same queries. (Peer ids are sequential and never reused, so that one exists is no secret anyway.)
    """
    peer = Peer.objects.select_related("owner", "certificate_request__certificate").filter(pk=peer_id).first()
    if peer is not None and peer.owner_id == user.pk:
        return peer
    if not (is_ca_admin(user) or is_auditor(user)) or peer is None:
        return None
    return peer


def approval_queue(
    *, status: str = "pending", kind: str = "", search: str = "", sort: str = "oldest"
) -> QuerySet[Peer]:
    peers = Peer.objects.select_related("owner", "certificate_request", "renews__certificate_request__certificate")
    peers = peers.order_by(QUEUE_SORTS.get(sort, "created_at"))
    if status == "pending":
        peers = peers.filter(decision=Peer.Decision.PENDING)
    elif status in ("approved", "rejected"):
        peers = peers.filter(decision=status)
    if kind in Peer.Kind.values:
        peers = peers.filter(kind=kind)
    if search:
        term = search.strip()[:127]
        peers = peers.filter(Q(fqdn__icontains=term) | Q(owner__username__icontains=term))
    return peers


@dataclass(frozen=True)
class IssuancePreview:
    """Exactly what approving this peer will issue, and what an admin should look at twice."""

    subject: str
    san: str
    key_type: str
    key_bits: int | None
    validity_days: int
    not_after: datetime | None
    networks: list[str]
    owner: str
    extended_key_usage: str
    warnings: list[str]
    # The peer's networks that overlap another live peer's: approving needs an acknowledgement of each
    # holder (``peer_approve(accept_overlap_with=...)``).
    overlaps: tuple[Overlap[NetworkHolder], ...] = ()

    @property
    def overlap_peer_ids(self) -> list[int]:
        return sorted({overlap.owner.peer_id for overlap in self.overlaps})


def overlap_warning(overlap: Overlap[NetworkHolder]) -> str:
    """One overlap as the approval page and the refused approval say it (CA admins only)."""
    return f"network {overlap.network} overlaps {overlap.other} of {overlap.owner}"


def issuance_preview(peer: Peer, policy: SitePolicy, *, in_use: NetworksInUse | None = None) -> IssuancePreview:
    """``in_use``: ``networks_in_use()`` when the caller previews many peers (read once, not per peer)."""
    warnings: list[str] = []
    found = network_overlaps(peer.networks, fqdn=peer.fqdn, in_use=in_use)
    warnings.extend(f"{overlap_warning(overlap)}: two peers would hold the same addresses" for overlap in found)
    key_type = "being made by the signer (rsa-3072)"
    key_bits: int | None = 3072
    if peer.key_ready:
        try:
            vetted = vet_csr(peer.csr_pem, fqdn=peer.fqdn)
            key_type = describe_key(vetted.public_key)
            key_bits = getattr(vetted.public_key, "key_size", None)
            if key_type.startswith("ecdsa"):
                warnings.append("ECDSA key: isakmpd cannot use it (iked and strongSwan can)")
        except PkiError as exc:
            warnings.append(f"the CSR no longer passes the checks: {exc}")
    if not policy.domain_allowed(peer.fqdn):
        warnings.append(f"domain outside policy (allowed: {', '.join(policy.allowed_domains)})")
    renewed = renewal_note(peer)
    if renewed:
        warnings.append(renewed)
    revoked = Certificate.objects.filter(fqdn=peer.fqdn, revoked_at__isnull=False).order_by("-revoked_at").first()
    previous = Certificate.objects.filter(fqdn=peer.fqdn).order_by("-issued_at").first()
    # A renewal's note above already names the certificate it replaces (and earlier renewals' supersessions).
    if revoked is not None and not (renewed and revoked.revocation_reason == "superseded"):
        warnings.append(
            f"this FQDN was revoked before (serial {revoked.serial}, {revoked.revoked_at:%Y-%m-%d}, "
            f"reason {revoked.revocation_reason}): make sure the new key is not the lost one"
        )
    elif previous is not None and not renewed:
        warnings.append(
            f"this FQDN had a certificate before (serial {previous.serial}, issued {previous.issued_at:%Y-%m-%d})"
        )
    if peer.kind == Peer.Kind.SERVER:
        warnings.append("this is a VPN gateway certificate: every client will trust it as the gateway")
    ca = active_ca()
    not_after = None
    if ca is None:
        warnings.append("there is no CA yet: approval will fail until an admin runs init_ca")
    else:
        not_after = min(timezone.now() + timedelta(days=policy.default_validity_days), ca.not_after)
        if ca.is_legacy:
            warnings.append("the CA is a legacy (weak) CA")
    return IssuancePreview(
        subject=f"CN={peer.fqdn}",
        san=f"DNS:{peer.fqdn}",
        key_type=key_type,
        key_bits=key_bits,
        validity_days=policy.default_validity_days,
        not_after=not_after,
        networks=list(peer.networks),
        owner=peer.owner.get_username(),
        extended_key_usage="serverAuth, clientAuth, ipsecIKE",
        warnings=warnings,
        overlaps=tuple(found),
    )


def renewal_note(peer: Peer) -> str:
    """For a renewal: which peer and certificate it replaces, as the queue and the review page say it."""
    old = peer.renews
    if old is None:
        return ""
    certificate = certificate_of(old)
    if certificate is None:
        return f"renewal of {old.fqdn} (peer {old.pk})"
    return f"renewal of {old.fqdn} (serial {certificate.serial}, valid until {certificate.not_after:%Y-%m-%d})"


def peer_renewed_by(peer: Peer) -> Peer | None:
    """The newest renewal of ``peer`` that was not rejected, whatever its state: what its page links to."""
    return peer.renewals.exclude(decision=Peer.Decision.REJECTED).order_by("-pk").first()


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
    certificate = certificate_of(peer)
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


def renewal_reminder_thresholds() -> tuple[int, ...]:
    """RENEWAL_REMINDER_DAYS, largest first (the setting is parsed and checked at start-up)."""
    return tuple(sorted(settings.RENEWAL_REMINDER_DAYS, reverse=True))


# --- EST (RFC 7030) -------------------------------------------------------------------------

# How many of an owner's peers for one FQDN a retry is compared with (newest first): a client
# polls for its latest request, and an owner has a handful of peers per FQDN at most.
EST_RETRY_CANDIDATES = 20


def est_peer_for_request(*, owner: User, fqdn: str, public_key_der: bytes, renewal: bool) -> Peer | None:
    """This owner's newest peer for ``fqdn`` whose CSR has this public key, in any state: what an
    EST client asks about when it sends the same request again (RFC 7030 §4.2.3 polling).

    ``renewal`` looks at renewals (simplereenroll) or at first registrations (simpleenroll).
    Other owners' peers are never looked at, whatever the key.
    """
    peers = (
        Peer.objects.filter(owner_id=owner.pk, fqdn=fqdn, key_source=Peer.KeySource.CSR, renews__isnull=not renewal)
        .select_related("owner", "certificate_request__certificate")
        .order_by("-pk")[:EST_RETRY_CANDIDATES]
    )
    for peer in peers:
        if csr_public_key_der(peer.csr_pem) == public_key_der:
            return peer
    return None


def est_peer_to_renew(*, owner: User, fqdn: str) -> Peer | None:
    """This owner's newest live client peer for ``fqdn`` with a valid (issued, unrevoked) certificate."""
    return (
        Peer.objects.filter(
            owner_id=owner.pk,
            fqdn=fqdn,
            kind=Peer.Kind.CLIENT,
            retired_at__isnull=True,
            decision=Peer.Decision.APPROVED,
            certificate_request__status=CertificateRequest.Status.ISSUED,
            certificate_request__certificate__revoked_at__isnull=True,
        )
        .select_related("certificate_request__certificate")
        .order_by("-pk")
        .first()
    )


def peers_recent(owner: User, *, limit: int = 10) -> list[Peer]:
    """The owner's newest peers, for the home page (with their certificates: the table shows the expiry)."""
    rows = (
        Peer.objects.filter(owner_id=owner.pk)
        .select_related("certificate_request__certificate")
        .order_by("-created_at")
    )
    return list(rows[:limit])


def expiry_marks(*, now: datetime | None = None) -> dict[str, datetime | None]:
    """What a peer table compares expiry dates with: now, and the first renewal reminder's horizon."""
    moment = now or timezone.now()
    thresholds = renewal_reminder_thresholds()
    return {"now": moment, "soon": moment + timedelta(days=thresholds[0]) if thresholds else None}


def pending_approvals_count() -> int:
    """How many peers wait for a CA admin's decision: one COUNT (the navigation shows it on every page)."""
    return Peer.objects.filter(decision=Peer.Decision.PENDING).count()


def work_counts() -> dict[str, int]:
    """What waits for CA admins: undecided peers, requests the signer has not finished, certificates issued."""
    signing = [CertificateRequest.Status.PENDING, CertificateRequest.Status.SIGNING]
    return {
        "pending_count": pending_approvals_count(),
        "signing_count": CertificateRequest.objects.filter(status__in=signing).count(),
        "issued_count": Certificate.objects.count(),
    }
