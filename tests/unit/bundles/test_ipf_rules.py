"""ipf.rules for the clients: golden files, and every rule read back with readers.pf."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import pytest

from bundles.renderers.engine import RenderError, environment
from bundles.renderers.firewall import MY_IP_PLACEHOLDER, render_ipf_rules
from bundles.renderers.readers import pf
from bundles.renderers.spec import PeerSpec, Site
from devtools.bundlecase import client_peer, gateway_peer, laptop_peer, site
from tests.unit.bundles.golden import assert_matches_golden


def ipf_rules(peer: PeerSpec, site_: Site | None = None) -> str:
    return render_ipf_rules(environment(), site_ or site(), peer)


def shape(text: str) -> list[tuple[str, str, str]]:
    """(action, direction, interface) of every rule, in order."""
    out = []
    for rule in pf.read(text).rules:
        words = rule.words
        iface = words[words.index("on") + 1] if "on" in words else "*"
        out.append((words[0], words[1], iface))
    return out


IKE_ESP_LO = [
    ("pass", "out", "EXT"),
    ("pass", "out", "EXT"),
    ("pass", "in", "EXT"),
    ("pass", "in", "EXT"),
    ("pass", "out", "EXT"),
    ("pass", "in", "EXT"),
    ("pass", "in", "lo0"),
    ("pass", "out", "lo0"),
]
BLOCK = [("block", "in", "*"), ("block", "out", "*")]


def with_ext(rules: list[tuple[str, str, str]], ext_if: str) -> list[tuple[str, str, str]]:
    return [(a, d, ext_if if i == "EXT" else i) for a, d, i in rules]


@pytest.mark.parametrize("peer", [client_peer, laptop_peer], ids=lambda p: p().fqdn)
def test_it_matches_the_golden_ipf_rules(peer: Callable[[], PeerSpec]) -> None:
    spec = peer()
    assert_matches_golden(f"casestudy/{spec.fqdn}/ipf.rules", ipf_rules(spec))


def test_it_gives_the_client_gateway_its_tunnel_admin_and_inside_rules() -> None:
    assert shape(ipf_rules(client_peer())) == [
        *with_ext(IKE_ESP_LO, "fxp0"),
        ("pass", "out", "enc0"),  # 10.10.10.0/24 -> 10.1.1.0/24
        ("pass", "in", "enc0"),  # ssh from admin 10.1.1.14
        ("pass", "in", "enc0"),  # ssh from admin 10.1.1.100
        ("pass", "in", "fxp1"),  # the inside network towards the tunnel
        ("pass", "out", "fxp1"),  # ssh from admin 10.1.1.14
        ("pass", "out", "fxp1"),  # ssh from admin 10.1.1.100
        *BLOCK,
    ]


def test_it_gives_the_roaming_host_only_its_tunnel() -> None:
    assert shape(ipf_rules(laptop_peer())) == [*with_ext(IKE_ESP_LO, "em0"), ("pass", "out", "enc0"), *BLOCK]


@pytest.mark.parametrize("peer", [client_peer, laptop_peer], ids=lambda p: p().fqdn)
def test_it_makes_every_rule_quick_and_logs_what_it_blocks(peer: Callable[[], PeerSpec]) -> None:
    # All rules quick: the first match wins, so the two blocks at the end catch the rest.
    for rule in pf.read(ipf_rules(peer())).rules:
        assert "quick" in rule.words, rule
        assert ("log" in rule.words) == (rule.words[0] == "block"), rule


@pytest.mark.parametrize("peer", [client_peer, laptop_peer], ids=lambda p: p().fqdn)
def test_it_writes_explicit_port_operators_and_keeps_state(peer: Callable[[], PeerSpec]) -> None:
    for rule in pf.read(ipf_rules(peer())).rules:
        words = rule.words
        for i, word in enumerate(words):
            if word == "port":
                assert words[i + 1] == "=", rule
                assert words[i + 2].isdigit(), rule
        if "proto" in words and words[words.index("proto") + 1] == "tcp":
            assert words[-4:] == ("flags", "S", "keep", "state"), rule
        stateless = "esp" in words or words[0] == "block" or "lo0" in words
        assert (words[-2:] == ("keep", "state")) != stateless, rule


def test_it_talks_ike_and_esp_with_the_gateway_only() -> None:
    rules = [" ".join(r.words) for r in pf.read(ipf_rules(client_peer())).rules if "fxp0" in r.words]
    me, gw = MY_IP_PLACEHOLDER, "192.0.34.72"
    assert rules == [
        f"pass out quick on fxp0 proto udp from {me} to {gw} port = 500 keep state",
        f"pass out quick on fxp0 proto udp from {me} to {gw} port = 4500 keep state",
        f"pass in quick on fxp0 proto udp from {gw} to {me} port = 500 keep state",
        f"pass in quick on fxp0 proto udp from {gw} to {me} port = 4500 keep state",
        f"pass out quick on fxp0 proto esp from {me} to {gw}",
        f"pass in quick on fxp0 proto esp from {gw} to {me}",
    ]


def test_it_uses_the_known_address_instead_of_the_placeholder() -> None:
    text = ipf_rules(laptop_peer(address="198.51.100.7"))
    assert MY_IP_PLACEHOLDER not in text
    enc0 = [" ".join(r.words) for r in pf.read(text).rules if "enc0" in r.words]
    assert enc0 == ["pass out quick on enc0 from 198.51.100.7 to 10.1.1.0/24 keep state"]


def test_it_crosses_every_local_network_with_every_gateway_network() -> None:
    gateway = dataclasses.replace(site().gateway, networks=("10.1.1.0/24", "10.2.0.0/16"))
    peer = client_peer(networks=("10.10.10.0/24", "10.20.0.0/16"))
    rules = [r.words for r in pf.read(ipf_rules(peer, site(gateway=gateway))).rules]
    tunnel_out = [(w[6], w[8]) for w in rules if w[:5] == ("pass", "out", "quick", "on", "enc0")]
    assert tunnel_out == [
        ("10.10.10.0/24", "10.1.1.0/24"),
        ("10.10.10.0/24", "10.2.0.0/16"),
        ("10.20.0.0/16", "10.1.1.0/24"),
        ("10.20.0.0/16", "10.2.0.0/16"),
    ]


def test_it_writes_no_inside_rules_without_networks_behind_the_inside_interface() -> None:
    assert shape(ipf_rules(client_peer(networks=()))) == shape(ipf_rules(laptop_peer(ext_if="fxp0")))


def test_it_refuses_to_render_ipf_rules_for_the_gateway() -> None:
    with pytest.raises(RenderError):
        render_ipf_rules(environment(), site(), gateway_peer())
