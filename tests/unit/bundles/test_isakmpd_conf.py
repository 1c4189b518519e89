"""isakmpd.conf for the gateway and its clients: golden files, and the files read back as isakmpd reads them."""

from __future__ import annotations

import dataclasses
import ipaddress
import re

import pytest

from bundles.renderers import engine
from bundles.renderers.isakmpd import MY_ADDRESS, render_isakmpd_conf
from bundles.renderers.readers.isakmpd_conf import ParsedConf, parse_conf, split_list, structure_problems
from bundles.renderers.spec import SUITES, Gateway, PeerSpec, Site, SpecRejected
from devtools.bundlecase import client_peer, gateway_peer, laptop_peer, site
from tests.unit.bundles.golden import assert_matches_golden

ENV = engine.environment()
SITE = site()
LEGACY = SUITES["legacy-3des-sha1-modp1024"]
ANY = "0.0.0.0"  # noqa: S104 - isakmpd's "any network" in an ID section, not a bind address
MODERN_SUITES = [key for key, suite in SUITES.items() if not suite.legacy]

GATEWAY_SECTIONS = [
    "General", "Phase 1", "Phase 2", "peer-roaming", "id-gateway", "conn-roaming-1", "net-local-1",
    "net-roaming", "X509-certificates", "mm-suite", "qm-suite",
]  # fmt: skip
CLIENT_SECTIONS = [
    "General", "Phase 1", "Phase 2", "peer-gateway", "id-local", "id-gateway", "conn-local-1-remote-1",
    "net-local-1", "net-remote-1", "X509-certificates", "mm-suite", "qm-suite",
]  # fmt: skip
LAPTOP_SECTIONS = [
    "General", "Phase 1", "Phase 2", "peer-gateway", "id-local", "id-gateway", "conn-host-remote-1",
    "host-local", "net-remote-1", "X509-certificates", "mm-suite", "qm-suite",
]  # fmt: skip


def read(site_: Site, peer: PeerSpec) -> tuple[str, ParsedConf]:
    text = render_isakmpd_conf(ENV, site_, peer)
    conf = parse_conf(text)
    assert conf.problems == [], [str(p) for p in conf.problems]
    assert structure_problems(conf, legacy=site_.legacy) == []
    return text, conf


@pytest.mark.parametrize("peer", [gateway_peer(), client_peer(), laptop_peer()], ids=lambda p: p.fqdn)
def test_it_matches_the_golden_file(peer: PeerSpec) -> None:
    assert_matches_golden(f"casestudy/{peer.fqdn}/isakmpd.conf", render_isakmpd_conf(ENV, SITE, peer))


@pytest.mark.parametrize(
    ("peer", "sections"),
    [(gateway_peer(), GATEWAY_SECTIONS), (client_peer(), CLIENT_SECTIONS), (laptop_peer(), LAPTOP_SECTIONS)],
    ids=["gateway", "client", "laptop"],
)
def test_it_reads_back_with_exactly_the_expected_sections_and_no_problems(peer: PeerSpec, sections: list[str]) -> None:
    text, conf = read(SITE, peer)
    assert conf.section_names == sections
    assert text.endswith("\n")
    assert not text.endswith("\n\n")
    assert "\r" not in text
    assert "\t" not in text
    for line in text.split("\n"):
        # Tags in column 1, whole-line comments only: no line starts with whitespace and no value has a '#'.
        assert line == line.lstrip(), line
        assert line.startswith("#") or "#" not in line, line


def test_it_writes_the_gateway_values_where_isakmpd_looks_for_them() -> None:
    _, conf = read(SITE, gateway_peer())
    gw = SITE.gateway
    assert conf.section("General").values == {  # type: ignore[union-attr]
        "Listen-on": gw.address,
        "Retransmits": "5",
        "Exchange-max-time": "120",
        "DPD-check-interval": "30",
        "Policy-file": "/etc/isakmpd/isakmpd.policy",
    }
    assert conf.section("Phase 1").values == {"Default": "peer-roaming"}  # type: ignore[union-attr]
    assert conf.section("Phase 2").values == {"Passive-connections": "conn-roaming-1"}  # type: ignore[union-attr]
    assert conf.section("peer-roaming").values == {  # type: ignore[union-attr]
        "Phase": "1",
        "Transport": "udp",
        "Local-address": gw.address,
        "ID": "id-gateway",
        "Configuration": "mm-suite",
    }
    assert conf.section("id-gateway").values == {"ID-type": "FQDN", "Name": gw.fqdn}  # type: ignore[union-attr]
    assert conf.section("conn-roaming-1").values == {  # type: ignore[union-attr]
        "Phase": "2",
        "ISAKMP-peer": "peer-roaming",
        "Configuration": "qm-suite",
        "Local-ID": "net-local-1",
        "Remote-ID": "net-roaming",
    }
    assert conf.section("net-local-1").values == {  # type: ignore[union-attr]
        "ID-type": "IPV4_ADDR_SUBNET",
        "Network": "10.1.1.0",
        "Netmask": "255.255.255.0",
    }
    assert conf.section("net-roaming").values == {  # type: ignore[union-attr]
        "ID-type": "IPV4_ADDR_SUBNET",
        "Network": ANY,
        "Netmask": ANY,
    }
    assert_common_sections(conf, SITE)


def assert_common_sections(conf: ParsedConf, site_: Site) -> None:
    assert conf.section("X509-certificates").values == {  # type: ignore[union-attr]
        "CA-directory": "/etc/isakmpd/ca/",
        "Cert-directory": "/etc/isakmpd/certs/",
        "CRL-directory": "/etc/isakmpd/crls/",
        "Private-key": "/etc/isakmpd/private/local.key",
    }
    assert conf.section("mm-suite").values == {  # type: ignore[union-attr]
        "DOI": "IPSEC",
        "EXCHANGE_TYPE": "ID_PROT",
        "Transforms": site_.suite.isakmp_transform,
    }
    assert conf.section("qm-suite").values == {  # type: ignore[union-attr]
        "DOI": "IPSEC",
        "EXCHANGE_TYPE": "QUICK_MODE",
        "Suites": site_.suite.quick_mode_suite,
    }


def test_it_keeps_every_client_address_out_of_the_gateway_file() -> None:
    # Roaming clients: the only addresses are the gateway's own, its networks and the generic 0.0.0.0.
    text, _ = read(SITE, gateway_peer())
    allowed = {"192.0.34.72", "10.1.1.0", "255.255.255.0", ANY}
    assert set(re.findall(r"\b\d{1,3}(?:\.\d{1,3}){3}\b", text)) == allowed
    assert MY_ADDRESS not in text
    for fqdn in SITE.issued_clients:
        assert fqdn not in text


def test_it_names_the_gateway_and_leaves_the_own_address_to_install_time_for_a_client() -> None:
    _, conf = read(SITE, client_peer())
    gw = SITE.gateway
    assert conf.get("General", "Listen-on") == MY_ADDRESS
    assert conf.section("Phase 1").values == {gw.address: "peer-gateway"}  # type: ignore[union-attr]
    assert conf.section("Phase 2").values == {"Connections": "conn-local-1-remote-1"}  # type: ignore[union-attr]
    assert conf.section("peer-gateway").values == {  # type: ignore[union-attr]
        "Phase": "1",
        "Transport": "udp",
        "Address": gw.address,
        "Local-address": MY_ADDRESS,
        "ID": "id-local",
        "Remote-ID": "id-gateway",
        "Configuration": "mm-suite",
    }
    assert conf.section("id-local").values == {"ID-type": "FQDN", "Name": "client.example.com"}  # type: ignore[union-attr]
    assert conf.section("id-gateway").values == {"ID-type": "FQDN", "Name": gw.fqdn}  # type: ignore[union-attr]
    assert conf.section("conn-local-1-remote-1").values == {  # type: ignore[union-attr]
        "Phase": "2",
        "ISAKMP-peer": "peer-gateway",
        "Configuration": "qm-suite",
        "Local-ID": "net-local-1",
        "Remote-ID": "net-remote-1",
    }
    assert conf.get("net-local-1", "Network") == "10.10.10.0"
    assert conf.get("net-remote-1", "Network") == "10.1.1.0"
    assert_common_sections(conf, SITE)


def test_it_gives_a_roaming_host_its_own_address_as_phase_2_id() -> None:
    _, conf = read(SITE, laptop_peer())
    assert conf.section("host-local").values == {"ID-type": "IPV4_ADDR", "Address": MY_ADDRESS}  # type: ignore[union-attr]
    assert conf.get("conn-host-remote-1", "Local-ID") == "host-local"
    assert conf.get("id-local", "Name") == "laptop.example.com"


def test_it_writes_a_known_client_address_instead_of_the_placeholder() -> None:
    for peer in (client_peer(address="198.51.100.7"), laptop_peer(address="198.51.100.7")):
        text, conf = read(SITE, peer)
        assert "@@" not in text
        assert conf.get("General", "Listen-on") == "198.51.100.7"
        assert conf.get("peer-gateway", "Local-address") == "198.51.100.7"
    assert conf.get("host-local", "Address") == "198.51.100.7"


def test_it_writes_one_connection_per_pair_of_networks() -> None:
    two_nets = Gateway(fqdn="www.example.com", address="192.0.34.72", networks=("10.1.1.0/24", "172.16.0.0/12"))
    site_ = dataclasses.replace(SITE, gateway=two_nets)
    _, gw_conf = read(site_, gateway_peer(networks=two_nets.networks))
    assert split_list(gw_conf.get("Phase 2", "Passive-connections") or "") == (["conn-roaming-1", "conn-roaming-2"], 0)
    assert gw_conf.get("net-local-2", "Network") == "172.16.0.0"
    assert gw_conf.get("net-local-2", "Netmask") == "255.240.0.0"
    _, conf = read(site_, client_peer(networks=("10.10.10.0/24", "192.168.7.0/25")))
    connections, _ = split_list(conf.get("Phase 2", "Connections") or "")
    assert connections == [
        "conn-local-1-remote-1",
        "conn-local-1-remote-2",
        "conn-local-2-remote-1",
        "conn-local-2-remote-2",
    ]
    assert conf.get("conn-local-2-remote-1", "Local-ID") == "net-local-2"
    assert conf.get("conn-local-2-remote-1", "Remote-ID") == "net-remote-1"
    assert conf.get("net-local-2", "Netmask") == "255.255.255.128"
    _, host = read(site_, laptop_peer())
    assert split_list(host.get("Phase 2", "Connections") or "")[0] == ["conn-host-remote-1", "conn-host-remote-2"]


@pytest.mark.parametrize("key", MODERN_SUITES)
def test_it_uses_no_weak_algorithm_with_a_modern_suite(key: str) -> None:
    site_ = dataclasses.replace(SITE, suite=SUITES[key])
    for peer in (gateway_peer(), client_peer(), laptop_peer()):
        text, conf = read(site_, peer)  # read() runs structure_problems(legacy=False)
        assert conf.get("mm-suite", "Transforms") == SUITES[key].isakmp_transform
        assert conf.get("qm-suite", "Suites") == SUITES[key].quick_mode_suite
        assert "WARNING" not in text


def test_it_warns_at_the_top_when_the_legacy_suite_is_on() -> None:
    site_ = dataclasses.replace(SITE, suite=LEGACY)
    for peer in (gateway_peer(), client_peer(), laptop_peer()):
        text, conf = read(site_, peer)
        assert text.startswith("# WARNING: legacy algorithms (3DES, SHA-1, MODP 1024)")
        weak = structure_problems(conf, legacy=False)
        assert any("3DES" in p for p in weak)
        assert any("GRP2" in p for p in weak)


def test_it_refuses_a_gateway_peer_that_is_not_the_sites_gateway() -> None:
    with pytest.raises(SpecRejected):
        render_isakmpd_conf(ENV, SITE, gateway_peer(fqdn="other.example.com"))


def test_it_writes_networks_in_canonical_dotted_form() -> None:
    # ipaddress accepts "a.b.c.d/netmask" too; isakmpd needs Network= and Netmask= as dotted quads.
    _, conf = read(SITE, client_peer(networks=("10.10.0.0/255.255.0.0",)))
    assert conf.get("net-local-1", "Network") == "10.10.0.0"
    assert conf.get("net-local-1", "Netmask") == "255.255.0.0"
    assert ipaddress.IPv4Network("10.10.0.0/255.255.0.0").prefixlen == 16
