"""The bundle's bin/ scripts: ca-portal-refresh (every bundle) and ca-portal-sync (the gateway's).

Pure, like every renderer: spec values in, text out, deterministic. Both are POSIX sh; install.sh
copies them into TARGET/bin (mode 0755) and schedules them. The URLs they fetch come from the site
spec, where they passed ``spec.validate_url``; they are single-quoted into the scripts as well.

- ca-portal-refresh fetches the CRL from its distribution point (the portal's /crl.der unless the
  spec names another) and replaces the installed CRL after checking signature, number and dates.
- ca-portal-sync fetches the gateway's current bundle from ``SYNC_API_PATH`` with the gateway's sync
  token (kept in TARGET/private, never in a bundle) and installs it with the bundle's own install.sh.
"""

from __future__ import annotations

import jinja2

from bundles.renderers.docs import DEFAULT_TARGET, role
from bundles.renderers.engine import render
from bundles.renderers.spec import PeerSpec, Site

REFRESH_PATH = "bin/ca-portal-refresh"
SYNC_PATH = "bin/ca-portal-sync"
REFRESH_TEMPLATE = "bin/ca-portal-refresh.j2"
SYNC_TEMPLATE = "bin/ca-portal-sync.j2"
SYNC_API_PATH = "/api/v1/gateway/bundle"
# Where install.sh --sync-token-file puts the token, relative to the target (private/ is 0700).
SYNC_TOKEN_FILE = "private/ca-portal-sync.token"  # noqa: S105 - a path, not a secret


def sync_url(site: Site) -> str:
    return f"{site.portal_url.rstrip('/')}{SYNC_API_PATH}" if site.portal_url else ""


def render_refresh(env: jinja2.Environment, site: Site, peer: PeerSpec) -> str:
    return render(
        env,
        REFRESH_TEMPLATE,
        site=site,
        peer=peer,
        role=role(peer),
        crl_url=site.crl_distribution_point,
        default_target=DEFAULT_TARGET,
    )


def render_sync(env: jinja2.Environment, site: Site, peer: PeerSpec) -> str:
    """The gateway's sync script; a client's bundle has none (only the gateway's files follow the site)."""
    if not peer.is_gateway:
        raise ValueError("only the gateway's bundle carries ca-portal-sync")
    return render(
        env,
        SYNC_TEMPLATE,
        site=site,
        peer=peer,
        role=role(peer),
        sync_url=sync_url(site),
        token_file=SYNC_TOKEN_FILE,
        default_target=DEFAULT_TARGET,
    )
