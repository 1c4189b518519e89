"""Reads for the bundles app: the site profile, what a bundle is rendered from, who may take it, the pages.

Nothing here writes. The site-profile row comes from a data migration (``0003_site_profile_row``);
``profile_get`` reads it, and on a database without it (a flushed test database) returns the unsaved
defaults, which is what a first save starts from.
"""

from __future__ import annotations

import enum
import hashlib
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.db.models import F, Max, OuterRef, Q, QuerySet, Subquery
from django.utils import timezone

from authority.models import CertificateAuthority, CertificateRequest, Crl
from authority.revocation import current_crl
from authority.services import active_ca
from bundles.archive import BundleFile
from bundles.changes import BundleNews, bundle_news
from bundles.errors import BundleError
from bundles.models import Bundle, BundleDownload, DownloadLink, SiteProfile, SyncToken
from bundles.preview import CrlChange, CrlFacts, DiffLine, crl_change, crl_facts, diff_lines, is_crl
from bundles.renderers.bundle import finish
from core.roles import is_ca_admin
from enrollment.models import Peer, PortalKey
from enrollment.selectors import peer_for_user, peers_visible_to

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
class IssuedClients:
    """What the gateway's files say about the issued clients: their FQDNs and their networks."""

    fqdns: tuple[str, ...]
    networks: tuple[tuple[str, tuple[str, ...]], ...]

    @property
    def digest(self) -> str:
        lines = [*self.fqdns, *(f"{fqdn} {' '.join(nets)}" for fqdn, nets in self.networks)]
        return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def issued_clients() -> IssuedClients:
    rows = issued_peers().filter(kind=Peer.Kind.CLIENT).order_by("fqdn", "pk").values_list("fqdn", "networks")
    fqdns = sorted({fqdn for fqdn, _ in rows})
    # During a renewal the old and the new peer are both issued: one entry per FQDN (the newest).
    by_fqdn = {fqdn: tuple(nets) for fqdn, nets in rows}
    networks = tuple((fqdn, nets) for fqdn, nets in sorted(by_fqdn.items()) if nets)
    return IssuedClients(tuple(fqdns), networks)


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


def stale_count() -> int:
    """How many bundles wait to be made (the pages say so, and poll it)."""
    return len(stale_peer_ids())


def bundle_render_blocker(peer: Peer) -> str:
    """Why a peer has no bundle yet, in words for its page."""
    if peer.status != "issued":
        return "The bundle is made once the certificate is issued."
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


# --- the bundle page -------------------------------------------------------------------------


@dataclass(frozen=True)
class FilePreview:
    path: str
    mode: str
    text: str
    diff: tuple[DiffLine, ...]  # the unified diff against the previous version; () when unchanged or new
    status: str  # "new", "changed", "unchanged"
    crl: CrlFacts | None = None  # a CRL's number, dates and size
    crl_change: CrlChange | None = None  # for a changed CRL, what changed in it (shown instead of the diff)


def bundle_versions(peer: Peer, limit: int = 2) -> list[Bundle]:
    return list(Bundle.objects.filter(peer=peer).order_by("-version")[:limit])


def _entries(bundle: Bundle) -> list[tuple[str, int, str]]:
    """(path, mode, text) of every file of a download without a key: the stored files and SHA256SUMS."""
    files = [BundleFile(path=e["path"], content=e["text"].encode("utf-8"), mode=e["mode"]) for e in bundle.files]
    return [(f.path, f.mode, f.content.decode("utf-8")) for f in finish(files)]


def previews(bundle: Bundle, previous: Bundle | None) -> list[FilePreview]:
    before = {path: text for path, _, text in _entries(previous)} if previous is not None else {}
    out = []
    for path, mode, text in _entries(bundle):
        diff: tuple[DiffLine, ...] = ()
        change = None
        if previous is None or path not in before:
            status = "new"
        elif before[path] == text:
            status = "unchanged"
        else:
            status = "changed"
            if is_crl(path):
                change = crl_change(before[path], text)
            if change is None:
                diff = diff_lines(
                    before[path], text, fromfile=f"v{previous.version}/{path}", tofile=f"v{bundle.version}/{path}"
                )
        shown = text if len(text) <= PREVIEW_LIMIT else text[:PREVIEW_LIMIT] + "\n[... cut; download for the rest]\n"
        out.append(
            FilePreview(
                path=path,
                mode=f"{mode:04o}",
                text=shown,
                diff=diff,
                status=status,
                crl=crl_facts(text) if is_crl(path) else None,
                crl_change=change,
            )
        )
    return out


def removed_paths(bundle: Bundle, previous: Bundle | None) -> list[str]:
    if previous is None:
        return []
    now = {e["path"] for e in bundle.files}
    return sorted(e["path"] for e in previous.files if e["path"] not in now)


@dataclass(frozen=True)
class BundlePage:
    """Every file of the latest version, what changed since the previous one, the key and the downloads."""

    peer: Peer
    bundle: Bundle | None
    previous: Bundle | None
    files: list[FilePreview]
    removed: list[str]
    may_download: bool
    portal_key: PortalKey | None
    downloads: QuerySet[BundleDownload]  # the ten latest, read when the page shows them
    waiting: str  # why there is no bundle yet ("" when there is one)
    news: BundleNews | None  # newer than the user's last download, and why (for those who take it)
    key_waiting: bool  # the portal-made key waits for its single delivery


def bundle_page(user: User, peer_id: int) -> BundlePage:
    """The bundle page of a peer the user sees (everyone who sees it reads its files); 404 otherwise."""
    peer = peer_for_user(user, peer_id)
    versions = bundle_versions(peer)
    bundle = versions[0] if versions else None
    previous = versions[1] if len(versions) > 1 else None
    downloads = BundleDownload.objects.filter(bundle__peer=peer).select_related("user", "bundle").order_by("-at")
    portal_key = PortalKey.objects.filter(peer=peer).first()
    return BundlePage(
        peer=peer,
        bundle=bundle,
        previous=previous,
        files=previews(bundle, previous) if bundle is not None else [],
        removed=removed_paths(bundle, previous) if bundle is not None else [],
        may_download=may_download(user, peer),
        portal_key=portal_key,
        downloads=downloads[:10],
        waiting=bundle_render_blocker(peer) if bundle is None else "",
        news=bundle_news(user, [peer]).get(peer.pk) if bundle is not None and previous is not None else None,
        key_waiting=portal_key is not None and portal_key.destroyed_at is None and bool(portal_key.encrypted_pem),
    )


# --- the gateway -----------------------------------------------------------------------------


@dataclass(frozen=True)
class GatewayState:
    latest: Bundle | None
    downloaded_version: int | None  # highest version an admin has downloaded

    @property
    def needs_update(self) -> bool:
        return self.latest is not None and (self.downloaded_version or 0) < self.latest.version


def gateway_state(profile: SiteProfile, gateway: Peer | None) -> GatewayState:
    if gateway is None:
        return GatewayState(None, None)
    latest = Bundle.objects.filter(peer=gateway).order_by("-version").first()
    downloaded = BundleDownload.objects.filter(bundle__peer=gateway).aggregate(v=Max("bundle__version"))["v"]
    return GatewayState(latest, downloaded)


def gateway_needs_update(profile: SiteProfile) -> bool:
    """``gateway_state(...).needs_update`` for the banner on every CA admin's page, in one query when the
    gateway is found at once: its newest version, the newest one an admin downloaded and, when the
    gateway syncs itself (bin/ca-portal-sync), what its live sync token last saw come with it. A
    gateway that syncs and has been heard from lately fetches new files itself: no banner for it."""
    latest = Bundle.objects.filter(peer=OuterRef("pk")).order_by("-version").values("version")[:1]
    downloaded = (
        BundleDownload.objects.filter(bundle__peer=OuterRef("pk"))
        .order_by("-bundle__version")
        .values("bundle__version")[:1]
    )
    token = SyncToken.objects.filter(
        peer__fqdn=OuterRef("fqdn"), peer__kind=Peer.Kind.SERVER, revoked_at__isnull=True
    ).order_by("-pk")
    servers = (
        issued_peers()
        .filter(kind=Peer.Kind.SERVER)
        .only("pk", "fqdn")
        .annotate(
            latest_version=Subquery(latest),
            downloaded_version=Subquery(downloaded),
            sync_token=Subquery(token.values("pk")[:1]),
            sync_running=Subquery(token.values("running_version")[:1]),
            sync_seen=Subquery(token.values("last_seen_at")[:1]),
        )
    )
    gateway: Any = _gateway_among(servers, profile)
    if gateway is None or gateway.latest_version is None:
        return False
    if (gateway.downloaded_version or 0) >= gateway.latest_version:
        return False
    if gateway.sync_token is None:
        return True
    if gateway.sync_running == gateway.latest_version:
        return False
    silent_after = 3 * timedelta(minutes=settings.GATEWAY_SYNC_MINUTES)
    return gateway.sync_seen is None or timezone.now() - gateway.sync_seen > silent_after


@dataclass(frozen=True)
class GatewayOverview:
    """The gateway page: the site profile, the gateway and whether its files are current."""

    profile: SiteProfile
    gateway: Peer | None
    state: GatewayState
    servers: QuerySet[Peer]  # every server peer, read only when the page names them (no gateway yet)
    stale: int  # bundles waiting to be made
    issued_clients: list[str]


def gateway_overview() -> GatewayOverview:
    profile = profile_get()
    gateway = gateway_peer(profile)
    return GatewayOverview(
        profile=profile,
        gateway=gateway,
        state=gateway_state(profile, gateway),
        servers=Peer.objects.filter(kind=Peer.Kind.SERVER).order_by("fqdn"),
        stale=stale_count(),
        issued_clients=issued_client_fqdns(),
    )
