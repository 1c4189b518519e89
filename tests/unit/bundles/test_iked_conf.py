"""iked.conf: golden files, keyword order and quoting read back, and ``iked -n`` on every rendering.

``iked -n`` (openiked) parses the file exactly as the daemon would. When iked is not installed
the checks skip, unless CA_PORTAL_REQUIRE_TOOLS=1 (CI), which turns the skip into a failure.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from bundles.renderers.engine import environment
from bundles.renderers.iked import render_iked_conf
from bundles.renderers.readers import pf
from bundles.renderers.spec import SUITES, WEAK_TOKENS, PeerSpec, Site
from devtools.bundlecase import client_peer, gateway_peer, laptop_peer, site
from tests.unit.bundles.golden import assert_matches_golden

PEERS: dict[str, Callable[[], PeerSpec]] = {
    "www.example.com": gateway_peer,
    "client.example.com": client_peer,
    "laptop.example.com": laptop_peer,
}
# The policy grammar's keywords in their one allowed order (docs/formats.md §5.2).
ORDER: tuple[str, ...] = ("ikev2", "quick", "passive", "active", "esp", "from", "local", "peer", "ikesa", "childsa")
ORDER += ("srcid", "dstid", "ikelifetime", "lifetime", "rfc7427")
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


_FLOW = re.compile(r" from (\S+) to (\S+)")


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


# The gateway's forms: no client yet, only roaming hosts, only client gateways, both. Two gateway
# networks, and a client gateway with two networks, so that the policies carry several flows.
GW_NETS = ("10.1.1.0/24", "10.2.0.0/16")
OTHER = ("a.example.org", ("10.20.0.0/16", "10.30.0.0/16"))
CLIENT = ("client.example.com", ("10.10.10.0/24",))
VARIANTS: dict[str, dict[str, object]] = {
    "no-clients": {"issued_clients": (), "client_networks": ()},
    "roaming-only": {"issued_clients": ("laptop.example.com",), "client_networks": ()},
    "gateways-only": {"issued_clients": ("a.example.org", "client.example.com"), "client_networks": (OTHER, CLIENT)},
    "both": {
        "issued_clients": ("a.example.org", "client.example.com", "laptop.example.com"),
        "client_networks": (OTHER, CLIENT),
    },
}
# Each policy's head (up to its first flow), its flows, and its dstid (None: any peer of the CA).
Policy = tuple[tuple[str, ...], tuple[tuple[str, str], ...], str | None]
PINNED: list[Policy] = [
    (
        ("ikev2", "client-1", "quick", "passive", "esp"),
        tuple((gw, c) for gw in GW_NETS for c in ("10.20.0.0/16", "10.30.0.0/16")),
        "a.example.org",
    ),
    (
        ("ikev2", "client-2", "quick", "passive", "esp"),
        tuple((gw, "10.10.10.0/24") for gw in GW_NETS),
        "client.example.com",
    ),
]
ROAMING: list[Policy] = [(("ikev2", "roaming", "passive", "esp"), tuple((gw, "any") for gw in GW_NETS), None)]
EXPECTED: dict[str, list[Policy]] = {
    "no-clients": [],
    "roaming-only": ROAMING,
    "gateways-only": PINNED,
    "both": PINNED + ROAMING,
}


def variant_site(variant: str) -> Site:
    gateway = dataclasses.replace(site().gateway, networks=GW_NETS)
    return site(gateway=gateway, **VARIANTS[variant])


def read_policy(stmt: pf.Statement) -> Policy:
    """A gateway policy as iked reads it; checks the words around the flows and the quoting."""
    words, tokens = stmt.words, stmt.tokens
    start, end = words.index("from"), words.index("local")
    assert words[end : end + 4] == ("local", "192.0.34.72", "peer", "any")
    flows = [tuple(f.split()) for f in " ".join(words[start:end]).split(" , ")]  # "from A to B , from C to D"
    assert all(len(f) == 4 and f[0::2] == ("from", "to") for f in flows), flows
    assert tokens[words.index("srcid") + 1] == pf.Token("string", "www.example.com")
    dstid = None
    if "dstid" in words:
        token = tokens[words.index("dstid") + 1]
        assert token.kind == "string"  # quoted, so iked reads it whole
        dstid = token.text
    return words[:start], tuple((f[1], f[3]) for f in flows), dstid


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_it_pins_each_client_gateway_and_keeps_the_roaming_policy_last(variant: str) -> None:
    text = iked_conf(gateway_peer(), variant_site(variant))
    assert [read_policy(s) for s in pf.statements(text)] == EXPECTED[variant]


def test_it_writes_the_roaming_policy_only_for_roaming_hosts() -> None:
    # A client gateway that is the only issued client: no generic policy.
    only = site(issued_clients=("client.example.com",))
    assert [p[1] for p in policies(iked_conf(gateway_peer(), only))] == ["client-1"]
    assert [p[1] for p in policies(iked_conf(gateway_peer()))] == ["client-1", "roaming"]
    assert "no policy" in iked_conf(gateway_peer(), site(issued_clients=(), client_networks=()))


def test_it_quotes_the_identities() -> None:
    for name, peer in PEERS.items():
        dstids = []
        for stmt in pf.statements(iked_conf(peer())):
            tokens = stmt.tokens
            words = stmt.words
            src = tokens[words.index("srcid") + 1]
            assert (src.kind, src.text) == ("string", name)
            if "dstid" in words:
                dst = tokens[words.index("dstid") + 1]
                dstids.append((dst.kind, dst.text))
        if name == "www.example.com":
            assert dstids == [("string", "client.example.com")]  # the roaming policy has none
        else:
            assert dstids == [("string", "www.example.com")]


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
    assert len(printed) == (2 if peer.is_gateway else 1)
    for line in printed:
        assert f"srcid {fqdn} " in line  # the quoted ID reached iked whole
        assert line.endswith(" rfc7427")
    if peer.is_gateway:
        assert printed[0].startswith('ikev2 "client-1" quick passive ')
        assert " dstid client.example.com " in printed[0]
        assert printed[1].startswith('ikev2 "roaming" passive ')
        assert " dstid " not in printed[1]
    else:
        assert " dstid www.example.com " in printed[0]


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_it_passes_iked_n_in_every_gateway_form(variant: str, tmp_path: Path) -> None:
    printed = iked_n(iked_conf(gateway_peer(), variant_site(variant)), tmp_path)
    want = EXPECTED[variant]
    assert len(printed) == len(want)
    for line, (head, flows, dstid) in zip(printed, want, strict=True):
        assert line.startswith(f'ikev2 "{head[1]}" {"quick " if "quick" in head else ""}passive tunnel esp inet ')
        # iked prints each flow it parsed (in its own order); "any" is 0.0.0.0/0
        assert set(_FLOW.findall(line)) == {(a, "0.0.0.0/0" if b == "any" else b) for a, b in flows}, line
        assert (f" dstid {dstid} " in line) if dstid else (" dstid " not in line)


def test_it_passes_iked_n_with_several_networks_and_a_known_address(tmp_path: Path) -> None:
    gateway = dataclasses.replace(site().gateway, networks=("10.1.1.0/24", "10.2.0.0/16"))
    site_ = site(gateway=gateway)
    assert len(iked_n(iked_conf(gateway_peer(), site_), tmp_path)) == 2
    peer = client_peer(networks=("10.10.10.0/24", "10.20.0.0/16"), address="198.51.100.7")
    printed = iked_n(iked_conf(peer, site_), tmp_path)
    assert len(printed) == 1  # one IKE SA and one child SA for all four flows, as on the gateway
    assert set(_FLOW.findall(printed[0])) == {
        (src, dst) for src in ("10.10.10.0/24", "10.20.0.0/16") for dst in ("10.1.1.0/24", "10.2.0.0/16")
    }
    assert " local 198.51.100.7 peer 192.0.34.72 " in printed[0]


def test_it_cannot_leave_the_address_placeholder_to_iked(tmp_path: Path) -> None:
    # Why a roaming host's policy says "from any" and not "from @@MY_IP_ADDRESS@@": iked
    # refuses the placeholder, so install.sh could not even check the file before editing it.
    text = iked_conf(laptop_peer()).replace("from any", "from @@MY_IP_ADDRESS@@")
    conf = tmp_path / "iked.conf"
    conf.write_text(text)
    conf.chmod(0o600)
    result = subprocess.run([iked_binary(), "-n", "-f", str(conf)], capture_output=True, text=True, timeout=30)
    assert result.returncode != 0
