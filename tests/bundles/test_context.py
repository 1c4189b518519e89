"""The context processor on every page (ca_portal.context.portal): cheap, and it never writes.

Before: 2 queries for everyone (and a get_or_create that INSERTed the site profile on the first page
of a new site), 8 for a CA admin. Now: 2, and 7 for a CA admin (the active CA, the site profile, the
requests waiting for approval (the navigation's count, one COUNT), the gateway with its newest and
newest downloaded versions, the CRL's health, the latest audit check).
"""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import AnonymousUser
from django.db import connection
from django.test import RequestFactory
from django.test.utils import CaptureQueriesContext

from bundles import gateway_selectors, selectors, services
from bundles.models import SiteProfile
from ca_portal.context import portal
from core.roles import is_ca_admin
from enrollment.models import Peer
from tests.bundles.conftest import issue, render

pytestmark = pytest.mark.django_db

EVERYONE_QUERIES = 2  # the active CA, the site profile
# and the waiting approvals (one COUNT: the cap was 6 before the navigation showed it), the gateway with its
# versions, the CRL's health (CA and CRL), the latest audit check
ADMIN_QUERIES = 7


def _portal(user: Any) -> tuple[dict[str, Any], list[str]]:
    request = RequestFactory().get("/")
    request.user = user
    is_ca_admin(user)  # the roles are read once per request, by the first who asks (the middleware)
    with CaptureQueriesContext(connection) as queries:
        context = portal(request)
    return context, [q["sql"] for q in queries.captured_queries]


def _writes(sql: list[str]) -> list[str]:
    return [s for s in sql if s.split(None, 1)[0].upper() in {"INSERT", "UPDATE", "DELETE"}]


@pytest.mark.parametrize("persona", ["anonymous", "owner", "auditor"])
def test_everyone_pays_two_reads(client_peer: Peer, persona: str, request: Any) -> None:
    render(client_peer)
    user = AnonymousUser() if persona == "anonymous" else request.getfixturevalue(persona)

    context, sql = _portal(user)

    assert len(sql) <= EVERYONE_QUERIES, sql
    assert context["legacy_suite_warning"] is False
    assert "gateway_needs_update" not in context
    assert "pending_approvals" not in context


@pytest.mark.parametrize("chosen", [False, True], ids=["only-server", "chosen-gateway"])
def test_ca_admins_pay_a_bounded_number_of_reads(
    client_peer: Peer, gateway: Peer, admin: Any, second_admin: Any, chosen: bool
) -> None:
    if chosen:
        services.profile_update(actor=admin, gateway_id=gateway.pk)
    issue(admin, second_admin, "more.example.com")  # the number of peers does not matter
    render(gateway)

    context, sql = _portal(admin)

    assert len(sql) <= ADMIN_QUERIES, sql
    assert context["gateway_needs_update"] is True
    assert context["pending_approvals"] == 0
    assert not _writes(sql)


def test_reading_the_site_profile_never_writes(ca: Any, owner: Any) -> None:
    SiteProfile.objects.all().delete()  # a site without the row the data migration made

    context, sql = _portal(owner)

    assert not _writes(sql), sql
    assert context["legacy_suite_warning"] is False
    assert not SiteProfile.objects.exists()
    assert selectors.profile_get().generation == 1  # the defaults a first save starts from


def test_the_banner_agrees_with_the_gateway_page(client_peer: Peer, gateway: Peer, admin: Any) -> None:
    def both() -> tuple[bool, bool]:
        profile = selectors.profile_get()
        state = gateway_selectors.gateway_state(profile, selectors.gateway_peer(profile))
        return gateway_selectors.gateway_needs_update(profile), state.needs_update

    assert both() == (False, False)  # no version yet
    render(gateway)
    assert both() == (True, True)
    services.bundle_download(peer_id=gateway.pk, user=admin, address=None, via="page")
    assert both() == (False, False)
    services.profile_update(actor=admin, suite="aes256-sha384-ecp384")
    render(gateway)
    assert both() == (True, True)  # version 2, an admin has version 1
