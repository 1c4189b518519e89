"""Reads for the gateway page, the gateway banner on every CA admin's page, and the overview's
first-run checklist."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db.models import Max, OuterRef, QuerySet, Subquery
from django.utils import timezone

from authority.services import active_ca
from bundles.models import Bundle, BundleDownload, RenderFailure, SiteProfile, SyncToken
from bundles.selectors import (
    RefusedClient,
    _gateway_among,
    gateway_peer,
    issued_clients,
    issued_peers,
    profile_get,
    render_failure_of,
    stale_peer_ids,
)
from enrollment.models import Peer

PREVIEW_LIMIT = 64 * 1024


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
    stale: int  # bundles waiting to be made (failing ones not counted: they are in ``failures``)
    issued_clients: list[str]
    failures: list[RenderFailure] = field(default_factory=list)  # issued peers whose files could not be made
    left_out: tuple[RefusedClient, ...] = ()  # issued clients the gateway's files leave out
    gateway_failure: RenderFailure | None = None  # the gateway's own files could not be made
    # The gateway's files were made and name every issued client: only then are they "current".
    files_complete: bool = True
    unrecorded: tuple[RefusedClient, ...] = ()  # left out, and not in ``failures`` yet (the next render marks them)


FAILURES_SHOWN = 100


def render_failures(limit: int = FAILURES_SHOWN) -> list[RenderFailure]:
    """The issued peers whose newest files could not be made, with why (the gateway page lists them)."""
    failing = RenderFailure.objects.filter(peer__in=issued_peers()).select_related("peer")
    return list(failing.order_by("-left_out", "peer__fqdn", "peer_id")[:limit])


def gateway_overview() -> GatewayOverview:
    profile = profile_get()
    gateway = gateway_peer(profile)
    clients = issued_clients()
    failures = render_failures()
    failing = set(RenderFailure.objects.values_list("peer_id", flat=True)) if failures else set()
    gateway_failure = render_failure_of(gateway) if gateway is not None and gateway.pk in failing else None
    return GatewayOverview(
        profile=profile,
        gateway=gateway,
        state=gateway_state(profile, gateway),
        servers=Peer.objects.filter(kind=Peer.Kind.SERVER).order_by("fqdn"),
        stale=len([peer_id for peer_id in stale_peer_ids() if peer_id not in failing]),
        issued_clients=list(clients.fqdns),
        failures=failures,
        left_out=clients.refused,
        gateway_failure=gateway_failure,
        files_complete=gateway_failure is None and not clients.refused,
        unrecorded=tuple(client for client in clients.refused if client.peer_id not in failing),
    )


# --- the overview's first-run checklist -----------------------------------------------------------


@dataclass(frozen=True)
class SetupStep:
    """One step from an empty site to the first client bundle: done, or where to do it."""

    key: str  # ca, gateway, profile, client
    title: str
    done: bool
    note: str  # what is there, or what is missing
    peer: Peer | None = None  # the gateway or client that is on its way (pending, signing), if any


def setup_steps() -> list[SetupStep]:
    """The CA admins' first-run checklist: CA, then the gateway, the site profile and a first client.

    A handful of small reads, for CA admins on the overview only (not in the context processor).
    """
    ca = active_ca()
    profile = profile_get()
    gateway = gateway_peer(profile)
    live = Peer.objects.filter(retired_at__isnull=True).exclude(decision=Peer.Decision.REJECTED)
    server_on_way = None if gateway is not None else live.filter(kind=Peer.Kind.SERVER).order_by("pk").first()
    client = issued_peers().filter(kind=Peer.Kind.CLIENT).order_by("pk").first()
    client_on_way = None if client is not None else live.filter(kind=Peer.Kind.CLIENT).order_by("pk").first()
    saved = profile.updated_by_id is not None or profile.generation > 1
    return [
        SetupStep("ca", "Certificate authority", ca is not None, ca.common_name if ca is not None else "no CA yet"),
        SetupStep(
            "gateway",
            "VPN gateway",
            gateway is not None,
            gateway.fqdn
            if gateway is not None
            else (f"{server_on_way.fqdn}: {server_on_way.progress}" if server_on_way else "not registered"),
            server_on_way,
        ),
        SetupStep("profile", "Site profile", saved, "saved" if saved else "the defaults: interfaces, suite, services"),
        SetupStep(
            "client",
            "First client",
            client is not None,
            client.fqdn
            if client is not None
            else (f"{client_on_way.fqdn}: {client_on_way.progress}" if client_on_way else "none yet"),
            client_on_way,
        ),
    ]
