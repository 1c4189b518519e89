"""Assemble the files of one peer's bundle from the per-format renderers (docs/architecture.md layout)."""

from __future__ import annotations

import jinja2

from bundles.archive import BundleFile, sha256sums
from bundles.renderers import scripts
from bundles.renderers.docs import render_install_sh, render_readme
from bundles.renderers.firewall import render_ipf_rules, render_pf_conf
from bundles.renderers.iked import render_iked_conf
from bundles.renderers.isakmpd import render_isakmpd_conf, render_isakmpd_policy
from bundles.renderers.spec import PeerSpec, Site
from bundles.renderers.swanctl import render_swanctl_conf

KEY_PATH = "isakmpd/private/local.key"
SUMS_PATH = "SHA256SUMS"
SECRET = 0o600  # isakmpd refuses configs, policies and keys with any group/other bit (docs/formats.md §1.1)
PUBLIC = 0o644
EXECUTABLE = 0o755


def _text(path: str, text: str, mode: int) -> BundleFile:
    return BundleFile(path=path, content=text.encode("utf-8"), mode=mode)


def render_files(env: jinja2.Environment, site: Site, peer: PeerSpec) -> list[BundleFile]:
    """Every file of the bundle except the private key and SHA256SUMS, sorted by path.

    The key joins only the download that delivers it (``finish``); everything here is safe to
    store, preview and diff.
    """
    files = [
        _text("isakmpd/isakmpd.conf", render_isakmpd_conf(env, site, peer), SECRET),
        _text("isakmpd/isakmpd.policy", render_isakmpd_policy(env, site, peer), SECRET),
        _text("isakmpd/ca/ca.crt", site.ca_cert_pem, PUBLIC),
        _text(f"isakmpd/certs/{peer.fqdn}.crt", peer.cert_pem, PUBLIC),
        _text("iked/iked.conf", render_iked_conf(env, site, peer), SECRET),
        _text("swanctl/swanctl.conf", render_swanctl_conf(env, site, peer), SECRET),
    ]
    if site.crl_pem:
        files.append(_text("isakmpd/crls/ca.crl", site.crl_pem, PUBLIC))
    if peer.is_gateway:
        files.append(_text("firewall/pf.conf", render_pf_conf(env, site, peer), SECRET))
    else:
        files.append(_text("firewall/ipf.rules", render_ipf_rules(env, site, peer), SECRET))
    files.append(_text("install.sh", render_install_sh(env, site, peer), EXECUTABLE))
    files.append(_text(scripts.REFRESH_PATH, scripts.render_refresh(env, site, peer), EXECUTABLE))
    if peer.is_gateway:
        files.append(_text(scripts.SYNC_PATH, scripts.render_sync(env, site, peer), EXECUTABLE))
    listed = sorted([f.path for f in files] + [SUMS_PATH] + ([KEY_PATH] if peer.portal_made_key else []))
    files.append(_text("README.txt", render_readme(env, site, peer, listed), PUBLIC))
    return sorted(files, key=lambda f: f.path)


def finish(files: list[BundleFile], *, key_pem: str | None = None) -> list[BundleFile]:
    """The complete entry list of a download: ``files`` plus the encrypted key if given, plus SHA256SUMS."""
    entries = [f for f in files if f.path not in (KEY_PATH, SUMS_PATH)]
    if key_pem is not None:
        if "BEGIN ENCRYPTED PRIVATE KEY" not in key_pem:
            raise ValueError("a private key goes into a bundle only encrypted")
        entries.append(BundleFile(path=KEY_PATH, content=key_pem.encode("ascii"), mode=SECRET))
    entries.append(BundleFile(path=SUMS_PATH, content=sha256sums(entries).encode("ascii"), mode=PUBLIC))
    return sorted(entries, key=lambda f: f.path)
