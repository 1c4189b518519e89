"""The site-profile form applies the renderers' rules, so one save cannot stop every bundle (issue 10 F4).

It builds the renderers' own ``Service`` and ``Gateway`` values and runs the ``Site`` list checks
(``validate_services``, ``validate_admin_hosts``) on them: what it accepts, a render accepts.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from django.test import Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from authority.models import AuditEvent
from bundles.forms import SiteProfileForm
from bundles.models import SiteProfile
from bundles.renderers.spec import Service
from devtools.bundlecase import site
from enrollment.models import Peer
from tests.bundles.conftest import issue, render
from tests.conftest import login

URL = "/bundles/profile/"


def _form(**changes: str) -> dict[str, str]:
    data = {
        "gateway": "",
        "ext_if": "rl0",
        "int_if": "dc0",
        "client_ext_if": "fxp0",
        "client_int_if": "fxp1",
        "suite": "aes256-sha256-modp2048",
        "remote_id_check": "on",
        "services": "proxy 10.1.1.10 tcp 3128",
        "admin_hosts": "10.1.1.14",
    }
    data.update(changes)
    return data


def _client(user: Any) -> Client:
    client = Client()
    login(client, user)
    return client


@pytest.mark.django_db
def test_two_services_with_one_name_are_refused_and_nothing_is_saved(admin: Any) -> None:
    events = AuditEvent.objects.filter(action="site_profile.updated").count()

    response = _client(admin).post(URL, _form(services="proxy 10.1.1.10 tcp 3128\nproxy 10.1.1.11 tcp 80"))

    assert response.status_code == 200
    errors = response.context["form"].errors
    assert errors["services"] == ["the service name 'proxy' is used twice; service names must be unique"]
    profile = SiteProfile.objects.get(pk=1)
    assert (profile.generation, profile.services) == (1, [])
    assert AuditEvent.objects.filter(action="site_profile.updated").count() == events


@pytest.mark.django_db
def test_after_a_refused_save_every_bundle_still_renders(gateway: Peer, owner: Any, admin: Any) -> None:
    client_peer, _ = issue(owner, admin, "branch.example.org", networks=("10.2.2.0/24",))
    _client(admin).post(URL, _form(services="proxy 10.1.1.10 tcp 3128\nproxy 10.1.1.11 tcp 80"))

    assert render(gateway).version == 1
    assert render(client_peer).version == 1


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        ({"services": "proxy 10.1.1.10 tcp 3128\nproxy 10.1.1.11 tcp 80"}, "services", "must be unique"),
        ({"services": "proxy 127.0.0.1 tcp 3128"}, "services", "line 1: 127.0.0.1 is loopback"),
        ({"services": "proxy 10.1.1.10 icmp 1"}, "services", "line 1: protocol must be one of"),
        ({"services": "proxy 10.1.1.10 tcp 0"}, "services", "line 1: ports are numbers from 1 to 65535"),
        ({"services": "proxy 10.1.1.10 tcp 70000"}, "services", "line 1: ports are numbers from 1 to 65535"),
        ({"services": "proxy 10.1.1.10 tcp ,"}, "services", "line 1: a service needs 1 to 16 ports"),
        ({"services": "lan 10.1.1.10 tcp 80"}, "services", "not a pf keyword"),
        (
            {"services": "\n".join(f"s{n} 10.1.1.10 tcp 80" for n in range(33))},
            "services",
            "at most 32 services",
        ),
        ({"admin_hosts": "10.1.1.14 ::1"}, "admin_hosts", "IPv6 is not supported yet"),
        ({"admin_hosts": "0.0.0.0"}, "admin_hosts", "unspecified"),  # noqa: S104 - a refused value
        ({"ext_if": "em0;pass"}, "ext_if", "interface name"),
        ({"int_if": "rl0"}, "int_if", "the gateway's interfaces must differ"),
        ({"client_int_if": "fxp0"}, "client_int_if", "the clients' interfaces must differ"),
        ({"suite": "legacy-3des-sha1-modp1024"}, "suite", "legacy switch"),
    ],
)
def test_the_form_refuses_what_a_render_would_refuse(changes: dict[str, str], field: str, message: str) -> None:
    form = SiteProfileForm(_form(**changes))

    assert not form.is_valid()
    assert any(message in error for error in form.errors[field]), form.errors


@pytest.mark.django_db
def test_it_refuses_a_gateway_peer_whose_values_no_bundle_can_carry(owner: Any, admin: Any) -> None:
    # Written before registration refused such values (or by hand): the form says so instead of
    # saving a profile that stops every render.
    legacy = Peer.objects.create(owner=admin, fqdn="old-vpn.example.org", kind="server", address="2001:db8::1")

    form = SiteProfileForm(_form(gateway=str(legacy.pk)))

    assert not form.is_valid()
    assert form.errors["gateway"] == [
        "old-vpn.example.org cannot be the gateway: 2001:db8::1: IPv6 is not supported yet: "
        "the generated configs (isakmpd, ipf) are IPv4 only"
    ]


@pytest.mark.django_db
def test_it_accepts_a_gateway_peer_that_renders(gateway: Peer) -> None:
    form = SiteProfileForm(_form(gateway=str(gateway.pk)))

    assert form.is_valid(), form.errors


service_lines = st.lists(
    st.tuples(
        st.sampled_from(["proxy", "dns", "citrix", "pass", "lan", "a_b", "x" * 25, "Proxy", "1st"]),
        st.sampled_from(["10.1.1.10", "10.1.1.11", "127.0.0.1", "0.0.0.0", "::1", "10.1.1.300", "169.254.1.1"]),  # noqa: S104
        st.sampled_from(["tcp", "udp", "tcp-udp", "icmp"]),
        st.lists(st.integers(-1, 70000), min_size=0, max_size=18).map(lambda ports: ",".join(map(str, ports))),
    ).map(" ".join),
    max_size=6,
)


@settings(max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(lines=service_lines, hosts=st.lists(st.sampled_from(["10.1.1.14", "10.1.1.100", "::1", "127.0.0.1"])))
def test_whatever_the_form_accepts_builds_a_site_that_renders(lines: list[str], hosts: list[str]) -> None:
    form = SiteProfileForm(_form(services="\n".join(lines), admin_hosts="\n".join(hosts)))
    if not form.is_valid():
        return
    services = tuple(
        Service(name=s["name"], address=s["address"], protocol=s["protocol"], ports=tuple(s["ports"]))
        for s in form.cleaned_data["services"]
    )
    dataclasses.replace(site(), services=services, admin_hosts=tuple(form.cleaned_data["admin_hosts"]))
