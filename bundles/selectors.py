"""Reads for the bundles app: the site profile, what a bundle is rendered from, who may take it, the pages.

Nothing here writes. The site-profile row comes from a data migration (``0003_site_profile_row``);
``profile_get`` reads it, and on a database without it (a flushed test database) returns the unsaved
defaults, which is what a first save starts from.
"""

from __future__ import annotations

import enum
import hashlib
from dataclasses import dataclass

from django.contrib.auth.models import User
from django.db.models import F, OuterRef, Q, QuerySet, Subquery
from django.utils import timezone

from authority.models import CertificateAuthority, CertificateRequest, Crl
from authority.revocation import current_crl
from authority.services import active_ca
from bundles.errors import BundleError
from bundles.models import Bundle, DownloadLink, RenderFailure, SiteProfile
from bundles.renderers.spec import SpecRejected, validate_client_entry
from core.roles import is_ca_admin
from enrollment.models import Peer, PortalKey
from enrollment.selectors import peers_visible_to

PREVIEW_LIMIT = 64 * 1024

# --- the site profile and what a bundle is rendered from -------------------------------------


def profile_get() -> SiteProfile:
    """The site profile (one row, pk=1). Never writes: without the row, its unsaved defaults."""
    return SiteProfile.objects.filter(pk=1).first() or SiteProfile(pk=1)


def issued_peers() -> QuerySet[Peer]:
    return Peer.objects.filter(
        decision=Peer.Decision.APPROVED,
        certificate_request__status=CertificateRequest.Status.ISSUED,
        certificate_request__certificate__revoked_at__isnull=True,
    )


def gateway_peer(profile: SiteProfile) -> Peer | None:
    """The profile's gateway, or the only issued server peer when the profile names none."""
    servers = issued_peers().filter(kind=Peer.Kind.SERVER).select_related("certificate_request__certificate")
    return _gateway_among(servers, profile)


def _gateway_among(servers: QuerySet[Peer], profile: SiteProfile) -> Peer | None:
    if profile.gateway_id is not None:
        # The chosen gateway, or, once it has been renewed and superseded, its newest live successor.
        wanted = profile.gateway_id
        for _ in range(20):
            chosen = servers.filter(pk=wanted).first()
            if chosen is not None:
                return chosen
            successor = Peer.objects.filter(renews_id=wanted).order_by("-pk").values_list("pk", flat=True).first()
            if successor is None:
                return None
            wanted = successor
        return None
    found = list(servers.order_by("pk")[:3])
    if len({server.fqdn for server in found}) != 1:
        return None
    return found[0]  # one gateway; during its renewal, the old one until the new one supersedes it


@dataclass(frozen=True)
class RefusedClient:
    """An issued client the gateway's files leave out: its stored values fail the renderers' rules."""

    peer_id: int
    fqdn: str
    reason: str


@dataclass(frozen=True)
class IssuedClients:
    """What the gateway's files say about the issued clients: their FQDNs and their networks, and
    the clients they leave out (``refused``), whose change makes the gateway stale too."""

    fqdns: tuple[str, ...]
    networks: tuple[tuple[str, tuple[str, ...]], ...]
    refused: tuple[RefusedClient, ...] = ()

    @property
    def digest(self) -> str:
        lines = [*self.fqdns, *(f"{fqdn} {' '.join(nets)}" for fqdn, nets in self.networks)]
        lines += [f"! {r.peer_id} {r.fqdn} {r.reason}" for r in self.refused]
        return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def issued_clients() -> IssuedClients:
    """The issued clients as the gateway's files name them, each checked alone with the renderers'
    rules (``spec.validate_client_entry``): one whose stored values are refused is left out, with why."""
    rows = issued_peers().filter(kind=Peer.Kind.CLIENT).order_by("fqdn", "pk").values_list("pk", "fqdn", "networks")
    accepted: list[tuple[str, tuple[str, ...]]] = []
    refused: list[RefusedClient] = []
    for pk, fqdn, nets in rows:
        try:
            accepted.append(validate_client_entry(fqdn, nets))
        except SpecRejected as exc:
            refused.append(RefusedClient(pk, str(fqdn)[:127], str(exc)))
    fqdns = sorted({fqdn for fqdn, _ in accepted})
    # During a renewal the old and the new peer are both issued: one entry per FQDN (the newest).
    by_fqdn = dict(accepted)
    networks = tuple((fqdn, nets) for fqdn, nets in sorted(by_fqdn.items()) if nets)
    return IssuedClients(tuple(fqdns), networks, tuple(refused))


def issued_client_fqdns() -> list[str]:
    return list(issued_clients().fqdns)


@dataclass(frozen=True)
class RenderContext:
    """The site-wide inputs of a render, read once per task (a batch shares them)."""

    profile: SiteProfile
    ca: CertificateAuthority | None
    gateway: Peer | None
    crl: Crl | None


def render_context() -> RenderContext:
    profile = profile_get()
    ca = active_ca()
    return RenderContext(profile, ca, gateway_peer(profile), current_crl(ca) if ca is not None else None)


def stale_peer_ids(*, limit: int = 10_000) -> list[int]:
    """Issued peers whose latest bundle is missing or rendered from inputs that have changed since."""
    profile = profile_get()
    gateway = gateway_peer(profile)
    if gateway is None or active_ca() is None:
        return []
    latest = Bundle.objects.filter(peer=OuterRef("pk")).order_by("-version")
    peers = (
        issued_peers()
        .exclude(Q(kind=Peer.Kind.SERVER) & ~Q(pk=gateway.pk))
        .annotate(
            bundle_generation=Subquery(latest.values("site_generation")[:1]),
            bundle_certificate=Subquery(latest.values("certificate_id")[:1]),
            bundle_digest=Subquery(latest.values("peers_digest")[:1]),
            bundle_lists_key=Subquery(latest.values("lists_key")[:1]),
            bundle_crl=Subquery(latest.values("crl_number")[:1]),
        )
    )
    stale = Q(bundle_generation__isnull=True) | Q(bundle_generation__lt=profile.generation)
    # The README of a bundle that promised the portal-made key must change once the key is gone.
    stale |= Q(bundle_lists_key=True, portal_key__destroyed_at__isnull=False)
    crl = current_crl()
    if crl is not None:  # every bundle ships the newest CRL in isakmpd/crls/ca.crl
        stale |= Q(bundle_crl__lt=crl.number)
    stale |= ~Q(bundle_certificate=F("certificate_request__certificate__id"))
    ids = list(peers.filter(stale).order_by("pk").values_list("pk", flat=True)[:limit])
    if gateway.pk not in ids:
        current = issued_clients().digest
        if peers.filter(pk=gateway.pk).exclude(bundle_digest=current).exists():
            ids.insert(0, gateway.pk)
    elif ids[0] != gateway.pk:
        ids.remove(gateway.pk)
        ids.insert(0, gateway.pk)
    return ids


def render_failure_of(peer: Peer) -> RenderFailure | None:
    """Why the peer's newest bundle could not be made (an issued peer only), or None."""
    if peer.status != "issued":
        return None
    return RenderFailure.objects.filter(peer=peer).first()


def stale_count() -> int:
    """How many bundles wait to be made (the pages say so, and poll it); peers whose render failed
    are counted apart, with their reasons."""
    failing = set(RenderFailure.objects.values_list("peer_id", flat=True))
    return len([peer_id for peer_id in stale_peer_ids() if peer_id not in failing])


def bundle_render_blocker(peer: Peer) -> str:
    """Why a peer has no bundle yet, in words for its page."""
    if peer.status != "issued":
        return "The bundle is made once the certificate is issued."
    failure = render_failure_of(peer)
    if failure is not None:
        return failure.message
    profile = profile_get()
    if active_ca() is None:
        return "There is no CA yet."
    if gateway_peer(profile) is None:
        return (
            "The CA admins have not set up the VPN gateway yet (an issued server peer, chosen on the gateway page). "
            "Your bundle is made as soon as they have."
        )
    return "Your bundle is being made; this takes a few seconds."


# --- who may take a bundle ---------------------------------------------------------------------


class Access(enum.Enum):
    """What a user may do with a peer's bundle: the one answer every download and link asks for."""

    TAKE = "take"  # download it (and make one-time links to it)
    SEE = "see"  # see the peer and read its files on the bundle page, not take the zip
    NONE = "none"  # not even see the peer


def may_download(user: User, peer: Peer) -> bool:
    """Owners download their own peer's bundle; CA admins the gateway's (a server peer). Auditors never."""
    if peer.kind == Peer.Kind.SERVER:
        return is_ca_admin(user)
    return peer.owner_id == user.pk


def download_access(user: User, peer: Peer) -> Access:
    if may_download(user, peer):
        return Access.TAKE
    # Who sees a peer is the enrollment app's rule; asked only for a refusal (one query).
    return Access.SEE if peers_visible_to(user).filter(pk=peer.pk).exists() else Access.NONE


def latest_bundle(peer: Peer) -> Bundle | None:
    return peer.bundles.order_by("-version").first()  # through the peer: the bundle's .peer is that instance


def link_token_hash(token: str) -> str:
    """What is stored of a one-time link's token."""
    return hashlib.sha256(token.encode("ascii", "replace")).hexdigest()


def link_state(token: str) -> DownloadLink:
    """The open link for a token, whoever asks (the token is the credential): 404 for an unknown token
    or one whose maker's account is closed; 410 when used or expired."""
    link = (
        DownloadLink.objects.filter(token_hash=link_token_hash(token), user__is_active=True)
        .select_related("peer", "user")
        .first()
    )
    if link is None:
        raise BundleError("no such link", status=404)
    if link.used_at is not None:
        raise BundleError("this link has already been used", status=410)
    if link.expires_at <= timezone.now():
        raise BundleError("this link has expired; make a new one on the peer's page", status=410)
    return link


def portal_key_waiting(peer: Peer) -> bool:
    """Whether the portal-made key of ``peer`` still waits for its single delivery."""
    return PortalKey.objects.filter(peer=peer, destroyed_at__isnull=True).exclude(encrypted_pem="").exists()
