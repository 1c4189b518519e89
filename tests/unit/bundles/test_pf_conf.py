"""pf.conf for the gateway: golden file, and the ruleset read back with readers.pf."""

from __future__ import annotations

import dataclasses

import pytest

from bundles.renderers.engine import RenderError, environment
from bundles.renderers.firewall import render_pf_conf
from bundles.renderers.readers import pf
from bundles.renderers.spec import Service, Site
from devtools.bundlecase import client_peer, gateway_peer, site
from tests.unit.bundles.golden import assert_matches_golden

# The case study: block + IKE/ESP (4) + ipencap + 2 per service (4 services) + LAN side (4).
CASE_STUDY_RULES = 1 + 4 + 1 + 2 * 4 + 4
CASE_STUDY_MACROS = {"ext_if", "int_if", "gw_addr", "proxy", "nameserver", "citrix", "citrix_udp"}


def pf_conf(site_: Site | None = None) -> str:
    return render_pf_conf(environment(), site_ or site(), gateway_peer())


def test_it_matches_the_golden_pf_conf() -> None:
    assert_matches_golden("casestudy/www.example.com/pf.conf", pf_conf())


def test_it_has_the_expected_rules_macros_and_tables() -> None:
    ruleset = pf.read(pf_conf())
    assert len(ruleset.rules) == CASE_STUDY_RULES
    assert set(ruleset.macros) == CASE_STUDY_MACROS
    assert ruleset.macros == {
        "ext_if": "rl0",
        "int_if": "dc0",
        "gw_addr": "192.0.34.72",
        "proxy": "10.1.1.10",
        "nameserver": "10.1.1.11",
        "citrix": "10.1.1.12",
        "citrix_udp": "10.1.1.12",
    }
    assert ruleset.tables == {"lan": ("10.1.1.0/24",), "admins": ("10.1.1.14", "10.1.1.100")}
    assert [s.words for s in ruleset.options] == [("set", "skip", "on", "lo")]


def test_it_blocks_and_logs_everything_first() -> None:
    # pf: the last matching rule wins, so the default comes first and every pass overrides it.
    first = pf.read(pf_conf()).rules[0]
    assert first.words == ("block", "log", "all")


def test_it_refers_only_to_defined_macros_and_tables() -> None:
    ruleset = pf.read(pf_conf())
    for rule in ruleset.rules:
        words = rule.words
        for word in words:
            if word.startswith("$"):
                assert word[1:] in ruleset.macros, rule
        for i, word in enumerate(words):
            if word == "<" and words[i + 2] == ">":
                assert words[i + 1] in ruleset.tables, rule


def test_it_passes_ike_nat_t_and_esp_only_with_the_gateway_address() -> None:
    rules = [" ".join(r.words) for r in pf.read(pf_conf()).rules if "$ext_if" in r.words]
    assert rules == [
        "pass in on $ext_if proto udp from any to $gw_addr port { isakmp , ipsec-nat-t }",
        "pass out on $ext_if proto udp from $gw_addr port { isakmp , ipsec-nat-t } to any",
        "pass in on $ext_if proto esp from any to $gw_addr",
        "pass out on $ext_if proto esp from $gw_addr to any",
    ]


def test_it_passes_each_service_from_the_tunnel_to_the_inside_only() -> None:
    rules = [" ".join(r.words) for r in pf.read(pf_conf()).rules if "$nameserver" in r.words]
    assert rules == [
        "pass in on enc0 proto { tcp , udp } from any to $nameserver port 53 keep state ( if-bound ) tag VPN",
        "pass out on $int_if proto { tcp , udp } from any to $nameserver port 53 tagged VPN",
    ]


def test_it_keeps_enc0_state_if_bound() -> None:
    # if-bound: a reply must come back through the tunnel its connection went out of.
    if_bound = " keep state ( if-bound ) "
    enc0 = [r for r in pf.read(pf_conf()).rules if "enc0" in r.words]
    assert len(enc0) == 1 + 4 + 1
    for rule in enc0:
        assert if_bound in " ".join(rule.words) + " ", rule


def test_it_lists_several_ports_as_a_pf_list() -> None:
    dns = Service(name="dns", address="10.1.1.53", protocol="tcp-udp", ports=(53, 853))
    text = pf_conf(site(services=(dns,)))
    rule = "pass in on enc0 proto { tcp, udp } from any to $dns port { 53, 853 } keep state (if-bound) tag VPN\n"
    assert rule in text
    assert set(pf.read(text).macros) == {"ext_if", "int_if", "gw_addr", "dns"}


def test_it_leaves_out_the_admin_table_and_rule_without_admin_hosts() -> None:
    ruleset = pf.read(pf_conf(site(admin_hosts=())))
    assert set(ruleset.tables) == {"lan"}
    assert len(ruleset.rules) == CASE_STUDY_RULES - 1


def test_it_writes_numeric_addresses_only() -> None:
    # Host names in rules are resolved once at load time, to their first address (§8, 21).
    for stmt in pf.read(pf_conf()).statements:
        assert not any("example" in word for word in stmt.words), stmt


def test_it_protects_every_gateway_network() -> None:
    gateway = dataclasses.replace(site().gateway, networks=("10.1.1.0/24", "10.2.0.0/16"))
    assert pf.read(pf_conf(site(gateway=gateway))).tables["lan"] == ("10.1.1.0/24", "10.2.0.0/16")


def test_it_refuses_to_render_pf_conf_for_a_client() -> None:
    with pytest.raises(RenderError):
        render_pf_conf(environment(), site(), client_peer())


# --- the reader itself: pfctl's lexer rules that an injection would exploit


def test_it_reads_backslash_continuations_and_comments() -> None:
    ruleset = pf.read('a = "x" # c\npass in \\\n  on $a # c\n')
    assert ruleset.macros == {"a": "x"}
    assert [r.words for r in ruleset.rules] == [("pass", "in", "on", "$a")]


def test_it_lets_a_comment_ending_in_a_backslash_swallow_the_next_line() -> None:
    assert pf.read("# note \\\npass all\n").rules == []


def test_it_ends_a_word_at_a_hash_like_pfctl() -> None:
    assert pf.read("pass in on em0#x\n").rules[0].words == ("pass", "in", "on", "em0")


def test_it_continues_a_statement_inside_braces() -> None:
    ruleset = pf.read("table <t> { 10.0.0.1,\n 10.0.0.2 }\npass all\n")
    assert ruleset.tables == {"t": ("10.0.0.1", "10.0.0.2")}
    assert len(ruleset.rules) == 1


@pytest.mark.parametrize("text", ["table <t> {\npass all\n", "pass all }\n", 'a = "x\n'])
def test_it_refuses_what_pfctl_would_refuse(text: str) -> None:
    with pytest.raises(pf.ReadError):
        pf.read(text)
