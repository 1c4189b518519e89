"""Reads for the bundle pages: versions, previews, differences, the gateway's state."""

from __future__ import annotations

import difflib
from dataclasses import dataclass

from django.db.models import Max

from bundles.models import Bundle, BundleDownload, SiteProfile
from enrollment.models import Peer

PREVIEW_LIMIT = 64 * 1024


@dataclass(frozen=True)
class FilePreview:
    path: str
    mode: str
    text: str
    diff: str  # unified diff against the previous version; "" when unchanged or no previous version
    status: str  # "new", "changed", "unchanged"


def bundle_versions(peer: Peer, limit: int = 2) -> list[Bundle]:
    return list(Bundle.objects.filter(peer=peer).order_by("-version")[:limit])


def previews(bundle: Bundle, previous: Bundle | None) -> list[FilePreview]:
    before = {e["path"]: e["text"] for e in previous.files} if previous is not None else {}
    out = []
    for entry in bundle.files:
        path, text = entry["path"], entry["text"]
        if previous is None:
            status, diff = "new", ""
        elif path not in before:
            status, diff = "new", ""
        elif before[path] == text:
            status, diff = "unchanged", ""
        else:
            status = "changed"
            diff = "".join(
                difflib.unified_diff(
                    before[path].splitlines(keepends=True),
                    text.splitlines(keepends=True),
                    fromfile=f"v{previous.version}/{path}",
                    tofile=f"v{bundle.version}/{path}",
                )
            )
        shown = text if len(text) <= PREVIEW_LIMIT else text[:PREVIEW_LIMIT] + "\n[... cut; download for the rest]\n"
        out.append(FilePreview(path=path, mode=f"{entry['mode']:04o}", text=shown, diff=diff, status=status))
    return out


def removed_paths(bundle: Bundle, previous: Bundle | None) -> list[str]:
    if previous is None:
        return []
    now = {e["path"] for e in bundle.files}
    return sorted(e["path"] for e in previous.files if e["path"] not in now)


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
