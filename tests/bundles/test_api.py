"""GET /api/v1/peers/{id}/bundle (docs/architecture.md): the zip for the owner, the gateway's for CA admins."""

from __future__ import annotations

import io
import zipfile
from typing import Any

import pytest
from rest_framework.test import APIClient

from bundles.models import BundleDownload
from enrollment.models import Peer, PortalKey
from tests.api.conftest import token_client
from tests.bundles.conftest import issue, render
from tests.conftest import login

pytestmark = pytest.mark.django_db


def test_the_owner_gets_the_zip_with_a_token(client_peer: Peer, owner: Any) -> None:
    bundle = render(client_peer)

    response = token_client(owner).get(f"/api/v1/peers/{client_peer.pk}/bundle")

    assert response.status_code == 200
    assert response["Content-Type"] == "application/zip"
    assert response["X-Bundle-SHA256"] == bundle.sha256
    assert response["X-Bundle-Version"] == "1"
    assert response["X-Private-Key"] == "none"
    names = zipfile.ZipFile(io.BytesIO(response.content)).namelist()
    assert "client.example.com/isakmpd/isakmpd.policy" in names
    assert BundleDownload.objects.get().via == "api"


@pytest.mark.parametrize(("persona", "status"), [("other_user", 404), ("admin", 404), ("auditor", 404)])
def test_others_get_no_client_bundle(client_peer: Peer, persona: str, status: int, request: Any) -> None:
    render(client_peer)

    response = token_client(request.getfixturevalue(persona)).get(f"/api/v1/peers/{client_peer.pk}/bundle")

    assert response.status_code == status
    assert set(response.json()["errors"]) == {"__all__"}
    assert not BundleDownload.objects.exists()


def test_anonymous_gets_401(client_peer: Peer) -> None:
    render(client_peer)

    assert APIClient().get(f"/api/v1/peers/{client_peer.pk}/bundle").status_code == 401


def test_a_bundle_not_made_yet_is_409(client_peer: Peer, owner: Any) -> None:
    response = token_client(owner).get(f"/api/v1/peers/{client_peer.pk}/bundle")

    assert response.status_code == 409
    assert "not ready" in response.json()["errors"]["__all__"][0]


def test_admins_get_the_gateway_bundle(gateway: Peer, second_admin: Any) -> None:
    render(gateway)

    response = token_client(second_admin).get(f"/api/v1/peers/{gateway.pk}/bundle")

    assert response.status_code == 200
    assert "www.example.com/firewall/pf.conf" in zipfile.ZipFile(io.BytesIO(response.content)).namelist()


def test_a_session_download_withholds_the_portal_key_and_a_token_download_takes_it(
    gateway: Peer, owner: Any, admin: Any
) -> None:
    laptop, _ = issue(owner, admin, "laptop.example.com", portal_key=True)
    render(laptop)
    session = APIClient()
    login(session, owner)

    by_session = session.get(f"/api/v1/peers/{laptop.pk}/bundle")
    by_token = token_client(owner).get(f"/api/v1/peers/{laptop.pk}/bundle")
    again = token_client(owner).get(f"/api/v1/peers/{laptop.pk}/bundle")

    assert by_session["X-Private-Key"] == "withheld"
    assert by_token["X-Private-Key"] == "included"
    assert again["X-Private-Key"] == "delivered-before"
    key = "laptop.example.com/isakmpd/private/local.key"
    assert key in zipfile.ZipFile(io.BytesIO(by_token.content)).namelist()
    assert key not in zipfile.ZipFile(io.BytesIO(again.content)).namelist()
    assert PortalKey.objects.get(peer=laptop).destroyed_at is not None


@pytest.mark.parametrize("raw", ["0", "-1", "abc", "9" * 30])
def test_bad_ids_are_404(owner: Any, raw: str) -> None:
    assert token_client(owner).get(f"/api/v1/peers/{raw}/bundle").status_code == 404


@pytest.mark.parametrize(
    ("persona", "message"), [("other_user", "no such peer"), ("admin", "no bundle you may download")]
)
def test_a_refusal_is_404_whether_the_peer_is_seen_or_not(
    client_peer: Peer, persona: str, message: str, request: Any
) -> None:
    render(client_peer)

    response = token_client(request.getfixturevalue(persona)).get(f"/api/v1/peers/{client_peer.pk}/bundle")

    assert response.status_code == 404
    assert response.json() == {"errors": {"__all__": [message]}}


def test_a_missing_peer_is_404_for_admins_too(ca: Any, admin: Any) -> None:
    response = token_client(admin).get("/api/v1/peers/999999/bundle")

    assert response.status_code == 404
    assert response.json() == {"errors": {"__all__": ["no such peer"]}}
