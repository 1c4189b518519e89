"""OPTIONS on every API route answers in the error-free shape, never a 500 (review F7)."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.urls import URLPattern, URLResolver, get_resolver

from tests.api.conftest import token_client

pytestmark = pytest.mark.django_db


def _api_routes() -> list[str]:
    """Every route under /api/v1/, with 1 for each path parameter."""
    routes: list[str] = []

    def walk(patterns: list[Any], prefix: str) -> None:
        for entry in patterns:
            if isinstance(entry, URLResolver):
                walk(entry.url_patterns, prefix + str(entry.pattern))
            elif isinstance(entry, URLPattern):
                routes.append("/" + re.sub(r"<[^>]+>", "1", prefix + str(entry.pattern)).rstrip("$").lstrip("^"))

    walk(get_resolver().url_patterns, "")
    return sorted(r for r in routes if r.startswith("/api/v1/"))


def test_it_finds_the_api_routes() -> None:
    routes = _api_routes()
    assert "/api/v1/peers" in routes
    assert "/api/v1/peers/1/approve" in routes
    assert len(routes) >= 9


@pytest.mark.parametrize("persona", ["admin", "owner", "anonymous"])
def test_options_on_every_api_route_is_never_a_server_error(persona: str, request: pytest.FixtureRequest) -> None:
    user = None if persona == "anonymous" else request.getfixturevalue(persona)
    client = token_client(user)
    for route in _api_routes():
        response = client.options(route)
        assert response.status_code < 500, (route, response.status_code)
        if response.status_code == 200:
            body = response.json()
            assert "OPTIONS" in body["allowed_methods"], route
            assert "OPTIONS" in response["Allow"], route
        else:
            assert set(response.json()) == {"errors"}, route


def test_options_names_the_methods_of_a_decision_route(admin: Any) -> None:
    response = token_client(admin).options("/api/v1/peers/1/approve")

    assert response.status_code == 200
    assert set(response.json()["allowed_methods"]) == {"POST", "OPTIONS"}
