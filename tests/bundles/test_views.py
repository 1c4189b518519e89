"""The bundle pages: preview, diff, download, links, the gateway page and the site profile form."""

from __future__ import annotations

import io
import logging
import re
import zipfile
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
import segno
from django.test import Client
from django.utils import timezone

from authority.models import AuditEvent
from bundles import services
from bundles.models import BundleDownload, DownloadLink, SiteProfile
from enrollment.models import Peer, PortalKey
from tests.bundles.conftest import issue, render
from tests.conftest import login

pytestmark = pytest.mark.django_db


def _client(user: Any, *, csrf: bool = False) -> Client:
    client = Client(enforce_csrf_checks=csrf)
    login(client, user)
    return client


def test_the_bundle_page_previews_every_file(client_peer: Peer, owner: Any) -> None:
    bundle = render(client_peer)

    page = _client(owner).get(f"/bundles/peer/{client_peer.pk}/")

    html = page.content.decode()
    assert page.status_code == 200
    for entry in bundle.files:
        assert f"client.example.com/{entry['path']}" in html
    assert "Download client.example.com.zip" in html
    assert "Make a one-time link" in html
    assert "[Phase 1]" in html
    assert "x509-base64:" in html


def test_the_page_shows_what_changed_since_the_previous_version(client_peer: Peer, owner: Any, admin: Any) -> None:
    render(client_peer)
    services.profile_update(actor=admin, suite="aes256-sha384-ecp384")
    render(client_peer)

    html = _client(owner).get(f"/bundles/peer/{client_peer.pk}/").content.decode()

    assert "Version 2" in html
    assert "compared with version 1" in html
    assert "-Transforms=" in html.replace("\t", "") or "-Transforms" in html
    assert "+Transforms" in html
    assert "AES-256-SHA2-384-GRP20-RSA_SIG" in html


def test_without_a_gateway_the_page_says_what_it_waits_for(ca: Any, owner: Any, admin: Any) -> None:
    peer, _ = issue(owner, admin, "client.example.com")

    html = _client(owner).get(f"/bundles/peer/{peer.pk}/").content.decode()

    assert "No bundle yet" in html
    assert "have not set up the VPN gateway" in html


def test_the_download_button_posts_and_returns_the_zip(client_peer: Peer, owner: Any) -> None:
    render(client_peer)

    response = _client(owner).post(f"/bundles/peer/{client_peer.pk}/download/")

    assert response.status_code == 200
    assert response["Content-Type"] == "application/zip"
    assert response["Content-Disposition"] == 'attachment; filename="client.example.com.zip"'
    assert "no-store" in response["Cache-Control"]
    assert zipfile.ZipFile(io.BytesIO(response.content)).testzip() is None
    assert BundleDownload.objects.get().address == "127.0.0.1"


def test_the_download_is_refused_without_the_csrf_token(gateway: Peer, owner: Any, admin: Any) -> None:
    laptop, _ = issue(owner, admin, "laptop.example.com", portal_key=True)
    render(laptop)

    response = _client(owner, csrf=True).post(f"/bundles/peer/{laptop.pk}/download/")

    assert response.status_code == 403
    assert not BundleDownload.objects.exists()
    assert PortalKey.objects.get(peer=laptop).encrypted_pem.startswith("-----BEGIN ENCRYPTED PRIVATE KEY-----")


def test_a_get_to_the_download_changes_nothing(client_peer: Peer, owner: Any) -> None:
    render(client_peer)

    assert _client(owner).get(f"/bundles/peer/{client_peer.pk}/download/").status_code == 405
    assert not BundleDownload.objects.exists()


def test_the_key_notice_changes_after_the_first_download(gateway: Peer, owner: Any, admin: Any) -> None:
    laptop, _ = issue(owner, admin, "laptop.example.com", portal_key=True)
    render(laptop)
    client = _client(owner)
    assert "in the next download only" in client.get(f"/bundles/peer/{laptop.pk}/").content.decode()

    client.post(f"/bundles/peer/{laptop.pk}/download/")

    html = client.get(f"/bundles/peer/{laptop.pk}/").content.decode()
    assert "then destroyed on the server" in html


def test_a_one_time_link_is_shown_once_and_redeemed_by_post(client_peer: Peer, owner: Any) -> None:
    render(client_peer)
    client = _client(owner)

    made = client.post(f"/bundles/peer/{client_peer.pk}/link/")
    url = made.context["url"]
    path = url.split("testserver", 1)[1]

    assert made["Referrer-Policy"] == "same-origin"  # never the token to another site; forms keep their Origin
    confirm = client.get(path)
    assert confirm.status_code == 200
    assert DownloadLink.objects.get().used_at is None
    redeemed = client.post(path)
    assert redeemed.status_code == 200
    assert redeemed["Referrer-Policy"] == "no-referrer"
    assert client.get(path).status_code == 410
    assert client.post(path).status_code == 410


def test_a_link_is_redeemed_without_a_session_or_a_csrf_token(client_peer: Peer, owner: Any) -> None:
    """What a headless peer does: `curl -fOJ -X POST <url>`, no cookie, no CSRF token (T24)."""
    render(client_peer)
    token, _ = services.link_create(peer_id=client_peer.pk, user=owner)
    curl = Client(enforce_csrf_checks=True)  # no session, and CSRF enforced as for any browser

    page = curl.get(f"/bundles/link/{token}/")
    assert page.status_code == 200
    assert DownloadLink.objects.get().used_at is None  # a GET (a link preview, a scanner) uses nothing up
    assert "csrfmiddlewaretoken" not in page.content.decode()
    redeemed = curl.post(f"/bundles/link/{token}/", REMOTE_ADDR="198.51.100.23")

    assert redeemed.status_code == 200
    assert redeemed["Content-Type"] == "application/zip"
    assert redeemed["Content-Disposition"] == 'attachment; filename="client.example.com.zip"'  # what curl -J uses
    assert redeemed["Referrer-Policy"] == "no-referrer"
    assert zipfile.ZipFile(io.BytesIO(redeemed.content)).testzip() is None
    row = BundleDownload.objects.get()
    assert (row.user, row.address, row.via) == (owner, "198.51.100.23", "link")
    assert curl.post(f"/bundles/link/{token}/").status_code == 410
    assert curl.get(f"/bundles/link/{token}/").status_code == 410


def test_an_unknown_token_is_404_for_everyone(client_peer: Peer, owner: Any, other_user: Any) -> None:
    render(client_peer)
    services.link_create(peer_id=client_peer.pk, user=owner)
    unknown = "x" * 43

    for client in (Client(), _client(other_user), _client(owner)):
        assert client.get(f"/bundles/link/{unknown}/").status_code == 404
        assert client.post(f"/bundles/link/{unknown}/").status_code == 404
    assert DownloadLink.objects.get().used_at is None
    assert not BundleDownload.objects.exists()


def test_the_link_page_shows_a_qr_code_a_copy_button_and_a_curl_line(client_peer: Peer, owner: Any) -> None:
    render(client_peer)

    made = _client(owner).post(f"/bundles/peer/{client_peer.pk}/link/")

    html = made.content.decode()
    url = made.context["url"]
    assert re.fullmatch(r"http://testserver/bundles/link/[A-Za-z0-9_-]{43}/", url)
    assert '<label for="one-time-url">One-time link</label>' in html
    assert f'value="{url}" id="one-time-url"' in html
    assert 'data-copy-target="one-time-url"' in html
    assert "/static/js/copy.js" in html
    assert f"curl -fOJ -X POST '{url}'" in html
    # The QR code is inline SVG (the CSP allows it; no data: URL, no script) of exactly that URL.
    assert segno.make(url, error="m").svg_inline(scale=4, title="QR code of the one-time link") in html
    assert "no sign-in is needed" in html


def test_the_key_goes_with_a_link_only_when_the_box_is_ticked(gateway: Peer, owner: Any, admin: Any) -> None:
    laptop, _ = issue(owner, admin, "laptop.example.com", portal_key=True)
    render(laptop)
    client = _client(owner)
    assert 'name="with_key"' in client.get(f"/bundles/peer/{laptop.pk}/").content.decode()

    plain = client.post(f"/bundles/peer/{laptop.pk}/link/")
    keyed = client.post(f"/bundles/peer/{laptop.pk}/link/", {"with_key": "on"})

    assert 'id="link-without-key"' in plain.content.decode()
    assert 'id="link-with-key"' in keyed.content.decode()
    assert list(DownloadLink.objects.order_by("pk").values_list("with_key", flat=True)) == [False, True]
    token = keyed.context["url"].rstrip("/").rsplit("/", 1)[1]
    assert 'id="redeem-with-key"' in Client().get(f"/bundles/link/{token}/").content.decode()
    client.post(f"/bundles/peer/{laptop.pk}/download/")  # the key goes with the owner's own download
    assert 'name="with_key"' not in client.get(f"/bundles/peer/{laptop.pk}/").content.decode()


@pytest.fixture
def site_log() -> Iterator[io.StringIO]:
    """Every line the site's loggers write, formatted as the site's own console handler does."""
    console = [h for h in logging.getLogger().handlers if type(h) is logging.StreamHandler]
    assert console
    assert console[0].formatter is not None
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(console[0].formatter)
    root = logging.getLogger()
    root.addHandler(handler)
    yield stream
    root.removeHandler(handler)


def test_no_log_line_holds_a_link_token(client_peer: Peer, owner: Any, site_log: io.StringIO) -> None:
    render(client_peer)
    client = _client(owner)
    made = client.post(f"/bundles/peer/{client_peer.pk}/link/")
    token = made.context["url"].rstrip("/").rsplit("/", 1)[1]
    expired, _ = services.link_create(peer_id=client_peer.pk, user=owner, now=timezone.now() - timedelta(minutes=11))
    curl = Client()

    assert curl.get(f"/bundles/link/{token}/").status_code == 200
    assert curl.post(f"/bundles/link/{token}/").status_code == 200
    assert curl.post(f"/bundles/link/{token}/").status_code == 410  # "Gone: /bundles/link/..."
    assert curl.get(f"/bundles/link/{expired}/").status_code == 410
    assert curl.get(f"/bundles/link/{token[::-1]}/").status_code == 404  # "Not Found: /bundles/link/..."

    lines = site_log.getvalue()
    assert f"/bundles/link/{token[:6]}.../" in lines  # the refusals were logged, cut
    for secret in (token, expired, token[::-1]):
        assert secret not in lines
    assert not AuditEvent.objects.filter(data__icontains=token).exists()


def test_the_gateway_page_says_when_the_gateway_needs_new_files(client_peer: Peer, gateway: Peer, admin: Any) -> None:
    render(gateway)
    client = _client(admin)

    html = client.get("/bundles/gateway/").content.decode()
    assert "The gateway needs new files" in html
    assert 'id="gateway-banner"' in client.get("/peers/").content.decode()

    client.post(f"/bundles/peer/{gateway.pk}/download/")

    html = client.get("/bundles/gateway/").content.decode()
    assert "files are current" in html
    assert 'id="gateway-banner"' not in client.get("/peers/").content.decode()


def test_the_gateway_page_explains_how_to_set_one_up(ca: Any, admin: Any) -> None:
    html = _client(admin).get("/bundles/gateway/").content.decode()

    assert "No gateway yet" in html
    assert "Register the gateway" in html


@pytest.mark.parametrize("persona", ["owner", "auditor"])
def test_only_admins_see_the_gateway_and_profile_pages(persona: str, request: Any) -> None:
    client = _client(request.getfixturevalue(persona))

    assert client.get("/bundles/gateway/").status_code == 403
    assert client.get("/bundles/profile/").status_code == 403
    assert client.post("/bundles/profile/", {"suite": "aes256-sha384-ecp384"}).status_code == 403
    assert not SiteProfile.objects.filter(suite="aes256-sha384-ecp384").exists()


def _profile_form(**changes: str) -> dict[str, str]:
    data = {
        "gateway": "",
        "ext_if": "rl0",
        "int_if": "dc0",
        "client_ext_if": "fxp0",
        "client_int_if": "fxp1",
        "suite": "aes256-sha256-modp2048",
        "remote_id_check": "on",
        "services": "proxy 10.1.1.10 tcp 3128\nnameserver 10.1.1.11 tcp-udp 53",
        "admin_hosts": "10.1.1.100\n10.1.1.14",
    }
    data.update(changes)
    return data


def test_admins_save_the_site_profile(admin: Any) -> None:
    response = _client(admin).post("/bundles/profile/", _profile_form())

    assert response.status_code == 302
    profile = SiteProfile.objects.get(pk=1)
    assert (profile.ext_if, profile.int_if, profile.client_ext_if) == ("rl0", "dc0", "fxp0")
    assert profile.services == [
        {"name": "proxy", "address": "10.1.1.10", "protocol": "tcp", "ports": [3128]},
        {"name": "nameserver", "address": "10.1.1.11", "protocol": "tcp-udp", "ports": [53]},
    ]
    assert profile.admin_hosts == ["10.1.1.14", "10.1.1.100"]
    assert profile.generation == 2


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"services": "proxy 10.1.1.10 tcp"}, "expected 4 words"),
        ({"services": "proxy 10.1.1.10 tcp 31x"}, "ports must be numbers"),
        ({"services": "pass 10.1.1.10 tcp 80"}, "not a pf keyword"),
        ({"ext_if": "em0;pass"}, "interface name"),
        ({"suite": "legacy-3des-sha1-modp1024"}, "legacy switch"),
        ({"admin_hosts": "10.1.1.300"}, "not an IPv4 address"),
    ],
)
def test_bad_profile_input_is_shown_and_nothing_changes(admin: Any, changes: dict[str, str], message: str) -> None:
    response = _client(admin).post("/bundles/profile/", _profile_form(**changes))

    assert response.status_code == 200
    assert message in response.content.decode()
    assert SiteProfile.objects.get(pk=1).generation == 1


def test_the_legacy_suite_puts_a_warning_on_every_page(admin: Any, owner: Any) -> None:
    _client(admin).post("/bundles/profile/", _profile_form(legacy_allowed="on", suite="legacy-3des-sha1-modp1024"))

    assert 'id="legacy-suite"' in _client(owner).get("/peers/").content.decode()


# --- refusals: one authorization in the service, the page says why (or 404 for a peer not seen) ---


def test_a_refused_download_says_why_and_leads_back_to_the_bundle(client_peer: Peer, admin: Any) -> None:
    render(client_peer)

    response = _client(admin).post(f"/bundles/peer/{client_peer.pk}/download/")

    html = response.content.decode()
    assert response.status_code == 403
    assert 'id="bundle-error">you may not download this bundle<' in html
    assert "Back to the bundle of client.example.com" in html
    assert not BundleDownload.objects.exists()


def test_a_refused_link_says_why_and_leads_back_to_the_bundle(client_peer: Peer, auditor: Any) -> None:
    render(client_peer)

    response = _client(auditor).post(f"/bundles/peer/{client_peer.pk}/link/")

    assert response.status_code == 403
    assert "Back to the bundle of client.example.com" in response.content.decode()
    assert not DownloadLink.objects.exists()


@pytest.mark.parametrize("action", ["download", "link"])
def test_another_users_peer_is_not_found_and_not_named(client_peer: Peer, other_user: Any, action: str) -> None:
    render(client_peer)

    response = _client(other_user).post(f"/bundles/peer/{client_peer.pk}/{action}/")

    assert response.status_code == 404
    assert "client.example.com" not in response.content.decode()
    assert 'id="bundle-error"' not in response.content.decode()  # the site's 404 page
    assert not BundleDownload.objects.exists()
    assert not DownloadLink.objects.exists()


@pytest.mark.parametrize("action", ["download", "link"])
def test_a_bundle_not_made_yet_is_a_409_page_that_leads_back(client_peer: Peer, owner: Any, action: str) -> None:
    response = _client(owner).post(f"/bundles/peer/{client_peer.pk}/{action}/")

    html = response.content.decode()
    assert response.status_code == 409
    assert "the bundle is not ready yet" in html
    assert "Back to the bundle of client.example.com" in html


def test_a_used_link_is_a_410_page_that_leads_to_my_peers(client_peer: Peer, owner: Any) -> None:
    render(client_peer)
    token, _ = services.link_create(peer_id=client_peer.pk, user=owner)
    services.link_redeem(token=token, address=None)

    response = _client(owner).post(f"/bundles/link/{token}/")

    html = response.content.decode()
    assert response.status_code == 410
    assert 'id="bundle-error">this link has already been used<' in html
    assert "Back to my peers" in html
    assert response["Referrer-Policy"] == "same-origin"
