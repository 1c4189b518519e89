"""No user value can change the structure of isakmpd.conf or isakmpd.policy (docs/security.md T1, T2, T4).

For every user-controlled field: building the spec with the value either raises SpecRejected, or the
rendered files, read back as isakmpd and libkeynote read them, have exactly the structure of a
baseline render (sections, tags, KeyNote fields, Conditions tokens) and the value appears verbatim
exactly where the baseline had its own value, and nowhere else changed.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bundles.renderers import engine
from bundles.renderers.isakmpd import render_isakmpd_conf, render_isakmpd_policy
from bundles.renderers.readers.isakmpd_conf import parse_conf, structure_problems
from bundles.renderers.readers.keynote import read_policy, tokenize_conditions
from bundles.renderers.spec import PeerSpec, Site, SpecRejected
from devtools.bundlecase import client_peer, gateway_peer, laptop_peer, site

ENV = engine.environment()
SITE = site()
GATEWAY, CLIENT, LAPTOP = gateway_peer(), client_peer(), laptop_peer()
TEMPLATES = engine.DEFAULT_TEMPLATES / "isakmpd"

Shape = list[tuple[str, ...]]
Build = Callable[[str], tuple[Site, list[PeerSpec]]]


def conf_shape(text: str) -> Shape:
    conf = parse_conf(text)
    assert conf.problems == [], [str(p) for p in conf.problems]
    assert structure_problems(conf) == []
    return [(section.name, tag, value) for section in conf.sections.values() for tag, value in section.tags.values()]


def policy_shape(text: str) -> Shape:
    policy = read_policy(text)
    assert policy.errors == []
    assert len(policy.assertions) == 1
    assertion = policy.assertions[0]
    assert assertion.lex_errors == []
    assert assertion.comments == []
    shape: Shape = [tuple(assertion.fields)]
    for name in ("Authorizer", "Licensees", "Conditions"):
        shape.extend((name, token.kind, token.value) for token in assertion.tokens(name))
    return shape


def shapes(site_: Site, peers: list[PeerSpec]) -> list[Shape]:
    out = []
    for peer in peers:
        out.append(conf_shape(render_isakmpd_conf(ENV, site_, peer)))
        out.append(policy_shape(render_isakmpd_policy(ENV, site_, peer)))
    return out


def substituted(shape: Shape, mapping: dict[str, str]) -> Shape:
    """``shape`` with every element that *equals* a baseline value replaced by the new value."""
    return [tuple(mapping.get(part, part) for part in entry) for entry in shape]


def _gateway_with(**changes: str | tuple[str, ...]) -> Site:
    return dataclasses.replace(SITE, gateway=dataclasses.replace(SITE.gateway, **changes))  # type: ignore[arg-type]


def _network_values(text: str) -> dict[str, str]:
    network = ipaddress.IPv4Network(text, strict=True)
    return {"address": str(network.network_address), "netmask": str(network.netmask)}


# field -> (baseline value, how to build the spec from a value, the values a render shows for it)
FIELDS: dict[str, tuple[str, Build, Callable[[str], dict[str, str]]]] = {
    "peer_fqdn": (
        "roamer.example.net",
        lambda v: (SITE, [dataclasses.replace(CLIENT, fqdn=v), dataclasses.replace(LAPTOP, fqdn=v)]),
        lambda v: {"fqdn": v},
    ),
    "gateway_fqdn": (
        "vpn.example.net",
        lambda v: (_gateway_with(fqdn=v), [dataclasses.replace(GATEWAY, fqdn=v), CLIENT, LAPTOP]),
        lambda v: {"fqdn": v},
    ),
    "gateway_address": (
        "203.0.113.9",
        lambda v: (_gateway_with(address=v), [GATEWAY, CLIENT, LAPTOP]),
        lambda v: {"address": v},
    ),
    "peer_address": (
        "198.51.100.7",
        lambda v: (SITE, [dataclasses.replace(CLIENT, address=v), dataclasses.replace(LAPTOP, address=v)]),
        lambda v: {"address": v},
    ),
    "client_network": (
        "10.99.0.0/16",
        lambda v: (SITE, [dataclasses.replace(CLIENT, networks=(v,))]),
        _network_values,
    ),
    "gateway_network": (
        "10.99.0.0/16",
        lambda v: (_gateway_with(networks=(v,)), [GATEWAY, CLIENT, LAPTOP]),
        _network_values,
    ),
    "issued_client": (
        "roamer.example.net",
        lambda v: (dataclasses.replace(SITE, issued_clients=(v,)), [GATEWAY]),
        lambda v: {"fqdn": v},
    ),
}


def _baseline(field: str) -> list[Shape]:
    default, build, _ = FIELDS[field]
    return shapes(*build(default))


BASELINES = {field: _baseline(field) for field in FIELDS}


def check(field: str, value: str) -> bool:
    """True if the spec took ``value`` (and the files kept their structure), False if it refused it."""
    default, build, shown = FIELDS[field]
    try:
        site_, peers = build(value)
    except SpecRejected:
        return False
    old, new = shown(default), shown(value)
    mapping = {old[key]: new[key] for key in old}
    actual = shapes(site_, peers)
    expected = [substituted(shape, mapping) for shape in BASELINES[field]]
    assert actual == expected
    for policy, baseline in zip(actual[1::2], BASELINES[field][1::2], strict=True):
        # T2 in so many words: no principal, clause or alternative was added.
        for operator in ("||", "&&", "->", ";"):
            assert [e[1] for e in policy[1:]].count(operator) == [e[1] for e in baseline[1:]].count(operator)
    return True


# --- the property ---------------------------------------------------------------------------------

SPECIALS = [
    "\r",
    "\n",
    "\x00",
    "\u2028",
    "\u0085",
    "[",
    "]",
    '"',
    "\\",
    "#",
    "=",
    ",",
    ":",
    "{",
    "}",
    "$",
    ";",
    " ",
    "\t",
]
special_text = st.text(alphabet=st.one_of(st.sampled_from(SPECIALS), st.characters()), max_size=24)
label = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?", fullmatch=True)
fqdn = st.builds(
    lambda labels, tld: ".".join([*labels, tld]),
    st.lists(label, min_size=1, max_size=3),
    st.sampled_from(["com", "net", "nl"]),
)
ipv4 = st.ip_addresses(v=4).map(str)
network = st.builds(
    lambda address, prefix: str(ipaddress.IPv4Network(f"{address}/{prefix}", strict=False)),
    st.ip_addresses(v=4),
    st.integers(min_value=1, max_value=32),
)


def near(valid: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """Valid values, arbitrary text, and valid values with special characters spliced in."""
    spliced = st.builds(
        lambda head, junk, tail: head + junk + tail, valid, special_text, st.sampled_from(["", ".com", "/24", "\n"])
    )
    return st.one_of(valid, special_text, spliced, st.builds(lambda junk, v: junk + v, special_text, valid))


STRATEGIES = {
    "peer_fqdn": near(fqdn),
    "gateway_fqdn": near(fqdn),
    "gateway_address": near(ipv4),
    "peer_address": near(ipv4),
    "client_network": near(network),
    "gateway_network": near(network),
    "issued_client": near(fqdn),
}


@pytest.mark.parametrize("field", list(FIELDS))
def test_it_keeps_the_structure_whatever_a_field_holds(field: str) -> None:
    @settings(max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
    @given(value=STRATEGIES[field])
    def run(value: str) -> None:
        check(field, value)

    run()


# --- the curated corpus ---------------------------------------------------------------------------

PAYLOADS = [
    "peer\n[Phase 1]\n0.0.0.0=evil",
    "peer.example.com\n[Phase 1]\n0.0.0.0=evil",
    "host\\",
    "host.example.com\\",
    "a#b",
    "a.example.com # comment",
    'x" || "1" == "1',
    'x.example.com" || "1" == "1',
    'x.example.com\n\nAuthorizer: "POLICY"',
    "{{7*7}}",
    "{{ 7*7 }}.example.com",
    "$(id)",
    "`id`.example.com",
    ";reboot",
    "a,b",
    "a.example.com,b.example.com",
    "a]b",
    "[a].example.com",
    "a\u2028b",
    "a.example.com\u0085",
    "a.example.com\r",
    "a.example.com\x00",
    " a.example.com",
    "10.0.0.1\n",
    "10.0.0.1,10.0.0.2",
    "10.0.0.0/24\n[x]",
    "10.0.0.0/24,0.0.0.0/0",
    "0.0.0.0/0",
    "A.EXAMPLE.COM",
]


@pytest.mark.parametrize("field", list(FIELDS))
@pytest.mark.parametrize("payload", PAYLOADS)
def test_it_refuses_every_payload_of_the_corpus(field: str, payload: str) -> None:
    assert check(field, payload) is False


@pytest.mark.parametrize("field", list(FIELDS))
def test_it_takes_a_plain_value_verbatim(field: str) -> None:
    value = {"gateway_address": "192.0.2.77", "peer_address": "192.0.2.78"}.get(field, "host-1.example.org")
    if field.endswith("network"):
        value = "172.20.0.0/14"
    assert check(field, value) is True


# --- the engine's guards behind the allow-lists ---------------------------------------------------

BAD_VALUES = ["a\nb", "a\rb", "a\x00b", "a\u2028b", "a\x85b", "a\x0bb"]


@pytest.mark.parametrize("flt", ["conf", "quoted", "plain"])
@pytest.mark.parametrize("value", BAD_VALUES)
def test_it_refuses_a_line_break_that_reaches_a_template_directly(tmp_path: Path, flt: str, value: str) -> None:
    (tmp_path / "probe.j2").write_text(f"Name={{{{ value|{flt} }}}}\n")
    env = engine.environment([tmp_path])
    with pytest.raises(engine.RenderError):
        engine.render(env, "probe.j2", value=value)


@pytest.mark.parametrize("value", ["host\\", "a,b", " padded", "padded "])
def test_it_refuses_a_conf_value_that_would_continue_a_line_or_split_a_list(tmp_path: Path, value: str) -> None:
    (tmp_path / "probe.j2").write_text("Name={{ value|conf }}\n")
    with pytest.raises(engine.RenderError):
        engine.render(engine.environment([tmp_path]), "probe.j2", value=value)


def test_it_escapes_quotes_and_backslashes_in_quoted_values(tmp_path: Path) -> None:
    (tmp_path / "probe.j2").write_text('Conditions: remote_id == {{ value|quoted }} -> "true";\n')
    text = engine.render(engine.environment([tmp_path]), "probe.j2", value='x" || "1" == "1')
    assert text == 'Conditions: remote_id == "x\\" || \\"1\\" == \\"1" -> "true";\n'
    tokens = tokenize_conditions(text.removeprefix("Conditions:"))
    assert [t.kind for t in tokens] == ["VARIABLE", "==", "STRING", "->", "STRING", ";"]
    assert tokens[2].value == 'x" || "1" == "1'


def test_it_raises_render_error_for_an_undefined_variable(tmp_path: Path) -> None:
    (tmp_path / "probe.j2").write_text("Name={{ missing|conf }}\n")
    with pytest.raises(engine.RenderError, match="missing"):
        engine.render(engine.environment([tmp_path]), "probe.j2")
    with pytest.raises(engine.RenderError):
        engine.render(ENV, "isakmpd/gateway.conf.j2")


def test_it_leaves_template_syntax_in_values_as_literal_text(tmp_path: Path) -> None:
    # Values are data, never template source: the spec refuses these for FQDNs anyway.
    (tmp_path / "probe.j2").write_text("Name={{ value|plain }}\n")
    env = engine.environment([tmp_path])
    assert engine.render(env, "probe.j2", value="{{7*7}} $(id) ;reboot") == "Name={{7*7}} $(id) ;reboot\n"


def test_it_filters_every_interpolation_in_the_isakmpd_templates() -> None:
    expressions = [e for path in sorted(TEMPLATES.glob("*.j2")) for e in re.findall(r"{{(.*?)}}", path.read_text())]
    assert expressions
    unfiltered = [e for e in expressions if not re.search(r"\|\s*(conf|quoted|plain)\b|map\(\"conf\"\)", e)]
    assert unfiltered == []
