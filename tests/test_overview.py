"""The overview (/) per role: the CA admins' first-run checklist, the waiting approvals in the
navigation, and the auditors' own overview (issue 10, item 10)."""

from __future__ import annotations

import html
import re
from typing import Any

import pytest
from django.test import Client

from bundles.services import profile_update
from enrollment.models import Peer
from enrollment.services import peer_register
from tests.conftest import fixture_bytes, login

pytestmark = pytest.mark.django_db

ANY_CSR = fixture_bytes("client-nocn.csr").decode()


def _page(client: Client, url: str = "/") -> str:
    response = client.get(url)
    assert response.status_code == 200
    return html.unescape(response.content.decode())


def _step(page: str, key: str) -> str:
    match = re.search(rf'<li class="(done|todo)" id="setup-{key}">(.*?)</li>', page, re.S)
    assert match is not None, f"no step {key}"
    return f"{match.group(1)}: {match.group(2)}"


def _pending(owner: Any, fqdn: str, kind: str = "client") -> Peer:
    return peer_register(
        owner=owner, fqdn=fqdn, kind=kind, networks=["10.1.1.0/24"] if kind == "server" else [],
        address="192.0.2.1" if kind == "server" else None, csr_pem=ANY_CSR, actor=owner,
    )  # fmt: skip


# --- the first-run checklist -----------------------------------------------------------------------


def test_an_empty_site_shows_every_step_to_do_with_where_to_do_it(client: Client, admin: Any) -> None:
    login(client, admin)

    page = _page(client)

    assert 'id="setup"' in page
    assert _step(page, "ca").startswith("todo")
    assert "init_ca" in _step(page, "ca")
    assert 'href="/peers/new/?kind=server"' in _step(page, "gateway")
    assert 'href="/bundles/profile/"' in _step(page, "profile")
    assert 'href="/peers/new/"' in _step(page, "client")


def test_a_gateway_on_its_way_links_to_its_review(client: Client, ca: Any, admin: Any, second_admin: Any) -> None:
    server = _pending(second_admin, "vpn.example.org", kind="server")
    login(client, admin)

    page = _page(client)

    assert _step(page, "ca").startswith("done")
    gateway = _step(page, "gateway")
    assert gateway.startswith("todo")
    assert f'href="/peers/approvals/{server.pk}/"' in gateway
    assert "vpn.example.org" in gateway


def test_the_steps_turn_done_and_the_list_goes_away(client: Client, client_peer: Peer, admin: Any) -> None:
    login(client, admin)

    page = _page(client)

    assert [_step(page, key)[:4] for key in ("ca", "gateway", "profile", "client")] == ["done"] * 2 + ["todo", "done"]
    assert "www.example.com" in _step(page, "gateway")
    assert "client.example.com" in _step(page, "client")

    profile_update(actor=admin, ext_if="em2")

    assert 'id="setup"' not in _page(client)


@pytest.mark.parametrize("persona", ["owner", "auditor"])
def test_only_admins_get_the_checklist(client: Client, persona: str, request: Any) -> None:
    login(client, request.getfixturevalue(persona))

    assert 'id="setup"' not in _page(client)


def test_a_ca_admin_can_start_with_the_server_kind(client: Client, admin: Any) -> None:
    login(client, admin)

    page = _page(client, "/peers/new/?kind=server")

    assert '<option value="server" selected>' in page


# --- the waiting approvals in the navigation -------------------------------------------------------


def test_the_navigation_counts_the_waiting_approvals_for_admins(
    client: Client, ca: Any, owner: Any, admin: Any
) -> None:
    login(client, admin)
    assert 'id="pending-approvals"' not in _page(client, "/peers/")

    for n in range(3):
        _pending(owner, f"laptop{n}.example.com")

    for url in ("/", "/peers/", "/ca/"):
        page = _page(client, url)
        assert re.search(r'id="pending-approvals"[^>]*>3<span class="visually-hidden"> waiting</span>', page), url


@pytest.mark.parametrize("persona", ["owner", "auditor"])
def test_others_get_no_count(client: Client, ca: Any, owner: Any, persona: str, request: Any) -> None:
    _pending(owner, "laptop.example.com")
    login(client, request.getfixturevalue(persona))

    assert 'id="pending-approvals"' not in _page(client)


# --- the auditors' overview ------------------------------------------------------------------------


def test_an_auditor_gets_an_overview_of_their_own(client: Client, client_peer: Peer, auditor: Any) -> None:
    login(client, auditor)

    page = _page(client)

    assert 'id="auditor-overview"' in page
    for link in ('href="/audit/certificates/"', 'href="/audit/log/"', 'href="/audit/"', 'href="/ca/"'):
        assert link in page
    counts = re.search(r'id="auditor-overview">(.*?)</section>', page, re.S)
    assert counts is not None
    assert '<span class="num">2</span><span>valid certificates</span>' in counts.group(1)  # gateway and client
    assert "has not been checked yet" in page
    assert 'id="your-peers"' not in page  # an auditor without peers is not shown an empty list


def test_the_auditors_overview_says_how_the_last_audit_check_went(client: Client, ca: Any, auditor: Any) -> None:
    from authority.audit_watch import audit_check

    audit_check()
    login(client, auditor)

    assert "The audit chain was intact" in _page(client)


@pytest.mark.parametrize("persona", ["owner", "admin"])
def test_others_do_not_get_the_auditors_overview(client: Client, ca: Any, persona: str, request: Any) -> None:
    login(client, request.getfixturevalue(persona))

    page = _page(client)

    assert 'id="auditor-overview"' not in page
    assert 'id="your-peers"' in page
