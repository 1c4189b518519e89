"""Every API route × every persona → the expected status (docs/security.md T23, T29).

The route list is read from the URL resolver, so a new /api/ route without an entry here fails.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from rest_framework.test import APIClient

from authority.models import CertificateAuthority
from enrollment.models import Peer
from tests.api.conftest import ANY_FQDN_CSR, PERSONAS

pytestmark = pytest.mark.django_db

CLIENT_BODY = {"fqdn": "matrix.example.com", "csr": ANY_FQDN_CSR}
SERVER_BODY = {"fqdn": "gw.example.com", "kind": "server", "address": "192.0.2.1", "networks": ["10.1.0.0/24"]}

ALL_200 = {"owner": 200, "other_user": 200, "admin": 200, "second_admin": 200, "auditor": 200, "anonymous": 401}
DECIDE = {"owner": 403, "other_user": 404, "admin": 200, "second_admin": 200, "auditor": 403, "anonymous": 401}

# case id: (method, url name, takes the peer id, body, {persona: status})
MATRIX: dict[str, tuple[str, str, bool, dict[str, Any] | None, dict[str, int]]] = {
    "schema": ("GET", "api-schema", False, None, {p: 200 for p in PERSONAS}),
    "ca": ("GET", "api-ca", False, None, ALL_200),
    "peers-list": ("GET", "api-peers", False, None, ALL_200),
    "peers-create-client": ("POST", "api-peers", False, CLIENT_BODY, {**{p: 201 for p in PERSONAS}, "anonymous": 401}),
    "peers-create-server": (
        "POST",
        "api-peers",
        False,
        SERVER_BODY,
        {"owner": 403, "other_user": 403, "admin": 201, "second_admin": 201, "auditor": 403, "anonymous": 401},
    ),
    "peer-detail": (
        "GET",
        "api-peer",
        True,
        None,
        {"owner": 200, "other_user": 404, "admin": 200, "second_admin": 200, "auditor": 200, "anonymous": 401},
    ),
    "peer-approve": ("POST", "api-peer-approve", True, None, DECIDE),
    "peer-reject": ("POST", "api-peer-reject", True, {"reason": "not ours"}, DECIDE),
    # A pending peer has no bundle yet: 409 for its owner; nobody else may take it (404).
    "peer-bundle": (
        "GET",
        "api-peer-bundle",
        True,
        None,
        {"owner": 409, "other_user": 404, "admin": 404, "second_admin": 404, "auditor": 404, "anonymous": 401},
    ),
    # A pending peer cannot be revoked (409) by those who may revoke it; auditors never (403).
    "peer-revoke": (
        "POST",
        "api-peer-revoke",
        True,
        {"reason": "keyCompromise"},
        {"owner": 409, "other_user": 404, "admin": 409, "second_admin": 409, "auditor": 403, "anonymous": 401},
    ),
    "certificates": ("GET", "api-certificates", False, None, ALL_200),
    "audit": (
        "GET",
        "api-audit",
        False,
        None,
        {"owner": 403, "other_user": 403, "admin": 200, "second_admin": 200, "auditor": 200, "anonymous": 401},
    ),
    # The gateway's sync endpoint takes the gateway's sync token only (tests/bundles/test_sync.py): no
    # person's token is one, so everyone gets 401 with the Bearer challenge.
    "gateway-sync": ("GET", "api-gateway-bundle", False, None, {p: 401 for p in PERSONAS}),
}
# The authentication challenge of a 401, by URL name (the API's own scheme unless listed).
CHALLENGES = {"api-gateway-bundle": 'Bearer realm="ca_portal gateway sync"'}


def _api_route_names(patterns: list[Any] | None = None, prefix: str = "") -> Iterator[str]:
    for entry in get_resolver().url_patterns if patterns is None else patterns:
        route = prefix + str(entry.pattern)
        if isinstance(entry, URLResolver):
            yield from _api_route_names(entry.url_patterns, route)
        elif isinstance(entry, URLPattern) and route.startswith("api/"):
            assert entry.name, f"the API route {route} has no name"
            yield entry.name


def test_it_covers_every_api_route() -> None:
    assert set(_api_route_names()) == {case[1] for case in MATRIX.values()}


@pytest.mark.parametrize("persona", PERSONAS)
@pytest.mark.parametrize("case", list(MATRIX))
def test_it_gives_each_persona_the_expected_status(
    case: str,
    persona: str,
    ca: CertificateAuthority,
    owner_peer: Peer,
    as_persona: Callable[[str], APIClient],
) -> None:
    method, name, takes_id, body, expected = MATRIX[case]
    url = reverse(name, args=[owner_peer.pk]) if takes_id else reverse(name)
    client = as_persona(persona)

    if method == "GET":
        response = client.get(url)
    else:
        response = client.post(url, body, format="json")

    assert response.status_code == expected[persona], response.content[:300]
    if response.status_code >= 400:
        assert set(response.json()) == {"errors"}
    if response.status_code == 401:
        assert response["WWW-Authenticate"] == CHALLENGES.get(name, "Token")
