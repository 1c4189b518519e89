"""Reads for the bundle page: every file of the newest version, what changed since the previous one,
and what the user may do with it."""

from __future__ import annotations

from dataclasses import dataclass

from django.contrib.auth.models import User
from django.db.models import QuerySet

from bundles.archive import BundleFile
from bundles.changes import BundleNews, bundle_news
from bundles.models import Bundle, BundleDownload, RenderFailure
from bundles.preview import CrlChange, CrlFacts, DiffLine, crl_change, crl_facts, diff_lines, is_crl
from bundles.renderers.bundle import finish
from bundles.selectors import bundle_render_blocker, may_download, render_failure_of
from enrollment.models import Peer, PortalKey
from enrollment.selectors import peer_for_user

PREVIEW_LIMIT = 64 * 1024


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
    failure: RenderFailure | None = None  # the newest render failed (with a bundle: the one shown is older)


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
        failure=render_failure_of(peer),
        news=bundle_news(user, [peer]).get(peer.pk) if bundle is not None and previous is not None else None,
        key_waiting=portal_key is not None and portal_key.destroyed_at is None and bool(portal_key.encrypted_pem),
    )
