"""README.txt: the peer's instructions, golden for the case study's three peers."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from bundles.renderers.docs import render_readme
from bundles.renderers.engine import environment
from bundles.renderers.spec import SUITES, PeerSpec
from devtools.bundlecase import client_peer, gateway_peer, laptop_peer, site
from tests.unit.bundles.golden import assert_matches_golden

PEERS: dict[str, Callable[[], PeerSpec]] = {
    "www.example.com": gateway_peer,
    "client.example.com": client_peer,
    "laptop.example.com": laptop_peer,
}


def bundle_paths(peer: PeerSpec, *, crl: bool = False) -> list[str]:
    """The bundle layout of docs/architecture.md for ``peer`` (relative to ``<fqdn>/``)."""
    paths = [
        "README.txt",
        "install.sh",
        "SHA256SUMS",
        "isakmpd/isakmpd.conf",
        "isakmpd/isakmpd.policy",
        "isakmpd/ca/ca.crt",
        f"isakmpd/certs/{peer.fqdn}.crt",
        "firewall/pf.conf" if peer.is_gateway else "firewall/ipf.rules",
        "iked/iked.conf",
        "swanctl/swanctl.conf",
        "bin/ca-portal-refresh",
    ]
    if peer.is_gateway:
        paths.append("bin/ca-portal-sync")
    if peer.portal_key_pem is not None:
        paths.append("isakmpd/private/local.key")
    if crl:
        paths.append("isakmpd/crls/ca.crl")
    return paths


def readme(peer: PeerSpec, **site_changes: object) -> str:
    crl = bool(site_changes.get("crl_pem"))
    return render_readme(environment(), site(**site_changes), peer, bundle_paths(peer, crl=crl))


@pytest.mark.parametrize("fqdn", sorted(PEERS))
def test_it_matches_the_golden_readme(fqdn: str) -> None:
    assert_matches_golden(f"casestudy/{fqdn}/README.txt", readme(PEERS[fqdn]()))


@pytest.mark.parametrize("fqdn", sorted(PEERS))
def test_it_lists_every_file_of_the_bundle(fqdn: str) -> None:
    peer = PEERS[fqdn]()
    text = readme(peer, crl_pem="-----BEGIN X509 CRL-----\n")
    for path in bundle_paths(peer, crl=True):
        assert f"\n  {path}\n      " in text, path
    assert "an extra file" not in text  # every file of the layout has its own explanation


@pytest.mark.parametrize("fqdn", sorted(PEERS))
def test_it_stays_within_72_columns(fqdn: str) -> None:
    long_lines = [line for line in readme(PEERS[fqdn]()).splitlines() if len(line) > 72]
    assert long_lines == []


def test_it_explains_each_role() -> None:
    assert "Role:           VPN gateway" in readme(gateway_peer())
    assert "pfctl -nf firewall/pf.conf" in readme(gateway_peer())
    assert "Role:           client gateway" in readme(client_peer())
    assert "Your networks:  10.10.10.0/24 (behind fxp1)" in readme(client_peer())
    assert "ipf -Fa -f /etc/ipf.rules" in readme(client_peer())
    assert 'ipfilter_enable="YES"' in readme(client_peer())
    assert "Role:           roaming client" in readme(laptop_peer())


def test_it_gives_the_debugging_steps_of_the_case_study() -> None:
    text = readme(laptop_peer())
    assert "isakmpd -d -D A=99 -l /tmp/ike.pcap -c /etc/isakmpd/isakmpd.conf" in text
    assert "> /tmp/ike.debug 2>&1 &" in text
    assert "tshark -V -r /tmp/ike.pcap" in text
    for tool in ("ipmon", "pflog0", "netstat -rn", "ipsecctl -sa"):
        assert tool in text, tool
    assert "WITHOUT -K" in text
    assert "sh install.sh --dry-run" in text
    assert "sh install.sh /usr/local/etc/isakmpd" in text


def test_it_explains_the_portal_made_key() -> None:
    text = readme(laptop_peer())
    assert "The portal made this peer's key" in text
    assert "passphrase the portal showed you once" in text
    assert "The portal does not keep the key after this download" in text
    assert "This bundle holds no private key" not in text


def test_it_explains_the_peers_own_key() -> None:
    text = readme(client_peer())
    assert "This bundle holds no private key" in text
    assert "PEM, RSA, not encrypted, mode 0600 (isakmpd cannot use ECDSA keys)" in text
    assert "The portal made this peer's key" not in text


def test_it_warns_loudly_about_a_legacy_suite() -> None:
    legacy = readme(gateway_peer(), suite=SUITES["legacy-3des-sha1-modp1024"])
    assert "LEGACY CRYPTO" in legacy
    assert "LEGACY" not in readme(gateway_peer())


def test_it_names_the_portal_for_downloads() -> None:
    assert "Download the bundle again from https://ca.example.com after a" in readme(client_peer())
    assert "Download the bundle again from the portal" in readme(client_peer(), portal_url="")


def test_it_refuses_an_unsafe_path() -> None:
    with pytest.raises(ValueError, match="refusing bundle path"):
        render_readme(environment(), site(), client_peer(), ["README.txt", "../etc/passwd"])
