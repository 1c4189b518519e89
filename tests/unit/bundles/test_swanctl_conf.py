"""swanctl.conf: golden files, the parsed tree, and loading every rendering into a real charon.

strongSwan has no offline syntax check: ``swanctl --load-conns`` hands the file to a running
charon over the vici socket, and charon validates every key, proposal and certificate name. The
``charon`` fixture starts ``charon-systemd`` for this module only, inside its own empty network
namespace (``unshare --net``: no route to anywhere, nothing changed on the host), with its vici
socket in a temporary directory. Without the tools the checks skip, unless
CA_PORTAL_REQUIRE_TOOLS=1 (CI).
"""

from __future__ import annotations

import dataclasses
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
from devtools.bundlecase import FIXTURES, client_peer, gateway_peer, laptop_peer, site
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


def expected_conn(name: str, fqdn: str, remote_id: str, local_ts: str, remote_ts: str) -> reader.Tree:
    gateway = fqdn == "www.example.com"
    conn: reader.Tree = {"version": "2"}
    conn.update({"local_addrs": "192.0.34.72"} if gateway else {"remote_addrs": "192.0.34.72"})
    conn["proposals"] = SUITE
    conn["local"] = {"auth": "pubkey", "certs": f"{fqdn}.crt", "id": fqdn}
    conn["remote"] = {"auth": "pubkey", "cacerts": "ca.crt", "id": remote_id}
    child: reader.Tree = {
        "local_ts": local_ts,
        "remote_ts": remote_ts,
        "esp_proposals": SUITE,
        "start_action": "none" if gateway else "start",
    }
    conn["children"] = {name: child}
    return conn


def expected_tree(fqdn: str) -> reader.Tree:
    """The case study's connections, as the parser must read them back."""
    if fqdn == "www.example.com":
        return {
            "connections": {
                "client-1": expected_conn("client-1", fqdn, "client.example.com", "10.1.1.0/24", "10.10.10.0/24"),
                "roaming": expected_conn("roaming", fqdn, "%any", "10.1.1.0/24", "dynamic"),
            }
        }
    local_ts = "10.10.10.0/24" if fqdn == "client.example.com" else "dynamic"
    return {"connections": {"gateway": expected_conn("gateway", fqdn, "www.example.com", local_ts, "10.1.1.0/24")}}


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


# The gateway's forms: no client yet, only roaming hosts, only client gateways, both. Two gateway
# networks, and a client gateway with two networks, so that every traffic selector lists several.
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
# connection (and child) name -> (remote id, local_ts, remote_ts), in the file's order
Expected = dict[str, tuple[str, tuple[str, ...], tuple[str, ...]]]
PINNED: Expected = {
    "client-1": ("a.example.org", GW_NETS, ("10.20.0.0/16", "10.30.0.0/16")),
    "client-2": ("client.example.com", GW_NETS, ("10.10.10.0/24",)),
}
ROAMING: Expected = {"roaming": ("%any", GW_NETS, ("dynamic",))}
EXPECTED: dict[str, Expected] = {
    "no-clients": {},
    "roaming-only": ROAMING,
    "gateways-only": PINNED,
    "both": {**PINNED, **ROAMING},
}


def variant_site(variant: str) -> Site:
    gateway = dataclasses.replace(site().gateway, networks=GW_NETS)
    return site(gateway=gateway, **VARIANTS[variant])


def connections(text: str) -> Expected:
    """What the parser reads back: name -> (remote id, local_ts, remote_ts), checking the rest."""
    conns = reader.read(text)["connections"]
    assert isinstance(conns, dict)
    found: Expected = {}
    for name, conn in conns.items():
        assert isinstance(conn, dict)
        assert conn["local"] == {"auth": "pubkey", "certs": "www.example.com.crt", "id": "www.example.com"}
        remote = conn["remote"]
        assert isinstance(remote, dict)
        assert remote["cacerts"] == "ca.crt"
        children = conn["children"]
        assert isinstance(children, dict)
        assert list(children) == [name]
        child = children[name]
        assert isinstance(child, dict)
        assert child["start_action"] == "none"
        ts = (str(child["local_ts"]).split(", "), str(child["remote_ts"]).split(", "))
        found[name] = (str(remote["id"]), tuple(ts[0]), tuple(ts[1]))
    return found


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_it_pins_each_client_gateway_to_its_networks(variant: str) -> None:
    text = swanctl_conf(gateway_peer(), variant_site(variant))
    found = connections(text)
    assert found == EXPECTED[variant]
    assert list(found) == list(EXPECTED[variant])  # the client gateways first, sorted by FQDN; roaming last


def test_it_keeps_the_roaming_connection_only_for_roaming_hosts() -> None:
    # A client gateway that is the only issued client: no %any connection at all.
    only = site(issued_clients=("client.example.com",))
    assert list(connections(swanctl_conf(gateway_peer(), only))) == ["client-1"]
    # A roaming host that is not (yet) a client gateway keeps the roaming connection.
    assert list(connections(swanctl_conf(gateway_peer(), site()))) == ["client-1", "roaming"]


def proposal_words(text: str) -> set[str]:
    """The algorithm words of every connection's proposals and its children's esp_proposals."""
    conns = reader.read(text)["connections"]
    assert isinstance(conns, dict)
    assert conns
    values = []
    for conn in conns.values():
        assert isinstance(conn, dict)
        children = conn["children"]
        assert isinstance(children, dict)
        values.append(conn["proposals"])
        values.extend(child["esp_proposals"] for child in children.values())  # type: ignore[index]
    return set(",".join(values).replace(",", "-").split("-"))  # type: ignore[arg-type]


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


def load(charon: Charon, text: str, peer: PeerSpec, tmp_path: Path, count: int = 1) -> str:
    """Load ``text`` as /etc/swanctl/swanctl.conf would be, with the bundle's certificates beside it.

    ``count`` is how many connections the file has; loading replaces whatever the last test loaded.
    """
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
    if count:
        assert f"successfully loaded {count} connections" in output, output
    else:  # a file without connections says the same as a broken one, but without the parser's complaint
        assert "no connections found" in output, output
        assert "invalid config file" not in output, output
        assert "syntax error" not in output, output
    listing = subprocess.run(
        [charon.swanctl, "--list-conns", "--uri", charon.uri], env=env, capture_output=True, text=True, timeout=30
    )
    assert listing.returncode == 0, listing.stderr
    if not count:
        assert listing.stdout == "", listing.stdout
    return listing.stdout


def listed(listing: str) -> Expected:
    """``swanctl --list-conns`` read back: name -> (remote id, local TS, remote TS) of its one child."""
    ids: dict[str, str] = {}
    ts: dict[str, dict[str, tuple[str, ...]]] = {}
    name = side = child = ""
    for line in listing.splitlines():
        text = line.strip()
        indent = len(line) - len(line.lstrip(" "))
        if indent == 0:
            name, side, child = text.split(":")[0], "", ""
            ids[name], ts[name] = "", {}
        elif indent == 2 and text.endswith("authentication:"):
            side, child = text.split()[0], ""
        elif indent == 2 and ": TUNNEL" in text:
            side, child = "", text.split(":")[0]
            assert child == name, listing  # the child is named as its connection
        elif indent == 4 and side == "remote" and text.startswith("id: "):
            ids[name] = text.removeprefix("id: ")
        elif indent == 4 and child and text.startswith(("local:", "remote:")):
            key, _, value = text.partition(":")
            ts[name][key] = tuple(value.split())
    return {n: (ids[n], ts[n].get("local", ()), ts[n].get("remote", ())) for n in ids}


# The case study's connections as charon lists them.
CASESTUDY: dict[str, Expected] = {
    "www.example.com": {
        "client-1": ("client.example.com", ("10.1.1.0/24",), ("10.10.10.0/24",)),
        "roaming": ("%any", ("10.1.1.0/24",), ("dynamic",)),
    },
    "client.example.com": {"gateway": ("www.example.com", ("10.10.10.0/24",), ("10.1.1.0/24",))},
    "laptop.example.com": {"gateway": ("www.example.com", ("dynamic",), ("10.1.1.0/24",))},
}


@pytest.mark.parametrize("suite", sorted(SUITES))
@pytest.mark.parametrize("fqdn", sorted(PEERS))
def test_it_loads_into_charon(fqdn: str, suite: str, charon: Charon, tmp_path: Path) -> None:
    peer = PEERS[fqdn]()
    want = CASESTUDY[fqdn]
    listing = load(charon, swanctl_conf(peer, site(suite=SUITES[suite])), peer, tmp_path, count=len(want))
    assert f"    id: {fqdn}\n" in listing  # the quoted IDs reached charon whole
    assert f"    certs: CN={fqdn}\n" in listing  # x509/<fqdn>.crt was found and read
    assert listed(listing) == want


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_it_loads_every_gateway_form_into_charon(variant: str, charon: Charon, tmp_path: Path) -> None:
    want = EXPECTED[variant]
    listing = load(charon, swanctl_conf(gateway_peer(), variant_site(variant)), gateway_peer(), tmp_path, len(want))
    assert listed(listing) == want  # ids and traffic selectors arrived as rendered


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


def test_it_notices_a_broken_file_where_no_connection_is_expected(charon: Charon, tmp_path: Path) -> None:
    text = swanctl_conf(gateway_peer(), variant_site("no-clients"))
    load(charon, text, gateway_peer(), tmp_path, count=0)
    with pytest.raises(AssertionError):
        load(charon, text.replace("connections {", "connections {\n    x {", 1), gateway_peer(), tmp_path, count=0)
