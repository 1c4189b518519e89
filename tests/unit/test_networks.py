"""pki.networks: the one definition of a peer's networks and addresses, and of overlaps (T34, T35)."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bundles.renderers.spec import Gateway, PeerSpec, SpecRejected, validate_ipv4, validate_ipv4_network
from pki.errors import PkiError
from pki.networks import (
    MAX_NETWORKS,
    NetworkRejected,
    clean_networks,
    clean_peer_address,
    overlaps,
    validate_host_address,
    validate_network,
    validate_networks,
    validate_peer_address,
)

# --- networks -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "match"),
    [
        ("::/0", "IPv6 is not supported yet"),
        ("2001:db8::/32", "IPv6 is not supported yet"),
        ("0.0.0.0/0", "everything, not a protected network"),
        ("0.0.0.0/1", "0.0.0.0/8 is not a network"),  # half of a default route
        ("128.0.0.0/1", "cannot be a protected network"),  # the other half
        ("0.0.0.0/8", "0.0.0.0/8 is not a network"),
        ("127.0.0.0/8", "loopback"),
        ("127.0.0.1/32", "loopback"),
        ("169.254.0.0/16", "link-local"),
        ("224.0.0.0/4", "multicast"),
        ("240.0.0.0/4", "reserved"),
        ("255.255.255.255/32", "reserved"),
        ("10.10.0.1/24", "host bits must be zero"),
        ("10.10.0.0/33", "not a network in CIDR form"),
        ("any", "not a network in CIDR form"),
        ("fe80::%eth0/64", "zone"),
        (" 10.0.0.0/8", "not a network in CIDR form"),
        ("10.0.0.0/8\n", "not a network in CIDR form"),
        ("", "not a network in CIDR form"),
        ("10.0.0.0/8,0.0.0.0/0", "not a network in CIDR form"),
    ],
)
def test_it_refuses_a_network_the_configs_cannot_carry_and_says_why(value: str, match: str) -> None:
    with pytest.raises(NetworkRejected, match=match) as refused:
        validate_network(value)
    assert refused.value.field == "networks"
    assert isinstance(refused.value, PkiError)  # the API answers any PkiError with 400


@pytest.mark.parametrize(
    ("value", "canonical"),
    [
        ("10.2.2.0/24", "10.2.2.0/24"),
        ("10.0.0.0/8", "10.0.0.0/8"),
        ("192.0.2.7/32", "192.0.2.7/32"),
        ("172.16.0.0/255.240.0.0", "172.16.0.0/12"),
        ("1.0.0.0/8", "1.0.0.0/8"),
        ("223.255.255.0/24", "223.255.255.0/24"),
    ],
)
def test_it_accepts_an_ipv4_network_in_canonical_form(value: str, canonical: str) -> None:
    assert validate_network(value) == canonical


def test_it_cleans_what_a_person_typed() -> None:
    typed = [" 10.20.0.0/16", "10.10.0.0/24 ", "10.10.0.0/24", "172.16.0.0/255.255.0.0"]

    assert clean_networks(typed) == ["10.10.0.0/24", "10.20.0.0/16", "172.16.0.0/16"]


def test_a_gateway_needs_a_network_and_nobody_more_than_the_maximum() -> None:
    with pytest.raises(NetworkRejected, match="at least one protected network"):
        clean_networks([], required=True)
    with pytest.raises(NetworkRejected, match="at least one protected network"):
        validate_networks((), required=True)
    too_many = [f"10.{n // 256}.{n % 256}.0/24" for n in range(MAX_NETWORKS + 1)]
    with pytest.raises(NetworkRejected, match=f"at most {MAX_NETWORKS}"):
        clean_networks(too_many)
    with pytest.raises(NetworkRejected, match=f"at most {MAX_NETWORKS}"):
        validate_networks(too_many)


# --- addresses ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "match"),
    [
        ("0.0.0.0", "unspecified"),  # noqa: S104 - a refused value, not a bind address
        ("127.0.0.1", "loopback"),
        ("::1", "IPv6 is not supported yet"),
        ("2001:db8::1", "IPv6 is not supported yet"),
        ("255.255.255.255", "broadcast"),
        ("240.0.0.1", "reserved"),
        ("224.0.0.1", "multicast"),
        ("169.254.1.1", "link-local"),
        ("192.0.2.300", "is not an IP address"),
        ("10.0.0.0/8", "is not an IP address"),
        ("gateway.example.com", "is not an IP address"),
        ("fe80::1%eth0", "zone"),
        ("192.0.2.1\n", "not an IPv4 address"),
    ],
)
def test_it_refuses_a_peer_address_the_configs_cannot_carry_and_says_why(value: str, match: str) -> None:
    with pytest.raises(NetworkRejected, match=match) as refused:
        validate_peer_address(value)
    assert refused.value.field == "address"


def test_it_cleans_a_typed_address_and_takes_empty_for_none() -> None:
    assert clean_peer_address(" 192.0.2.10 ") == "192.0.2.10"
    assert clean_peer_address("") is None
    assert clean_peer_address("  ") is None
    assert clean_peer_address(None) is None


def test_a_host_inside_the_site_may_be_link_local_but_a_peer_may_not() -> None:
    assert validate_host_address("169.254.10.1", field="services") == "169.254.10.1"
    with pytest.raises(NetworkRejected):
        validate_peer_address("169.254.10.1")


# --- the renderers use the same rules ---------------------------------------------------------------

values = st.one_of(
    st.tuples(st.ip_addresses(), st.integers(0, 128)).map(
        lambda t: str(ipaddress.ip_network(f"{t[0]}/{min(t[1], t[0].max_prefixlen)}", strict=False))
    ),
    st.tuples(st.ip_addresses(v=4), st.integers(0, 32)).map(lambda t: f"{t[0]}/{t[1]}"),
    st.ip_addresses().map(str),
    st.sampled_from(["::/0", "0.0.0.0/0", "10.0.0.0/8 ", "fe80::%eth0/64", "10.1.1.0/24\n[x]", ""]),
    st.text(max_size=20),
)


@settings(max_examples=400, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=values)
def test_the_renderers_refuse_exactly_what_pki_networks_refuses(value: str) -> None:
    for rule, spec_rule in (
        (validate_network, lambda v: validate_ipv4_network(v, field="networks")),
        (validate_peer_address, lambda v: validate_ipv4(v, field="address", public=True)),
        (lambda v: validate_host_address(v, field="services"), lambda v: validate_ipv4(v, field="services")),
    ):
        try:
            expected = rule(value)
        except NetworkRejected:
            with pytest.raises(SpecRejected):
                spec_rule(value)
        else:
            assert spec_rule(value) == expected


@settings(max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(typed=st.lists(values, max_size=6), address=st.one_of(st.none(), values))
def test_whatever_clean_accepts_builds_the_renderers_values(typed: list[str], address: str | None) -> None:
    try:
        networks = clean_networks(typed)
        clean_address = clean_peer_address(address)
    except NetworkRejected:
        return
    PeerSpec(fqdn="branch.example.org", kind="client", cert_pem="", networks=tuple(networks), address=clean_address)
    if networks and clean_address is not None:
        Gateway(fqdn="vpn.example.org", address=clean_address, networks=tuple(networks))


# --- overlaps -------------------------------------------------------------------------------------


def test_it_finds_equal_sub_and_supernets_and_nothing_else() -> None:
    taken = [("alice", ["10.2.2.0/24"]), ("gateway", ["10.1.1.0/24"]), ("bob", ["192.168.7.0/24"])]

    assert overlaps(["10.2.2.0/24"], taken)[0].owner == "alice"
    assert [(o.network, o.other, o.owner) for o in overlaps(["10.0.0.0/8"], taken)] == [
        ("10.0.0.0/8", "10.2.2.0/24", "alice"),
        ("10.0.0.0/8", "10.1.1.0/24", "gateway"),
    ]
    assert [o.owner for o in overlaps(["10.1.1.128/25"], taken)] == ["gateway"]
    assert overlaps(["10.2.3.0/24", "172.16.0.0/12"], taken) == []
    assert overlaps([], taken) == []


@settings(max_examples=300, deadline=None, database=None)
@given(
    a=st.tuples(st.ip_addresses(v=4), st.integers(1, 32)),
    b=st.tuples(st.ip_addresses(v=4), st.integers(1, 32)),
)
def test_overlap_is_symmetric_and_means_a_shared_address(
    a: tuple[ipaddress.IPv4Address, int], b: tuple[ipaddress.IPv4Address, int]
) -> None:
    one = str(ipaddress.IPv4Network(f"{a[0]}/{a[1]}", strict=False))
    two = str(ipaddress.IPv4Network(f"{b[0]}/{b[1]}", strict=False))
    shared = ipaddress.IPv4Network(one).overlaps(ipaddress.IPv4Network(two))

    assert bool(overlaps([one], [(2, [two])])) == shared
    assert bool(overlaps([two], [(1, [one])])) == shared
