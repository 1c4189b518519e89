"""The gateway's automatic sync: sync tokens (services, audited) and what the gateway page shows.

A CA admin gives the site's gateway a sync token: 256 bits, shown once, stored as SHA-256, one live
token per gateway, revocable. install.sh --sync-token-file keeps it on the gateway (TARGET/private,
mode 0600); it never goes into a bundle. bin/ca-portal-sync presents it (``Authorization: Bearer``)
to GET /api/v1/gateway/bundle (``bundles.sync_api``), naming the version it runs in If-None-Match,
and gets 304 until the gateway's bundle changes, then the zip, built as every download is, without
a private key ever (a key the portal made is delivered only to a person, ``bundle_download``).

Sync downloads are not BundleDownload rows: those keep a version from pruning, and a gateway that
syncs every version would keep every one (each holds every issued client). The audit log keeps what
was sent (``bundle.synced``: version, SHA-256, address, token), the token row what runs.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone

from authority.audit import audit_record
from bundles.archive import BundleFile, build_zip
from bundles.errors import BundleError
from bundles.models import Bundle, SyncToken
from bundles.renderers.bundle import finish
from bundles.selectors import gateway_peer, latest_bundle, profile_get
from core.roles import is_ca_admin
from enrollment.models import Peer

TOKEN_PREFIX = "cps_"  # noqa: S105 - "ca_portal sync": makes a token recognisable in a file or a leak scanner
_SHA256_HEX = frozenset("0123456789abcdef")


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("ascii", "replace")).hexdigest()


def _site_gateway() -> Peer:
    gateway = gateway_peer(profile_get())
    if gateway is None:
        raise BundleError("the site has no gateway yet (an issued server peer, chosen on the gateway page)", status=409)
    return gateway


def _live_tokens_of(fqdn: str) -> list[SyncToken]:
    return list(
        SyncToken.objects.select_for_update()
        .filter(peer__fqdn=fqdn, peer__kind=Peer.Kind.SERVER, revoked_at__isnull=True)
        .order_by("pk")
    )


def sync_token_create(*, actor: User) -> tuple[str, SyncToken]:
    """A new sync token for the site's gateway; a live one it had is revoked. Returns the token once."""
    if not is_ca_admin(actor):
        raise BundleError("only CA admins give the gateway a sync token", status=403)
    gateway = _site_gateway()
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)  # 256 bits
    now = timezone.now()
    with transaction.atomic():
        for old in _live_tokens_of(gateway.fqdn):
            _revoke(old, actor=actor.get_username(), reason="replaced", now=now)
        created = SyncToken.objects.create(
            peer=gateway, token_hash=_token_hash(token), hint=token[-4:], created_by=actor
        )
        audit_record(
            "bundle.sync_token_created",
            actor=actor.get_username(),
            target=f"peer:{gateway.pk}",
            token=created.pk,
            hint=created.hint,
        )
    return token, created


def sync_token_revoke(*, actor: User) -> SyncToken:
    """Revoke the gateway's live sync token: its next request is refused (401)."""
    if not is_ca_admin(actor):
        raise BundleError("only CA admins revoke the gateway's sync token", status=403)
    gateway = _site_gateway()
    with transaction.atomic():
        live = _live_tokens_of(gateway.fqdn)
        if not live:
            raise BundleError("the gateway has no sync token to revoke", status=409)
        for token in live:
            _revoke(token, actor=actor.get_username(), reason="revoked", now=timezone.now())
    return live[-1]


def _revoke(token: SyncToken, *, actor: str, reason: str, now: datetime) -> None:
    won = SyncToken.objects.filter(pk=token.pk, revoked_at__isnull=True).update(revoked_at=now, revoked_by=actor)
    if won:
        token.revoked_at, token.revoked_by = now, actor
        audit_record(
            "bundle.sync_token_revoked",
            actor=actor,
            target=f"peer:{token.peer_id}",
            token=token.pk,
            hint=token.hint,
            reason=reason,
        )


def sync_token_authenticate(raw: str) -> SyncToken | None:
    """The live token ``raw`` names, or None. Compared by its SHA-256 (an index lookup)."""
    if not raw.startswith(TOKEN_PREFIX) or len(raw) > 100:
        return None
    return SyncToken.objects.select_related("peer").filter(token_hash=_token_hash(raw), revoked_at__isnull=True).first()


@dataclass(frozen=True)
class SyncAnswer:
    bundle: Bundle
    data: bytes | None  # None: the gateway runs this version already (304)
    sha256: str

    @property
    def not_modified(self) -> bool:
        return self.data is None


def entity_tags(header: str) -> list[str]:
    """The SHA-256 tags of an If-None-Match header, in order ("W/" and anything else ignored)."""
    tags = []
    for item in header.split(","):
        tag = item.strip().removeprefix("W/").strip('"')
        if len(tag) == 64 and set(tag) <= _SHA256_HEX:
            tags.append(tag)
    return tags[:8]


def gateway_sync(*, token: SyncToken, if_none_match: str, address: str | None) -> SyncAnswer:
    """What the gateway gets for ``token``: 304 while it runs the newest version, else the zip.

    The first tag of If-None-Match names the version the gateway runs (ca-portal-sync sends the one
    it installed first, then one it refused); the page shows it.
    """
    gateway = _site_gateway()
    if gateway.fqdn != token.peer.fqdn:
        raise BundleError("this sync token belongs to a gateway that is no longer the site's gateway", status=403)
    bundle = latest_bundle(gateway)
    if bundle is None:
        raise BundleError("the gateway's bundle is not made yet", status=409)
    tags = entity_tags(if_none_match)
    running_sha = tags[0] if tags else ""
    running_version = _version_of(gateway, token, running_sha)
    now = timezone.now()
    SyncToken.objects.filter(pk=token.pk).update(
        last_seen_at=now, last_address=address, running_sha256=running_sha, running_version=running_version
    )
    if bundle.sha256 in tags:
        return SyncAnswer(bundle, None, bundle.sha256)
    if token.served_version == bundle.version and token.served_sha256 in tags:  # (another zlib, other bytes)
        return SyncAnswer(bundle, None, token.served_sha256)

    files = [BundleFile(path=e["path"], content=e["text"].encode("utf-8"), mode=e["mode"]) for e in bundle.files]
    data = build_zip(gateway.fqdn, finish(files))  # never a key: finish() without key_pem
    digest = hashlib.sha256(data).hexdigest()
    with transaction.atomic():
        # One event per version a token is sent, however often the gateway asks for it (a gateway
        # that cannot install it asks again every few minutes).
        first = (
            SyncToken.objects.filter(pk=token.pk)
            .exclude(served_sha256=digest)
            .update(served_sha256=digest, served_version=bundle.version)
        )
        if first:
            audit_record(
                "bundle.synced",
                actor=f"sync-token:{token.pk}",
                target=f"peer:{gateway.pk}",
                version=bundle.version,
                sha256=digest,
                address=address or "",
            )
    return SyncAnswer(bundle, data, digest)


def _version_of(gateway: Peer, token: SyncToken, sha256: str) -> int | None:
    if not sha256:
        return None
    if sha256 == token.served_sha256:
        return token.served_version
    return Bundle.objects.filter(peer__fqdn=gateway.fqdn, sha256=sha256).values_list("version", flat=True).first()


# --- what the gateway page shows --------------------------------------------------------------


@dataclass(frozen=True)
class SyncState:
    token: SyncToken | None
    interval: timedelta
    latest_version: int | None

    @property
    def on(self) -> bool:
        return self.token is not None

    @property
    def minutes(self) -> int:
        return int(self.interval.total_seconds() // 60)

    @property
    def current(self) -> bool:
        """The gateway runs the newest version."""
        return (
            self.token is not None
            and self.latest_version is not None
            and self.token.running_version == self.latest_version
        )

    @property
    def silent(self) -> bool:
        """Sync is on but the gateway has not asked for three intervals (or never)."""
        if self.token is None:
            return False
        seen = self.token.last_seen_at
        return seen is None or timezone.now() - seen > 3 * self.interval


def gateway_sync_state(gateway: Peer | None) -> SyncState:
    interval = timedelta(minutes=settings.GATEWAY_SYNC_MINUTES)
    if gateway is None:
        return SyncState(None, interval, None)
    token = (
        SyncToken.objects.filter(peer__fqdn=gateway.fqdn, peer__kind=Peer.Kind.SERVER, revoked_at__isnull=True)
        .select_related("created_by")
        .order_by("-pk")
        .first()
    )
    latest = latest_bundle(gateway)
    return SyncState(token, interval, latest.version if latest is not None else None)
