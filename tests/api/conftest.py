"""API test helpers: token clients per persona, and peers registered the way the API does it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from enrollment.models import Peer
from enrollment.services import peer_register
from tests.conftest import fixture_bytes

PERSONAS = ("owner", "other_user", "admin", "second_admin", "auditor", "anonymous")
CLIENT_FQDN = "client.example.com"
CLIENT_CSR = fixture_bytes("client-rsa2048.csr").decode()
ANY_FQDN_CSR = fixture_bytes("client-nocn.csr").decode()  # no CN, no SAN: fits any FQDN


def token_client(user: Any | None) -> APIClient:
    """An API client that sends ``Authorization: Token KEY`` for ``user`` (None: anonymous)."""
    client = APIClient()
    if user is not None:
        token, _ = Token.objects.get_or_create(user=user)
        client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    return client


@pytest.fixture
def as_persona(request: pytest.FixtureRequest) -> Callable[[str], APIClient]:
    """``as_persona("admin")``: a token client for that persona fixture; "anonymous" has no credentials."""

    def make(name: str) -> APIClient:
        return token_client(None if name == "anonymous" else request.getfixturevalue(name))

    return make


def register(owner: Any, *, fqdn: str = CLIENT_FQDN, csr: str | None = CLIENT_CSR, **options: Any) -> Peer:
    values: dict[str, Any] = {"kind": "client", "networks": [], "address": None}
    values.update(options)
    if values["kind"] == "server" and not values["networks"]:
        values["networks"] = ["10.0.0.0/24"]  # a gateway needs its protected networks (pki.networks)
    return peer_register(owner=owner, fqdn=fqdn, csr_pem=csr, actor=owner, **values)


@pytest.fixture
def owner_peer(owner: Any) -> Peer:
    """alice's pending client peer with her own CSR."""
    return register(owner)
