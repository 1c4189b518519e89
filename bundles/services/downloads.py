"""Downloads and one-time links: who takes which bundle, the portal-made key's single delivery (T22, T24, T25).

Each asks ``bundles.selectors.download_access`` once; the caller says how a refusal reads
(``Refusal``), so views and the API pass it on unchanged.
"""

from __future__ import annotations

import enum
import hashlib
import logging
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.contrib.auth.models import User
from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from authority.audit import audit_record
from bundles import selectors, task_names
from bundles.archive import BundleFile, build_zip
from bundles.errors import BundleError
from bundles.models import Bundle, BundleDownload, DownloadLink
from bundles.renderers.bundle import finish
from bundles.selectors import Access
from core.tasks import send_by_name
from enrollment.models import Peer, PortalKey

LINK_TTL = timedelta(minutes=10)

logger = logging.getLogger(__name__)


class Refusal(enum.Enum):
    """How a download or a link answers a user who may not take the peer's bundle."""

    FORBIDDEN = "forbidden"  # 403 whoever asks (and 404 only for a peer that does not exist)
    # The pages: 404 for a peer the user does not see, as for one that does not exist; 403 (with the way
    # back to the bundle page) for one they see.
    HIDE_UNSEEN = "hide-unseen"
    # The API: 404 for every peer the user may not take; whether a bundle exists is not for them.
    NOT_FOUND = "not-found"


@dataclass(frozen=True)
class Download:
    filename: str
    data: bytes
    sha256: str
    bundle: Bundle  # its .peer is the downloaded peer, read with it
    with_key: bool
    key_was_delivered_before: bool

    @property
    def peer(self) -> Peer:
        return self.bundle.peer


def _peer(peer_id: int, *, lock: bool) -> Peer:
    peers = Peer.objects.select_for_update(of=("self",)) if lock else Peer.objects.all()
    peer = peers.filter(pk=peer_id).first()
    if peer is None:
        raise BundleError("no such peer", status=404)
    return peer


def _authorize(user: User, peer: Peer, refusal: Refusal) -> None:
    """The one authorization of a download or a link: returns when ``user`` may take the bundle."""
    access = selectors.download_access(user, peer)
    if access is Access.TAKE:
        return
    seen = access is Access.SEE
    if refusal is Refusal.FORBIDDEN or (refusal is Refusal.HIDE_UNSEEN and seen):
        raise BundleError("you may not download this bundle", status=403, peer=peer if seen else None)
    raise BundleError("no bundle you may download" if seen else "no such peer", status=404)


def bundle_download(
    *,
    peer_id: int,
    user: User,
    address: str | None,
    via: str,
    release_key: bool = True,
    refusal: Refusal = Refusal.FORBIDDEN,
    link_id: int | None = None,
) -> Download:
    """Build the zip for ``user``; the first download of a portal-made key takes the key with it.

    The encrypted key is read and destroyed in the same transaction that records the download, so
    two simultaneous downloads cannot both get it. ``release_key=False`` (API calls authenticated
    by a session cookie, which a cross-site page could trigger) leaves the key where it is.
    """
    with transaction.atomic():
        peer = _peer(peer_id, lock=True)
        _authorize(user, peer, refusal)
        bundle = selectors.latest_bundle(peer)
        if bundle is None:
            raise _not_made(peer, "the bundle is not ready yet; it is made a few seconds after issuance")
        key_pem = None
        delivered_before = False
        portal_key = PortalKey.objects.select_for_update().filter(peer=peer).first()
        if portal_key is not None:
            if portal_key.destroyed_at is not None:
                delivered_before = True
            elif release_key and portal_key.encrypted_pem:
                key_pem = portal_key.encrypted_pem
                portal_key.encrypted_pem = ""
                portal_key.destroyed_at = timezone.now()
                portal_key.save(update_fields=["encrypted_pem", "destroyed_at"])
        files = [BundleFile(path=e["path"], content=e["text"].encode("utf-8"), mode=e["mode"]) for e in bundle.files]
        data = build_zip(peer.fqdn, finish(files, key_pem=key_pem))
        digest = hashlib.sha256(data).hexdigest()
        BundleDownload.objects.create(
            bundle=bundle, user=user, address=address, sha256=digest, via=via, with_key=key_pem is not None
        )
        audit_record(
            "bundle.downloaded",
            actor=user.get_username(),
            target=f"peer:{peer.pk}",
            version=bundle.version,
            sha256=digest,
            address=address or "",
            via=via,
            with_key=key_pem is not None,
            **({"link": link_id} if link_id is not None else {}),
        )
        if key_pem is not None:
            audit_record("peer.key_destroyed", actor=user.get_username(), target=f"peer:{peer.pk}", reason="delivered")
            transaction.on_commit(lambda: _render_soon(peer_id))
            transaction.on_commit(wal_checkpoint)
    return Download(f"{peer.fqdn}.zip", data, digest, bundle, key_pem is not None, delivered_before)


def _not_made(peer: Peer, waiting: str) -> BundleError:
    """409 for a peer without a bundle: why it could not be made, or that it is on its way."""
    failure = selectors.render_failure_of(peer)
    return BundleError(failure.message if failure is not None else waiting, status=409, peer=peer)


def wal_checkpoint() -> None:
    """After a key's destruction has committed: on SQLite, move the WAL into the database and empty it.

    Until a checkpoint, the WAL still holds the frames of the pages that carried the encrypted key
    (the database file's pages are overwritten by the checkpoint); TRUNCATE also cuts the WAL file to
    nothing, so no old frame survives in it (T38; tests/browser/test_bundles.py scans both files).
    PostgreSQL keeps the old tuple until VACUUM, which is its operator's business. A checkpoint
    blocked by a reader only delays this: the key is gone from the row either way, so a failure is
    logged, never raised.
    """
    if connection.vendor != "sqlite":
        return
    try:
        with connection.cursor() as cursor:
            cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            busy, _, _ = cursor.fetchone()
    except DatabaseError:
        logger.exception("the WAL checkpoint after a key's destruction failed")
        return
    if busy:
        logger.warning("the WAL checkpoint after a key's destruction was blocked; the next one clears it")


def _render_soon(peer_id: int) -> None:
    """After the key's delivery: the README and SHA256SUMS no longer list it."""
    send_by_name(task_names.BUNDLE_RENDER, peer_id)


def link_create(
    *,
    peer_id: int,
    user: User,
    with_key: bool = False,
    now: datetime | None = None,
    refusal: Refusal = Refusal.FORBIDDEN,
) -> tuple[str, DownloadLink]:
    """A one-time link to the peer's bundle, made by a user who may take it; the token is returned once,
    stored hashed.

    Whoever holds the token redeems the link once, without signing in: the token is the credential.
    So the portal-made key (while it waits for its single delivery) goes with the link only when the
    maker asks for it (``with_key``); otherwise the key stays for the maker's own download.
    """
    peer = _peer(peer_id, lock=False)
    _authorize(user, peer, refusal)
    if selectors.latest_bundle(peer) is None:
        raise _not_made(peer, "the bundle is not ready yet")
    token = secrets.token_urlsafe(32)  # 256 bits
    created = now or timezone.now()
    with transaction.atomic():
        with_key = with_key and selectors.portal_key_waiting(peer)
        link = DownloadLink.objects.create(
            peer=peer,
            user=user,
            token_hash=selectors.link_token_hash(token),
            expires_at=created + LINK_TTL,
            with_key=with_key,
        )
        audit_record(
            "bundle.link_created",
            actor=user.get_username(),
            target=f"peer:{peer.pk}",
            link=link.pk,
            expires_at=link.expires_at.isoformat(),
            with_key=with_key,
        )
    return token, link


def link_redeem(*, token: str, address: str | None) -> Download:
    """Redeem a one-time link, signed in or not: one conditional UPDATE decides the single winner (T24).

    The download is its maker's (authorised again now: a maker who may no longer take the bundle
    makes links that give nothing) and is audited with the redeeming ``address`` and the link's id.
    The portal-made key goes with it only if the maker chose so when making the link.
    """
    link = selectors.link_state(token)
    with transaction.atomic():
        now = timezone.now()
        won = DownloadLink.objects.filter(pk=link.pk, used_at__isnull=True, expires_at__gt=now).update(used_at=now)
        if won != 1:
            raise BundleError("this link has already been used", status=410)
        return bundle_download(
            peer_id=link.peer_id,
            user=link.user,
            address=address,
            via=BundleDownload.Via.LINK,
            release_key=link.with_key,
            refusal=Refusal.NOT_FOUND,  # nothing about the peer for whoever holds a dead link
            link_id=link.pk,
        )
