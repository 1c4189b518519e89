"""T1/T3/T4 (docs/security.md): no input value can change the structure of pf.conf, ipf.rules, iked.conf
or swanctl.conf.

Every user-controlled field is fed arbitrary text (hypothesis) and a curated payload list. For each
value either the spec refuses it (SpecRejected), or every file renders with the same structure as
for a known-good value of that field -- the same rules (as keyword skeletons), macros, tables,
iked policies and swanctl sections -- the identities read back equal the inputs, and the value
appears verbatim where it belongs.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from bundles.renderers.engine import environment, quoted
from bundles.renderers.firewall import render_ipf_rules, render_pf_conf
from bundles.renderers.iked import render_iked_conf
from bundles.renderers.readers import pf
from bundles.renderers.readers import swanctl as swanctl_reader
from bundles.renderers.spec import PeerSpec, Service, Site, SpecRejected
from bundles.renderers.swanctl import render_swanctl_conf
from devtools.bundlecase import client_peer, gateway, gateway_peer, laptop_peer, site

Peers = dict[str, PeerSpec]

# Grammar words of the four formats; any other word is a value and becomes "·" in a skeleton.
# (Interface names like lo0/enc0 are values: an input may legitimately be one.)
KEYWORDS = frozenset(
    "pass block log all in out on proto udp tcp esp ipencap from any to port isakmp ipsec-nat-t keep state "
    "if-bound tag tagged VPN self ssh set skip lo table const quick flags S ikev2 passive active local peer "
    "ikesa childsa srcid dstid ikelifetime lifetime rfc7427 enc auth prf group".split()
)


@dataclass(frozen=True)
class Field:
    name: str
    build: Callable[[str], tuple[Site, Peers]]
    sample: str  # a valid value: the baseline structure is the one rendered with it
    files: tuple[str, ...]  # where the value must appear verbatim


def peers(**changes: object) -> Peers:
    return {"gateway": gateway_peer(), "client": client_peer(**changes), "laptop": laptop_peer(**changes)}


def with_service(**changes: object) -> Site:
    first = Service(name="webmail", address="10.1.1.25", protocol="tcp", ports=(443,))
    services = (dataclasses.replace(first, **changes), *site().services)  # type: ignore[arg-type]
    return site(services=services)


def with_gateway(**changes: object) -> Site:
    return site(gateway=dataclasses.replace(gateway(), **changes))  # type: ignore[arg-type]


CLIENT_FILES = ("client/ipf", "client/iked", "client/swanctl", "laptop/ipf", "laptop/iked", "laptop/swanctl")
ALL_FILES = ("gateway/pf", "gateway/iked", "gateway/swanctl", *CLIENT_FILES)
FIELDS = [
    Field(
        "peer.fqdn",
        lambda v: (
            site(),
            {"gateway": gateway_peer(fqdn=v), "client": client_peer(fqdn=v), "laptop": laptop_peer(fqdn=v)},
        ),
        "vpn.example.net",
        ALL_FILES,
    ),
    Field("gateway.fqdn", lambda v: (with_gateway(fqdn=v), peers()), "gw.example.net", CLIENT_FILES),
    Field("gateway.address", lambda v: (with_gateway(address=v), peers()), "198.51.100.1", ALL_FILES),
    Field("gateway.networks", lambda v: (with_gateway(networks=(v,)), peers()), "10.99.0.0/16", ALL_FILES),
    Field("gateway.ext_if", lambda v: (with_gateway(ext_if=v), peers()), "vio0", ("gateway/pf",)),
    Field("gateway.int_if", lambda v: (with_gateway(int_if=v), peers()), "vio1", ("gateway/pf",)),
    Field("peer.address", lambda v: (site(), peers(address=v)), "198.51.100.7", CLIENT_FILES),
    Field(
        "peer.networks",
        lambda v: (site(), {**peers(), "client": client_peer(networks=(v,))}),
        "10.20.0.0/16",
        ("client/ipf", "client/iked", "client/swanctl"),
    ),
    Field("peer.ext_if", lambda v: (site(), peers(ext_if=v)), "vio0", ("client/ipf", "laptop/ipf")),
    Field("peer.int_if", lambda v: (site(), {**peers(), "client": client_peer(int_if=v)}), "vio1", ("client/ipf",)),
    Field("service.name", lambda v: (with_service(name=v), peers()), "webmail", ("gateway/pf",)),
    Field("service.address", lambda v: (with_service(address=v), peers()), "10.1.1.25", ("gateway/pf",)),
    Field(
        "admin_hosts",
        lambda v: (site(admin_hosts=(v, "10.1.1.100")), peers()),
        "10.1.1.77",
        ("gateway/pf", "client/ipf"),
    ),
    Field("ca_name", lambda v: (site(ca_name=v), peers()), "Sample CA", ALL_FILES),
    # The issued client gateways, as the gateway's iked.conf and swanctl.conf pin them.
    Field(
        "client_networks.fqdn",
        lambda v: (site(client_networks=((v, ("10.10.10.0/24",)),)), peers()),
        "branch.example.net",
        ("gateway/iked", "gateway/swanctl"),
    ),
    Field(
        "client_networks.fqdn (second)",
        lambda v: (
            site(client_networks=(("a.example.net", ("10.30.0.0/16",)), (v, ("10.10.10.0/24", "10.40.0.0/16")))),
            peers(),
        ),
        "branch.example.net",
        ("gateway/iked", "gateway/swanctl"),
    ),
    Field(
        "client_networks.networks",
        lambda v: (site(client_networks=(("client.example.com", (v,)),)), peers()),
        "10.20.0.0/16",
        ("gateway/iked", "gateway/swanctl"),
    ),
]


def render_all(site_: Site, peers_: Peers) -> dict[str, str]:
    env = environment()
    out = {"gateway/pf": render_pf_conf(env, site_, peers_["gateway"])}
    for key in ("client", "laptop"):
        out[f"{key}/ipf"] = render_ipf_rules(env, site_, peers_[key])
    for key, peer in peers_.items():
        out[f"{key}/iked"] = render_iked_conf(env, site_, peer)
        out[f"{key}/swanctl"] = render_swanctl_conf(env, site_, peer)
    return out


def skeleton(stmt: pf.Statement) -> tuple[str, ...]:
    return tuple(t.text if t.kind == "punct" or (t.kind == "word" and t.text in KEYWORDS) else "·" for t in stmt.tokens)


def shape(tree: swanctl_reader.Tree) -> dict[str, object]:
    return {k: shape(v) if isinstance(v, dict) else "·" for k, v in tree.items()}


def structure(files: dict[str, str]) -> dict[str, object]:
    """What no value may change: rule skeletons, macro and table names, iked policies, swanctl tree."""
    out: dict[str, object] = {}
    for name, text in files.items():
        if name.endswith(("/pf", "/ipf")):
            ruleset = pf.read(text)
            out[name] = (
                [skeleton(r) for r in ruleset.rules],
                sorted(ruleset.macros),
                sorted(ruleset.tables),
                [skeleton(o) for o in ruleset.options],
            )
        elif name.endswith("/iked"):
            out[name] = [skeleton(s) for s in pf.statements(text)]
        else:
            out[name] = shape(swanctl_reader.read(text))
    return out


def check_identities(files: dict[str, str], site_: Site, peers_: Peers) -> None:
    """The IDs iked and charon will read are exactly the spec's FQDNs, each where it belongs."""
    client_gateways = [fqdn for fqdn, _ in site_.client_networks]
    for key, peer in peers_.items():
        dstids = []
        for stmt in pf.statements(files[f"{key}/iked"]):
            words = stmt.words
            assert stmt.tokens[words.index("srcid") + 1] == pf.Token("string", peer.fqdn)
            if "dstid" in words:
                dstids.append(stmt.tokens[words.index("dstid") + 1])
        # The gateway pins one policy to each client gateway (the roaming policy has no dstid); a
        # client pins its one policy to the gateway.
        peer_ids = client_gateways if peer.is_gateway else [site_.gateway.fqdn]
        assert dstids == [pf.Token("string", fqdn) for fqdn in peer_ids]
        conns = swanctl_reader.read(files[f"{key}/swanctl"])["connections"]
        assert isinstance(conns, dict)
        remote_ids = []
        for conn in conns.values():
            assert isinstance(conn, dict)
            assert conn["local"] == {"auth": "pubkey", "certs": f"{peer.fqdn}.crt", "id": peer.fqdn}
            remote = conn["remote"]
            assert isinstance(remote, dict)
            remote_ids.append(remote["id"])
        roaming = set(site_.issued_clients) - set(client_gateways)  # anyone of the CA, last, if needed
        assert remote_ids == (peer_ids + ["%any"] * bool(roaming) if peer.is_gateway else peer_ids)


BASELINES: dict[str, dict[str, object]] = {}


def baseline(field: Field) -> dict[str, object]:
    if field.name not in BASELINES:
        BASELINES[field.name] = structure(render_all(*field.build(field.sample)))
    return BASELINES[field.name]


def expected(field: Field, value: str) -> dict[str, object]:
    want = baseline(field)
    if field.name == "service.name":  # the one value that names a macro
        rules, macros, tables, options = want["gateway/pf"]  # type: ignore[misc]
        want = {**want, "gateway/pf": (rules, sorted((set(macros) - {field.sample}) | {value}), tables, options)}
    return want


def check(field: Field, value: str) -> bool:
    """True when the value was accepted (and proved harmless), False when the spec refused it."""
    try:
        site_, peers_ = field.build(value)
    except SpecRejected:
        return False
    files = render_all(site_, peers_)
    assert structure(files) == expected(field, value), (field.name, value)
    check_identities(files, site_, peers_)
    shown = quoted(value) if field.name == "ca_name" else value
    for name in field.files:
        assert shown in files[name], (field.name, value, name)
    return True


# --- curated payloads (docs/security.md T1, T3, T4)

PAYLOADS = [
    "peer\n[Phase 1]\n0.0.0.0=evil",
    "host\\",
    "a#b",
    "x\npass all",
    "x\r\npass all",
    "em0\npass in all",
    "10.0.0.1\npass in quick all",
    "10.0.0.0/8 }\npass all",
    "table <x> { 0.0.0.0/0 }",
    "} pass all {",
    '"; pass all; "',
    "vpn.example.net\x00pass all",
    "vpn.example.net\u2028pass all",
    "vpn.example.net\u0085pass all",
    "vpn.example.net }\n  remote_ts = 0.0.0.0/0",
    'vpn.example.net" remote_ts = "0.0.0.0/0',
    "vpn.example.net # comment",
    "a.example.net dstid b.example.net",
    "$ext_if",
    'proxy = "10.6.6.6"',
    "%any",
    "*.example.net",
    "{{7*7}}",
    "{% raw %}",
    "$(id)",
    "`id`",
    ";reboot",
    "10.0.0.1, 10.0.0.2",
    "10.0.0.0/8 10.1.0.0/16",
    " 10.0.0.1",
    "10.0.0.1 ",
    "::1",
    "0.0.0.0/0",
    "lo0 all",
    "vio0:1",
    "EXAMPLE.NET",
    "x" * 300,
]


@pytest.mark.parametrize("payload", PAYLOADS)
def test_it_refuses_or_contains_each_curated_payload(payload: str) -> None:
    for field in FIELDS:
        check(field, payload)
        check(field, field.sample + payload)
        check(field, payload + field.sample)


def test_it_accepts_the_sample_values() -> None:
    # The baselines are real renderings, not refusals.
    for field in FIELDS:
        assert check(field, field.sample), field.name


def test_it_renders_template_syntax_in_the_ca_name_literally() -> None:
    files = render_all(site(ca_name="{{6007*7}} $(id) ;reboot"), peers())
    for text in files.values():
        assert '"{{6007*7}} $(id) ;reboot"' in text
        assert "42049" not in text


# --- arbitrary text

SPECIALS = "\r\n\x00\u2028\u2029\u0085\x0b\x0c[]\"'\\#=,:;{}$<>()!/ \t*%@`|&"
SAMPLES = sorted({f.sample for f in FIELDS} | {"egress", "em1", "10.0.0.0/8", "a.example.org", "dns"})
values = st.one_of(
    st.text(alphabet=st.one_of(st.sampled_from(SPECIALS), st.characters()), max_size=40),
    st.sampled_from(PAYLOADS),
    st.tuples(st.sampled_from(SAMPLES), st.sampled_from([*PAYLOADS, *SPECIALS])).map("".join),
    st.tuples(st.sampled_from([*PAYLOADS, *SPECIALS]), st.sampled_from(SAMPLES)).map("".join),
    st.sampled_from(SAMPLES),
    st.from_regex(r"\A[a-z][a-z0-9_]{0,10}[0-9]?\Z"),  # interface- and service-name shaped
    st.from_regex(r"\A[a-z0-9-]{1,12}(\.[a-z0-9-]{1,12}){1,3}\Z"),  # FQDN shaped
    st.ip_addresses(v=4).map(str),
    st.tuples(st.ip_addresses(v=4), st.integers(0, 32)).map(
        lambda t: str(ipaddress.ip_network(f"{t[0]}/{t[1]}", False))
    ),
)


@settings(max_examples=300, deadline=None)
@given(field=st.sampled_from(FIELDS), value=values)
def test_it_never_lets_a_value_change_the_structure(field: Field, value: str) -> None:
    event("accepted" if check(field, value) else "refused by the spec")


@pytest.mark.parametrize("name", sorted(pf.PF_KEYWORDS))
def test_it_refuses_service_names_that_pfctl_reads_as_keywords(name: str) -> None:
    with pytest.raises(SpecRejected):
        Service(name=name, address="10.1.1.25", protocol="tcp", ports=(443,))
