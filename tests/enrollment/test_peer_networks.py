"""What registration accepts always renders (issue 10 F1, F2; security.md T34).

Registration (the page, the API and EST all call ``peer_register_full``) and the renderers share
``pki.networks``: a network or an address the renderers would refuse is refused at registration,
with a reason, instead of failing every render of the gateway (a network) or never giving the peer
a bundle (an address).
"""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest
from django.test import Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from authority.models import AuditEvent
from bundles.renderers.spec import Gateway, PeerSpec, SpecRejected
from devtools.bundlecase import site
from enrollment.models import Peer
from enrollment.services import EnrollmentError, parse_networks, peer_register
from tests.api.conftest import ANY_FQDN_CSR, token_client
from tests.bundles.conftest import issue, render
from tests.conftest import login

FQDN = "branch.example.org"


def _register(owner: Any, **overrides: Any) -> Peer:
    options: dict[str, Any] = {
        "owner": owner,
        "fqdn": FQDN,
        "kind": "client",
        "networks": [],
        "address": None,
        "csr_pem": ANY_FQDN_CSR,
        "actor": owner,
    }
    options.update(overrides)
    return peer_register(**options)


def _refused(owner: Any, field: str, match: str, **overrides: Any) -> None:
    events = AuditEvent.objects.count()
    with pytest.raises(EnrollmentError, match=match) as refused:
        _register(owner, **overrides)
    assert (refused.value.field, refused.value.status) == (field, 400)
    assert not Peer.objects.exists()
    assert AuditEvent.objects.count() == events


# --- F1: networks -------------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("networks", "match"),
    [
        (["::/0"], "IPv6 is not supported yet"),
        (["0.0.0.0/0"], "not a protected network"),
        (["2001:db8::/32"], "IPv6 is not supported yet"),
        (["10.0.0.0/24", "0.0.0.0/1"], "cannot be a protected network"),
        (["127.0.0.0/8"], "loopback"),
        (["224.0.0.0/24"], "multicast"),
    ],
)
def test_it_refuses_a_network_the_renderers_refuse(owner: Any, networks: list[str], match: str) -> None:
    _refused(owner, "networks", match, networks=networks)


@pytest.mark.django_db
def test_it_refuses_a_gateway_without_protected_networks(admin: Any) -> None:
    # Accepted before, and then no bundle at all could be rendered: the gateway's are in every one.
    _refused(admin, "networks", "at least one protected network", kind="server", address="192.0.2.10")


@pytest.mark.django_db
@pytest.mark.parametrize("networks", [["::/0"], ["0.0.0.0/0"]])
def test_the_api_answers_400_on_networks(owner: Any, networks: list[str]) -> None:
    response = token_client(owner).post(
        "/api/v1/peers", {"fqdn": FQDN, "networks": networks, "csr": ANY_FQDN_CSR}, format="json"
    )

    assert response.status_code == 400
    assert list(response.json()["errors"]) == ["networks"]
    assert not Peer.objects.exists()


@pytest.mark.django_db
def test_the_page_shows_the_reason_on_the_networks_field(client: Client, owner: Any) -> None:
    login(client, owner)
    form = {"fqdn": FQDN, "kind": "client", "networks": "::/0", "address": "", "key_source": "csr"}

    response = client.post("/peers/new/", {**form, "csr": ANY_FQDN_CSR})

    assert response.status_code == 200
    assert any("IPv6 is not supported yet" in e for e in response.context["form"].errors["networks"])
    assert not Peer.objects.exists()


networks_typed = st.one_of(
    # anything ipaddress can parse, both families, any prefix, host bits set or not
    st.tuples(st.ip_addresses(), st.integers(0, 128)).map(
        lambda t: str(ipaddress.ip_network(f"{t[0]}/{min(t[1], t[0].max_prefixlen)}", strict=False))
    ),
    st.tuples(st.ip_addresses(v=4), st.integers(0, 32)).map(lambda t: f"{t[0]}/{t[1]}"),
    st.sampled_from(["::/0", "0.0.0.0/0", "0.0.0.0/1", "128.0.0.0/1", " 10.1.0.0/16 ", "10.0.0.0/255.0.0.0"]),
    st.text(alphabet="0123456789./:abcdef% \n", max_size=20),
)


@settings(max_examples=500, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(typed=st.lists(networks_typed, max_size=8))
def test_any_network_list_registration_accepts_builds_a_renderer_peer_spec(typed: list[str]) -> None:
    try:
        networks = parse_networks(typed)
    except EnrollmentError:
        return
    try:
        PeerSpec(fqdn=FQDN, kind="client", cert_pem="", networks=tuple(networks), int_if="em1" if networks else None)
        # ... and the gateway's files, which list every issued client gateway's networks, still render.
        if networks:
            site(client_networks=((FQDN, tuple(networks)),))
            Gateway(fqdn="vpn.example.org", address="192.0.2.1", networks=tuple(networks))
    except SpecRejected as exc:
        pytest.fail(f"registration accepted {typed!r} as {networks!r}, and the renderers refuse it: {exc}")


@pytest.mark.django_db
def test_an_accepted_client_gateway_gets_its_bundle_and_the_gateway_keeps_rendering(
    gateway: Peer, owner: Any, admin: Any
) -> None:
    client, _ = issue(owner, admin, FQDN, networks=(" 10.2.2.0/24", "172.16.0.0/255.255.0.0"))

    assert client.networks == ["10.2.2.0/24", "172.16.0.0/16"]
    assert render(client).text_of("iked/iked.conf") is not None
    assert "10.2.2.0/24" in (render(gateway).text_of("iked/iked.conf") or "")


# --- F2: addresses ------------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("address", "match"),
    [
        ("0.0.0.0", "unspecified"),  # noqa: S104 - a refused value, not a bind address
        ("127.0.0.1", "loopback"),
        ("::1", "IPv6 is not supported yet"),
        ("255.255.255.255", "broadcast"),
        ("2001:db8::1", "IPv6 is not supported yet"),
        ("169.254.0.1", "link-local"),
    ],
)
@pytest.mark.parametrize("kind", ["client", "server"])
def test_it_refuses_an_address_no_bundle_can_carry(owner: Any, admin: Any, kind: str, address: str, match: str) -> None:
    user, networks = (admin, ["10.1.1.0/24"]) if kind == "server" else (owner, [])
    _refused(user, "address", match, kind=kind, address=address, networks=networks)


@pytest.mark.django_db
def test_the_api_answers_400_on_address(owner: Any) -> None:
    response = token_client(owner).post(
        "/api/v1/peers", {"fqdn": FQDN, "address": "2001:db8::1", "csr": ANY_FQDN_CSR}, format="json"
    )

    assert response.status_code == 400
    assert "IPv6 is not supported yet" in response.json()["errors"]["address"][0]


@pytest.mark.django_db
def test_a_client_with_an_accepted_address_gets_its_bundle(gateway: Peer, owner: Any, admin: Any) -> None:
    client, _ = issue(owner, admin, "laptop.example.org", address=" 198.51.100.7 ")

    assert client.address == "198.51.100.7"
    assert render(client).version == 1
