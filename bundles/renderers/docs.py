"""The bundle's README.txt and install.sh (pure: spec values in, text out).

README.txt tells the peer's admin what each file is, where it goes and the commands to run,
following the case study's "Setting up the connection" and "Helpful tools" sections.
install.sh does the isakmpd part of that with the right modes; everything it does is spelled
out in the README too, so nobody has to run a script they have not read.

Both are deterministic (no timestamps): they go into the bundle, whose sha256 identifies it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import jinja2

from bundles.archive import validate_path
from bundles.renderers.engine import render
from bundles.renderers.spec import PeerSpec, Site

README_TEMPLATE = "docs/README.txt.j2"
INSTALL_TEMPLATE = "docs/install.sh.j2"
DEFAULT_TARGET = "/etc/isakmpd"
FREEBSD_TARGET = "/usr/local/etc/isakmpd"
PORTAL_KEY_PATH = "isakmpd/private/local.key"


@dataclass(frozen=True)
class FileRow:
    """One line of the README's file list: a bundle path and what to do with it."""

    path: str
    purpose: str


def role(peer: PeerSpec) -> str:
    if peer.is_gateway:
        return "VPN gateway"
    return "client gateway" if peer.networks else "roaming client"


def _purpose(path: str, peer: PeerSpec) -> str:
    """Where a bundle file goes; the README must say something for every file it lists."""
    target = DEFAULT_TARGET
    known = {
        "README.txt": "this file",
        "install.sh": f"installs the isakmpd files into {target} (see INSTALLING)",
        "SHA256SUMS": "checksums of every other file (sha256sum -c SHA256SUMS)",
        "isakmpd/isakmpd.conf": f"-> {target}/isakmpd.conf, mode 0600; install.sh fills in @@MY_IP_ADDRESS@@",
        "isakmpd/isakmpd.policy": f"-> {target}/isakmpd.policy, mode 0600 (KeyNote policy, trusts the CA)",
        "isakmpd/ca/ca.crt": f"-> {target}/ca/ca.crt, mode 0644 (the CA certificate)",
        f"isakmpd/certs/{peer.fqdn}.crt": f"-> {target}/certs/{peer.fqdn}.crt, mode 0644 (this peer's certificate)",
        PORTAL_KEY_PATH: f"-> {target}/private/local.key, mode 0600, decrypted by install.sh (see THE PRIVATE KEY)",
        "isakmpd/crls/ca.crl": f"-> {target}/crls/ca.crl, mode 0644 (certificates the CA revoked)",
        "firewall/ipf.rules": "-> /etc/ipf.rules, mode 0600 (FreeBSD ipfilter; see FIREWALL)",
        "firewall/pf.conf": "-> /etc/pf.conf, mode 0600 (OpenBSD pf; see FIREWALL)",
        "iked/iked.conf": "-> /etc/iked.conf, mode 0600 (OpenBSD iked, IKEv2; see ALTERNATIVES)",
        "swanctl/swanctl.conf": "-> /etc/swanctl/swanctl.conf, mode 0600 (strongSwan; see ALTERNATIVES)",
        "bin/ca-portal-refresh": f"-> {target}/bin/, mode 0755: fetches the CA's new CRLs (see STAYING CURRENT)",
        "bin/ca-portal-sync": f"-> {target}/bin/, mode 0755: installs the gateway's new files (see AUTOMATIC SYNC)",
    }
    return known.get(path, "an extra file from the portal; see its first lines")


def _rows(paths: Sequence[str], peer: PeerSpec) -> list[FileRow]:
    checked = sorted({validate_path(p) for p in paths})
    return [FileRow(path=p, purpose=_purpose(p, peer)) for p in checked]


def render_readme(env: jinja2.Environment, site: Site, peer: PeerSpec, paths: Sequence[str]) -> str:
    """README.txt for ``peer``; ``paths`` are the bundle's files (relative to ``<fqdn>/``)."""
    rows = _rows(paths, peer)
    present = {row.path for row in rows}
    return render(
        env,
        README_TEMPLATE,
        site=site,
        peer=peer,
        role=role(peer),
        rows=rows,
        has_portal_key=PORTAL_KEY_PATH in present,
        has_crl="isakmpd/crls/ca.crl" in present,
        has_iked="iked/iked.conf" in present,
        has_swanctl="swanctl/swanctl.conf" in present,
        has_refresh="bin/ca-portal-refresh" in present,
        has_sync="bin/ca-portal-sync" in present,
        default_target=DEFAULT_TARGET,
        freebsd_target=FREEBSD_TARGET,
    )


def render_install_sh(env: jinja2.Environment, site: Site, peer: PeerSpec) -> str:
    """install.sh for ``peer``. It decides at run time which optional files the bundle holds."""
    return render(
        env,
        INSTALL_TEMPLATE,
        site=site,
        peer=peer,
        role=role(peer),
        default_target=DEFAULT_TARGET,
        freebsd_target=FREEBSD_TARGET,
    )
