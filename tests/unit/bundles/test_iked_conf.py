"""iked.conf: golden files, keyword order and quoting read back, and ``iked -n`` on every rendering.

``iked -n`` (openiked) parses the file exactly as the daemon would. When iked is not installed
the checks skip, unless CA_PORTAL_REQUIRE_TOOLS=1 (CI), which turns the skip into a failure.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from bundles.renderers.engine import environment
from bundles.renderers.iked import render_iked_conf
from bundles.renderers.readers import pf
from bundles.renderers.spec import SUITES, WEAK_TOKENS, PeerSpec, Site
from tests.bundlecase import client_peer, gateway_peer, laptop_peer, site
from tests.unit.bundles.golden import assert_matches_golden

PEERS: dict[str, Callable[[], PeerSpec]] = {
    "www.example.com": gateway_peer,
    "client.example.com": client_peer,
    "laptop.example.com": laptop_peer,
}
# The policy grammar's keywords in their one allowed order (ipsec-formats.md §5.2).
ORDER = ("ikev2", "passive", "active", "esp", "from", "local", "peer", "ikesa", "childsa", "srcid", "dstid")
ORDER += ("ikelifetime", "lifetime", "rfc7427")
# WEAK_TOKENS as iked and strongSwan spell them, plus SHA-1 (hmac-sha1, sha1).
WEAK = {t.lower().replace("_", "") for t in WEAK_TOKENS} | {"blowfish", "sha1"}


def iked_conf(peer: PeerSpec, site_: Site | None = None) -> str:
    return render_iked_conf(environment(), site_ or site(), peer)


def policies(text: str) -> list[tuple[str, ...]]:
    """Each policy's words (iked's lexer is pfctl's, so readers.pf reads it)."""
    statements = pf.statements(text)
    assert all(s.words[0] == "ikev2" for s in statements)
    return [s.words for s in statements]


def algorithms(policy: tuple[str, ...]) -> set[str]:
    """The algorithm words after ikesa/childsa, split at dashes (hmac-sha2-256 -> hmac, sha2, 256)."""
    start, end = policy.index("ikesa"), policy.index("srcid")
    return {part for word in policy[start:end] for part in word.split("-")}


def iked_binary() -> str:
    found = shutil.which("iked") or next(
        (p for p in ("/usr/sbin/iked", "/usr/local/sbin/iked") if os.access(p, os.X_OK)), None
    )
    if found is None:
        if os.environ.get("CA_PORTAL_REQUIRE_TOOLS") == "1":
            pytest.fail("iked is not installed and CA_PORTAL_REQUIRE_TOOLS=1 (apt-get install openiked)")
        pytest.skip("iked is not installed (apt-get install openiked); iked -n checks skipped")
    return found


def iked_n(text: str, tmp_path: Path) -> list[str]:
    """Run ``iked -n -vv`` on ``text``; return the policies as iked prints them back."""
    conf = tmp_path / "iked.conf"
    conf.write_text(text)
    conf.chmod(0o600)  # iked refuses group- or world-accessible files (§5.1)
    result = subprocess.run([iked_binary(), "-n", "-vv", "-f", str(conf)], capture_output=True, text=True, timeout=30)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "configuration OK" in output, output
    return [line for line in output.splitlines() if line.startswith("ikev2 ")]


@pytest.mark.parametrize("fqdn", sorted(PEERS))
def test_it_matches_the_golden_iked_conf(fqdn: str) -> None:
    assert_matches_golden(f"casestudy/{fqdn}/iked.conf", iked_conf(PEERS[fqdn]()))


@pytest.mark.parametrize("fqdn", sorted(PEERS))
def test_it_keeps_the_fixed_keyword_order(fqdn: str) -> None:
    for policy in policies(iked_conf(PEERS[fqdn]())):
        seen = [ORDER.index(w) for w in policy if w in ORDER]
        assert seen == sorted(seen), policy
        assert policy[-1] == "rfc7427"  # SHA2-256 signatures, not "rsa" (SHA-1)


def test_it_writes_one_passive_policy_per_gateway_network_on_the_gateway() -> None:
    gateway = dataclasses.replace(site().gateway, networks=("10.1.1.0/24", "10.2.0.0/16"))
    got = policies(iked_conf(gateway_peer(), site(gateway=gateway)))
    assert [p[:6] for p in got] == [
        ("ikev2", "roaming-1", "passive", "esp", "from", "10.1.1.0/24"),
        ("ikev2", "roaming-2", "passive", "esp", "from", "10.2.0.0/16"),
    ]
    for p in got:
        assert p[6:12] == ("to", "any", "local", "192.0.34.72", "peer", "any")
        assert "dstid" not in p  # any client of the CA


def test_it_quotes_the_identities() -> None:
    for name, peer in PEERS.items():
        for stmt in pf.statements(iked_conf(peer())):
            tokens = stmt.tokens
            words = stmt.words
            src = tokens[words.index("srcid") + 1]
            assert (src.kind, src.text) == ("string", name)
            if name != "www.example.com":
                dst = tokens[words.index("dstid") + 1]
                assert (dst.kind, dst.text) == ("string", "www.example.com")


def test_it_carries_what_each_client_has() -> None:
    flows = {name: policies(iked_conf(peer()))[0][4:8] for name, peer in PEERS.items() if name != "www.example.com"}
    assert flows == {
        "client.example.com": ("from", "10.10.10.0/24", "to", "10.1.1.0/24"),
        "laptop.example.com": ("from", "any", "to", "10.1.1.0/24"),
    }
    pinned = policies(iked_conf(laptop_peer(address="198.51.100.7")))[0]
    assert pinned[4:12] == ("from", "198.51.100.7", "to", "10.1.1.0/24", "local", "198.51.100.7", "peer", "192.0.34.72")


@pytest.mark.parametrize("fqdn", sorted(PEERS))
def test_it_writes_no_weak_algorithm_outside_the_legacy_suite(fqdn: str) -> None:
    for key, suite in SUITES.items():
        for policy in policies(iked_conf(PEERS[fqdn](), site(suite=suite))):
            assert bool(algorithms(policy) & WEAK) == suite.legacy, key


def test_it_warns_at_the_top_of_a_legacy_file() -> None:
    text = iked_conf(client_peer(), site(suite=SUITES["legacy-3des-sha1-modp1024"]))
    assert text.startswith("# WARNING: LEGACY CRYPTO (legacy-3des-sha1-modp1024).")
    assert "WARNING" not in iked_conf(client_peer())


# --- the real parser


@pytest.mark.parametrize("suite", sorted(SUITES))
@pytest.mark.parametrize("fqdn", sorted(PEERS))
def test_it_passes_iked_n(fqdn: str, suite: str, tmp_path: Path) -> None:
    peer = PEERS[fqdn]()
    printed = iked_n(iked_conf(peer, site(suite=SUITES[suite])), tmp_path)
    assert len(printed) == 1
    assert f"srcid {fqdn} " in printed[0]  # the quoted ID reached iked whole
    if not peer.is_gateway:
        assert " dstid www.example.com " in printed[0]
    assert printed[0].endswith(" rfc7427")


def test_it_passes_iked_n_with_several_networks_and_a_known_address(tmp_path: Path) -> None:
    gateway = dataclasses.replace(site().gateway, networks=("10.1.1.0/24", "10.2.0.0/16"))
    site_ = site(gateway=gateway)
    assert len(iked_n(iked_conf(gateway_peer(), site_), tmp_path)) == 2
    peer = client_peer(networks=("10.10.10.0/24", "10.20.0.0/16"), address="198.51.100.7")
    printed = iked_n(iked_conf(peer, site_), tmp_path)
    assert len(printed) == 2
    assert " from 10.20.0.0/16 to 10.2.0.0/16 from 10.10.10.0/24 to 10.2.0.0/16 local 198.51.100.7 " in printed[1]


def test_it_cannot_leave_the_address_placeholder_to_iked(tmp_path: Path) -> None:
    # Why a roaming host's policy says "from any" and not "from @@MY_IP_ADDRESS@@": iked
    # refuses the placeholder, so install.sh could not even check the file before editing it.
    text = iked_conf(laptop_peer()).replace("from any", "from @@MY_IP_ADDRESS@@")
    conf = tmp_path / "iked.conf"
    conf.write_text(text)
    conf.chmod(0o600)
    result = subprocess.run([iked_binary(), "-n", "-f", str(conf)], capture_output=True, text=True, timeout=30)
    assert result.returncode != 0
