"""Authentication: tokens from drf_create_token, sessions with CSRF (T26), and admin two-factor."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from django.core.management import call_command
from django.test import Client
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from authority.models import CertificateAuthority
from enrollment.models import Peer
from tests.api.conftest import ANY_FQDN_CSR, register, token_client
from tests.conftest import login

pytestmark = pytest.mark.django_db

CSRF_TOKEN = "k" * 32


def test_it_accepts_a_token_made_by_drf_create_token(admin: Any) -> None:
    out = io.StringIO()
    call_command("drf_create_token", "carol", stdout=out)
    key = out.getvalue().split()[2]
    client = APIClient()

    response = client.get("/api/v1/peers", HTTP_AUTHORIZATION=f"Token {key}")

    assert response.status_code == 200


@pytest.mark.parametrize("header", ["Token nonsense", "Token ", "Token a b", "Bearer abc", "Token \u00e9"])
def test_it_gives_401_for_bad_credentials(header: str, owner: Any) -> None:
    response = APIClient().get("/api/v1/peers", HTTP_AUTHORIZATION=header)

    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Token"
    assert "errors" in response.json()


def test_it_gives_401_with_www_authenticate_to_anonymous_clients() -> None:
    response = APIClient().post("/api/v1/peers", {"fqdn": "x.example.com"}, format="json")

    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Token"
    assert not Peer.objects.exists()


def _session(user: Any) -> Client:
    client = APIClient(enforce_csrf_checks=True)
    login(client, user)
    return client


def test_it_refuses_a_session_post_without_a_csrf_token(owner: Any) -> None:
    client = _session(owner)

    response = client.post("/api/v1/peers", {"fqdn": "x.example.com", "csr": ANY_FQDN_CSR}, format="json")

    assert response.status_code == 403
    assert "CSRF" in response.json()["errors"]["__all__"][0]
    assert not Peer.objects.exists()


def test_it_accepts_a_session_post_with_the_csrf_token(owner: Any) -> None:
    client = _session(owner)
    client.cookies["csrftoken"] = CSRF_TOKEN

    response = client.post(
        "/api/v1/peers", {"fqdn": "x.example.com", "csr": ANY_FQDN_CSR}, format="json", HTTP_X_CSRFTOKEN=CSRF_TOKEN
    )

    assert response.status_code == 201


def test_it_lets_session_clients_read_without_a_csrf_token(owner: Any) -> None:
    register(owner)

    response = _session(owner).get("/api/v1/peers")

    assert response.status_code == 200
    assert response.json()["count"] == 1


@pytest.mark.parametrize("action", ["approve", "reject"])
def test_it_refuses_session_decisions_without_a_csrf_token(
    action: str, ca: CertificateAuthority, owner: Any, admin: Any
) -> None:
    peer = register(owner)

    response = _session(admin).post(f"/api/v1/peers/{peer.pk}/{action}", {"reason": "x"}, format="json")

    assert response.status_code == 403
    peer.refresh_from_db()
    assert peer.decision == Peer.Decision.PENDING


def test_it_does_not_need_csrf_for_token_clients(owner: Any) -> None:
    client = APIClient(enforce_csrf_checks=True)
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=owner).key}")

    response = client.post("/api/v1/peers", {"fqdn": "x.example.com", "csr": ANY_FQDN_CSR}, format="json")

    assert response.status_code == 201


def test_it_gives_413_to_a_session_client_over_the_limit(owner: Any) -> None:
    """The CSRF check reads the body before the view does (for a form token): the limit holds there too."""
    client = _session(owner)
    client.cookies["csrftoken"] = CSRF_TOKEN
    body = json.dumps({"fqdn": "x.example.com", "csr": "A" * (100 * 1024)})

    response = client.post("/api/v1/peers", body, content_type="application/json", HTTP_X_CSRFTOKEN=CSRF_TOKEN)

    assert response.status_code == 413
    assert "__all__" in response.json()["errors"]


def test_it_refuses_session_admins_without_two_factor(settings: Any, admin: Any) -> None:
    settings.OTP_REQUIRED_FOR_ADMINS = True
    client = APIClient()
    client.force_login(admin)  # signed in, but no verified TOTP device

    response = client.get("/api/v1/peers")

    assert response.status_code == 403
    assert "two-factor" in response.json()["errors"]["__all__"][0]


def test_it_lets_token_admins_in_when_two_factor_is_required(settings: Any, admin: Any) -> None:
    settings.OTP_REQUIRED_FOR_ADMINS = True

    assert token_client(admin).get("/api/v1/peers").status_code == 200


def test_it_lets_session_admins_in_after_two_factor(settings: Any, admin: Any) -> None:
    settings.OTP_REQUIRED_FOR_ADMINS = True
    client = APIClient()
    login(client, admin)  # verifies a TOTP device in the session

    assert client.get("/api/v1/peers").status_code == 200
