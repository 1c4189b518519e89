"""The gateway's sync token: made and revoked by CA admins (audited, stored as a hash), and the one
endpoint it opens, GET /api/v1/gateway/bundle, which answers 304 until the gateway's bundle changes.

The sync script itself runs against a live portal in tests/bundles/test_sync_live.py.
"""

from __future__ import annotations

import hashlib
import io
import zipfile
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from authority.models import AuditEvent
from bundles import services, sync
from bundles.models import BundleDownload, SyncToken
from bundles.sync_api import REALM
from enrollment.models import Peer
from tests.api.conftest import token_client
from tests.bundles.conftest import issue, render
from tests.conftest import login

pytestmark = pytest.mark.django_db

URL = "/api/v1/gateway/bundle"


def bearer(token: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


def _page(user: Any) -> Client:
    client = Client()
    login(client, user)
    return client


def _events(action: str) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action=action).order_by("seq"))


@pytest.fixture
def rendered_gateway(gateway: Peer) -> Peer:
    render(gateway)
    return gateway


# --- the token ----------------------------------------------------------------------------------


def test_a_ca_admin_makes_a_token_that_is_shown_once_and_stored_as_a_hash(rendered_gateway: Peer, admin: Any) -> None:
    token, row = sync.sync_token_create(actor=admin)

    assert token.startswith("cps_")
    assert len(token) == 4 + 43
    assert row.token_hash == hashlib.sha256(token.encode()).hexdigest()
    assert row.peer == rendered_gateway
    assert row.hint == token[-4:]
    stored = SyncToken.objects.filter(pk=row.pk).values().get()
    assert token not in str(stored)
    (event,) = _events("bundle.sync_token_created")
    assert (event.actor, event.target, event.data) == (
        "carol",
        f"peer:{rendered_gateway.pk}",
        {"token": row.pk, "hint": row.hint},
    )
    assert token not in str(list(AuditEvent.objects.values_list("data", flat=True)))


def test_a_new_token_replaces_the_live_one(rendered_gateway: Peer, admin: Any, second_admin: Any) -> None:
    first, _ = sync.sync_token_create(actor=admin)
    second, _ = sync.sync_token_create(actor=second_admin)

    assert bearer(first).get(URL).status_code == 401
    assert bearer(second).get(URL).status_code == 200
    (revoked,) = _events("bundle.sync_token_revoked")
    assert revoked.actor == "dave"
    assert revoked.data["reason"] == "replaced"
    assert SyncToken.objects.filter(revoked_at__isnull=True).count() == 1


@pytest.mark.parametrize("persona", ["owner", "auditor"])
def test_only_ca_admins_make_or_revoke_tokens(rendered_gateway: Peer, persona: str, request: Any) -> None:
    user = request.getfixturevalue(persona)
    with pytest.raises(services.BundleError) as made:
        sync.sync_token_create(actor=user)
    with pytest.raises(services.BundleError) as revoked:
        sync.sync_token_revoke(actor=user)

    assert made.value.status == revoked.value.status == 403
    assert not SyncToken.objects.exists()
    client = _page(user)
    assert client.post("/bundles/gateway/sync-token/").status_code == 403
    assert client.post("/bundles/gateway/sync-token/revoke/").status_code == 403


def test_no_token_without_a_gateway(ca: Any, admin: Any) -> None:
    with pytest.raises(services.BundleError) as refused:
        sync.sync_token_create(actor=admin)
    assert refused.value.status == 409


def test_a_revoked_token_is_refused(rendered_gateway: Peer, admin: Any) -> None:
    token, _ = sync.sync_token_create(actor=admin)

    sync.sync_token_revoke(actor=admin)

    response = bearer(token).get(URL)
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == REALM
    assert set(response.json()["errors"]) == {"__all__"}
    (event,) = _events("bundle.sync_token_revoked")
    assert event.data["reason"] == "revoked"
    with pytest.raises(services.BundleError) as again:
        sync.sync_token_revoke(actor=admin)
    assert again.value.status == 409


# --- the endpoint -------------------------------------------------------------------------------


def test_the_gateway_gets_its_zip_then_304_until_it_changes(
    rendered_gateway: Peer, admin: Any, owner: Any, second_admin: Any
) -> None:
    token, row = sync.sync_token_create(actor=admin)

    first = bearer(token).get(URL, REMOTE_ADDR="192.0.34.72")

    assert first.status_code == 200
    assert first["Content-Type"] == "application/zip"
    assert first["X-Bundle-Version"] == "1"
    digest = hashlib.sha256(first.content).hexdigest()
    assert first["X-Bundle-SHA256"] == digest
    assert first["ETag"] == f'"{digest}"'
    assert first["Cache-Control"] == "no-store"
    names = zipfile.ZipFile(io.BytesIO(first.content)).namelist()
    assert "www.example.com/bin/ca-portal-sync" in names
    assert not [n for n in names if n.endswith("local.key") or "token" in n]

    same = bearer(token).get(URL, HTTP_IF_NONE_MATCH=first["ETag"])
    assert same.status_code == 304
    assert same.content == b""
    assert same["ETag"] == first["ETag"]
    row.refresh_from_db()
    assert (row.running_version, row.last_address) == (1, "127.0.0.1")
    assert row.last_seen_at is not None

    issue(owner, second_admin, "laptop.example.com")  # a new client: the gateway's policy names it
    render(rendered_gateway)
    newer = bearer(token).get(URL, HTTP_IF_NONE_MATCH=first["ETag"])
    assert newer.status_code == 200
    assert newer["X-Bundle-Version"] == "2"
    policy = zipfile.ZipFile(io.BytesIO(newer.content)).read("www.example.com/isakmpd/isakmpd.policy").decode()
    assert "laptop.example.com" in policy

    synced = _events("bundle.synced")
    assert [(e.actor, e.data["version"], e.data["address"]) for e in synced] == [
        (f"sync-token:{row.pk}", 1, "192.0.34.72"),
        (f"sync-token:{row.pk}", 2, "127.0.0.1"),
    ]
    assert synced[0].data["sha256"] == digest
    assert not BundleDownload.objects.exists()  # versions a gateway synced may be pruned like any other


def test_a_version_is_audited_once_however_often_it_is_fetched(rendered_gateway: Peer, admin: Any) -> None:
    token, _ = sync.sync_token_create(actor=admin)

    for _ in range(3):
        assert bearer(token).get(URL).status_code == 200

    assert len(_events("bundle.synced")) == 1


def test_the_token_fetches_nothing_else(rendered_gateway: Peer, client_peer: Peer, admin: Any) -> None:
    render(client_peer)
    token, _ = sync.sync_token_create(actor=admin)
    as_token = APIClient()
    as_token.credentials(HTTP_AUTHORIZATION=f"Token {token}")  # the API's own scheme: unknown key
    pages = Client(HTTP_AUTHORIZATION=f"Bearer {token}")

    for client in (bearer(token), as_token):
        for path in (
            f"/api/v1/peers/{client_peer.pk}/bundle",
            f"/api/v1/peers/{rendered_gateway.pk}/bundle",
            f"/api/v1/peers/{rendered_gateway.pk}",
            "/api/v1/peers",
            "/api/v1/ca",
            "/api/v1/certificates",
            "/api/v1/audit",
        ):
            assert client.get(path).status_code == 401, path
        assert client.post(f"/api/v1/peers/{client_peer.pk}/revoke", {"reason": "keyCompromise"}).status_code == 401
    assert as_token.get(URL).status_code == 401
    for path in ("/bundles/gateway/", f"/bundles/peer/{rendered_gateway.pk}/", "/peers/"):
        assert pages.get(path).status_code == 302, path  # to the sign-in page: no session, no access
    assert not BundleDownload.objects.exists()


@pytest.mark.parametrize("persona", ["owner", "admin", "auditor"])
def test_people_cannot_use_the_sync_endpoint(rendered_gateway: Peer, persona: str, request: Any) -> None:
    user = request.getfixturevalue(persona)
    session = APIClient()
    login(session, user)

    for client in (token_client(user), session):
        response = client.get(URL)
        assert response.status_code == 401
        assert response["WWW-Authenticate"] == REALM


@pytest.mark.parametrize("header", ["Bearer", "Bearer a b", "Bearer cps_nope", "Bearer " + "x" * 300])
def test_bad_credentials_are_401(rendered_gateway: Peer, header: str) -> None:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=header)
    response = client.get(URL)
    assert response.status_code == 401
    assert set(response.json()) == {"errors"}


def test_a_token_of_a_replaced_gateway_is_refused(rendered_gateway: Peer, admin: Any, second_admin: Any) -> None:
    token, _ = sync.sync_token_create(actor=admin)
    other, _ = issue(
        admin, second_admin, "gw2.example.com", kind="server", networks=("10.2.0.0/24",), address="192.0.2.7"
    )
    services.profile_update(actor=admin, gateway_id=other.pk)

    response = bearer(token).get(URL)

    assert response.status_code == 403
    assert "no longer the site's gateway" in response.json()["errors"]["__all__"][0]


def test_no_bundle_yet_is_409(gateway: Peer, admin: Any) -> None:
    token, _ = sync.sync_token_create(actor=admin)
    assert bearer(token).get(URL).status_code == 409


# --- the gateway page ---------------------------------------------------------------------------


def test_the_gateway_page_makes_and_shows_the_token_once(rendered_gateway: Peer, admin: Any) -> None:
    client = _page(admin)
    assert "Make a sync token" in client.get("/bundles/gateway/").content.decode()

    made = client.post("/bundles/gateway/sync-token/")

    assert made.status_code == 200
    assert made["Cache-Control"].startswith("max-age=0")
    html = made.content.decode()
    row = SyncToken.objects.get()
    token = html.split('id="sync-token-value" aria-label="sync token"')[0].rsplit('value="', 1)[1].split('"')[0]
    assert row.token_hash == hashlib.sha256(token.encode()).hexdigest()
    assert "--sync-token-file" in html
    page = client.get("/bundles/gateway/").content.decode()
    assert token not in page
    assert f"cps_…{row.hint}" in page
    assert "never" in page  # it has not synced yet
    assert 'id="sync-silent"' in page


def test_with_sync_on_the_gateway_will_pick_new_files_up(
    rendered_gateway: Peer, admin: Any, owner: Any, second_admin: Any
) -> None:
    client = _page(admin)
    token, _ = sync.sync_token_create(actor=admin)
    fetched = bearer(token).get(URL)

    html = client.get("/bundles/gateway/").content.decode()
    assert 'id="gateway-will-sync"' in html  # it was sent version 1, has not said it runs it yet
    assert "will pick this up within 5 minutes" in html
    assert 'id="gateway-banner"' not in client.get("/peers/").content.decode()

    bearer(token).get(URL, HTTP_IF_NONE_MATCH=fetched["ETag"])
    html = client.get("/bundles/gateway/").content.decode()
    assert "it runs version 1 (sync)" in html
    assert "The gateway needs new files" not in html

    issue(owner, second_admin, "laptop.example.com")
    render(rendered_gateway)
    html = client.get("/bundles/gateway/").content.decode()
    assert "The gateway will pick this up within 5 minutes" in html
    assert "the gateway runs version 1" in html
    assert "The gateway needs new files" not in html


def test_a_silent_gateway_brings_the_banner_back(rendered_gateway: Peer, admin: Any) -> None:
    client = _page(admin)
    token, row = sync.sync_token_create(actor=admin)
    bearer(token).get(URL)
    SyncToken.objects.filter(pk=row.pk).update(last_seen_at=timezone.now() - timedelta(minutes=16))

    html = client.get("/bundles/gateway/").content.decode()

    assert 'id="sync-silent"' in html
    assert "has not synced for more than 15 minutes" in html
    assert 'id="gateway-banner"' in client.get("/peers/").content.decode()


def test_revoking_on_the_page(rendered_gateway: Peer, admin: Any) -> None:
    client = _page(admin)
    token, row = sync.sync_token_create(actor=admin)

    response = client.post("/bundles/gateway/sync-token/revoke/", follow=True)

    assert f"…{row.hint} revoked" in response.content.decode()
    assert bearer(token).get(URL).status_code == 401
    assert "Make a sync token" in response.content.decode()
