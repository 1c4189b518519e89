"""swanctl.conf: golden files, the parsed tree, and loading every rendering into a real charon.

strongSwan has no offline syntax check: ``swanctl --load-conns`` hands the file to a running
charon over the vici socket, and charon validates every key, proposal and certificate name. The
``charon`` fixture starts ``charon-systemd`` for this module only, inside its own empty network
namespace (``unshare --net``: no route to anywhere, nothing changed on the host), with its vici
socket in a temporary directory. Without the tools the checks skip, unless
CA_PORTAL_REQUIRE_TOOLS=1 (CI).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import pytest

from bundles.renderers.engine import environment
from bundles.renderers.readers import swanctl as reader
from bundles.renderers.spec import SUITES, WEAK_TOKENS, PeerSpec, Site
from bundles.renderers.swanctl import render_swanctl_conf
from tests.bundlecase import FIXTURES, client_peer, gateway_peer, laptop_peer, site
from tests.unit.bundles.golden import assert_matches_golden

PEERS: dict[str, Callable[[], PeerSpec]] = {
    "www.example.com": gateway_peer,
    "client.example.com": client_peer,
    "laptop.example.com": laptop_peer,
}
WEAK = {t.lower().replace("_", "") for t in WEAK_TOKENS} | {"blowfish", "sha1"}
SUITE = "aes256-sha256-modp2048"


def swanctl_conf(peer: PeerSpec, site_: Site | None = None) -> str:
    return render_swanctl_conf(environment(), site_ or site(), peer)


def expected_tree(fqdn: str) -> reader.Tree:
    """The case study's connections, as the parser must read them back."""
    gateway = fqdn == "www.example.com"
    name = "roaming" if gateway else "gateway"
    child: reader.Tree = {
        "local_ts": {"www.example.com": "10.1.1.0/24", "client.example.com": "10.10.10.0/24"}.get(fqdn, "dynamic"),
        "remote_ts": "dynamic" if gateway else "10.1.1.0/24",
        "esp_proposals": SUITE,
        "start_action": "none" if gateway else "start",
    }
    conn: reader.Tree = {"version": "2"}
    conn.update({"local_addrs": "192.0.34.72"} if gateway else {"remote_addrs": "192.0.34.72"})
    conn["proposals"] = SUITE
    conn["local"] = {"auth": "pubkey", "certs": f"{fqdn}.crt", "id": fqdn}
    conn["remote"] = {"auth": "pubkey", "cacerts": "ca.crt", "id": "%any" if gateway else "www.example.com"}
    conn["children"] = {name: child}
    return {"connections": {name: conn}}


@pytest.mark.parametrize("fqdn", sorted(PEERS))
def test_it_matches_the_golden_swanctl_conf(fqdn: str) -> None:
    assert_matches_golden(f"casestudy/{fqdn}/swanctl.conf", swanctl_conf(PEERS[fqdn]()))


@pytest.mark.parametrize("fqdn", sorted(PEERS))
def test_it_reads_back_as_the_expected_tree(fqdn: str) -> None:
    assert reader.read(swanctl_conf(PEERS[fqdn]())) == expected_tree(fqdn)


def test_it_lists_several_networks_in_one_traffic_selector() -> None:
    tree = reader.read(swanctl_conf(client_peer(networks=("10.10.10.0/24", "10.20.0.0/16"), address="198.51.100.7")))
    conn = tree["connections"]["gateway"]  # type: ignore[index]
    assert conn["local_addrs"] == "198.51.100.7"  # type: ignore[index]
    assert conn["children"]["gateway"]["local_ts"] == "10.10.10.0/24, 10.20.0.0/16"  # type: ignore[index]


@pytest.mark.parametrize("fqdn", sorted(PEERS))
def proposal_words(text: str) -> set[str]:
    """The algorithm words of the connection's proposals and its child's esp_proposals."""
    conns = reader.read(text)["connections"]
    assert isinstance(conns, dict)
    (conn,) = conns.values()
    assert isinstance(conn, dict)
    children = conn["children"]
    assert isinstance(children, dict)
    (child,) = children.values()
    assert isinstance(child, dict)
    values = f"{conn['proposals']},{child['esp_proposals']}"
    return set(values.replace(",", "-").split("-"))


@pytest.mark.parametrize("fqdn", sorted(PEERS))
def test_it_writes_no_weak_algorithm_outside_the_legacy_suite(fqdn: str) -> None:
    for key, suite in SUITES.items():
        words = proposal_words(swanctl_conf(PEERS[fqdn](), site(suite=suite)))
        assert bool(words & WEAK) == suite.legacy, key


def test_it_warns_at_the_top_of_a_legacy_file() -> None:
    text = swanctl_conf(gateway_peer(), site(suite=SUITES["legacy-3des-sha1-modp1024"]))
    assert text.startswith("# WARNING: LEGACY CRYPTO (legacy-3des-sha1-modp1024).")


# --- the reader: strongSwan's lexer rules that an injection would exploit


def test_it_ends_a_value_at_a_closing_brace() -> None:
    assert reader.read("a {\n  id = x } b = y\n", strict=False) == {"a": {"id": "x"}, "b": "y"}


def test_it_reads_quoted_values_with_escapes_and_joins_runs() -> None:
    tree = reader.read('id = "a \\"b\\" } # c" d\nx = "1\\n2"  # note\n')
    assert tree == {"id": 'a "b" } # c d', "x": "1\n2"}


@pytest.mark.parametrize("text", ["a {\n", "}\n", 'a = "x\n', '"a" = b\n', "a = 1\na = 2\n", "a.b = 1\n"])
def test_it_refuses_broken_or_ambiguous_files(text: str) -> None:
    with pytest.raises(reader.ReadError):
        reader.read(text)


# --- the real charon


@dataclass(frozen=True)
class Charon:
    swanctl: str
    uri: str
    conf: Path  # strongswan.conf for swanctl (its plugin list)


def _tool(*candidates: str) -> str | None:
    for name in candidates:
        found = shutil.which(name) or (name if os.access(name, os.X_OK) else None)
        if found:
            return found
    return None


def _unavailable(reason: str) -> NoReturn:
    if os.environ.get("CA_PORTAL_REQUIRE_TOOLS") == "1":
        pytest.fail(f"{reason} and CA_PORTAL_REQUIRE_TOOLS=1")
    pytest.skip(reason)


# kernel-netlink talks to the namespace's own (empty) XFRM tables; socket-default binds random ports.
PLUGINS = "random nonce aes sha1 sha2 md5 hmac gmp pem pkcs1 x509 pubkey openssl revocation constraints vici"
PLUGINS += " socket-default kernel-netlink"
CHARON_CONF = """\
charon-systemd {{
  load = {plugins}
  port = 0
  port_nat_t = 0
  install_routes = no
  plugins {{
    vici {{
      socket = {uri}
    }}
  }}
  journal {{
    default = -1
  }}
}}
swanctl {{
  load = pem pkcs1 x509 revocation constraints pubkey openssl random
}}
"""


@pytest.fixture(scope="module")
def charon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Charon]:
    swanctl = _tool("swanctl", "/usr/sbin/swanctl")
    daemon = _tool("charon-systemd", "/usr/sbin/charon-systemd")
    unshare = _tool("unshare")
    if swanctl is None or daemon is None or unshare is None:
        _unavailable("swanctl, charon-systemd or unshare is missing (apt: strongswan-swanctl, charon-systemd)")
    work = tmp_path_factory.mktemp("charon")
    uri = f"unix://{work}/charon.vici"
    conf = work / "strongswan.conf"
    conf.write_text(CHARON_CONF.format(uri=uri, plugins=PLUGINS))
    env = {**os.environ, "STRONGSWAN_CONF": str(conf)}
    log = (work / "charon.log").open("w")
    proc = subprocess.Popen([unshare, "--net", daemon], env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 10
        while not (work / "charon.vici").exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        if not (work / "charon.vici").exists():
            tail = (work / "charon.log").read_text()[-300:]
            _unavailable(f"charon did not start in its own network namespace (exit {proc.poll()}): {tail}")
        yield Charon(swanctl=swanctl, uri=uri, conf=conf)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def load(charon: Charon, text: str, peer: PeerSpec, tmp_path: Path) -> str:
    """Load ``text`` as /etc/swanctl/swanctl.conf would be, with the bundle's certificates beside it."""
    for sub in ("x509ca", "x509", "private"):
        (tmp_path / sub).mkdir(exist_ok=True)
    shutil.copy(FIXTURES / "ca.crt", tmp_path / "x509ca" / "ca.crt")
    shutil.copy(FIXTURES / f"{peer.fqdn}.crt", tmp_path / "x509" / f"{peer.fqdn}.crt")
    (tmp_path / "swanctl.conf").write_text(text)
    env = {**os.environ, "STRONGSWAN_CONF": str(charon.conf), "SWANCTL_DIR": str(tmp_path)}
    args = [charon.swanctl, "--load-conns", "--uri", charon.uri, "--file", str(tmp_path / "swanctl.conf")]
    result = subprocess.run(args, env=env, capture_output=True, text=True, timeout=30)
    output = result.stdout + result.stderr
    # A syntax error exits 0 with "no connections found": only this line proves the file loaded.
    assert result.returncode == 0, output
    assert "successfully loaded 1 connections" in output, output
    listing = subprocess.run(
        [charon.swanctl, "--list-conns", "--uri", charon.uri], env=env, capture_output=True, text=True, timeout=30
    )
    assert listing.returncode == 0, listing.stderr
    return listing.stdout


@pytest.mark.parametrize("suite", sorted(SUITES))
@pytest.mark.parametrize("fqdn", sorted(PEERS))
def test_it_loads_into_charon(fqdn: str, suite: str, charon: Charon, tmp_path: Path) -> None:
    peer = PEERS[fqdn]()
    listing = load(charon, swanctl_conf(peer, site(suite=SUITES[suite])), peer, tmp_path)
    remote_id = "%any" if peer.is_gateway else "www.example.com"
    assert f"    id: {fqdn}\n" in listing  # the quoted IDs reached charon whole
    assert f"    id: {remote_id}\n" in listing
    assert f"    certs: CN={fqdn}\n" in listing  # x509/<fqdn>.crt was found and read


@pytest.mark.parametrize(
    ("old", "new"),
    [("proposals = aes256", "proposals = aes257"), ("        version = 2\n", "        version = 2\n    }\n")],
    ids=["bad-proposal", "syntax-error"],
)
def test_it_notices_a_file_charon_refuses(old: str, new: str, charon: Charon, tmp_path: Path) -> None:
    # The harness itself: a refused file must fail the check, including a syntax error, for
    # which swanctl still exits 0.
    text = swanctl_conf(client_peer())
    assert old in text
    with pytest.raises(AssertionError):
        load(charon, text.replace(old, new, 1), client_peer(), tmp_path)
