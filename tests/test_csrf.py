"""CSRF (docs/security.md T26): every state-changing URL refuses a POST without the token, and changes nothing.

The clients here enforce CSRF checks as a browser's requests would be checked. Each case posts
what a forged cross-site form would post (everything but the token) from a signed-in session,
expects 403, and compares the state before and after. A sweep over the whole URLconf then checks
that no URL at all takes a token-less POST from a signed-in session.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable
from typing import Any

import pytest
from django.conf import settings
from django.contrib.sessions.models import Session
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver
from django_otp import DEVICE_ID_SESSION_KEY
from django_otp.oath import totp
from django_otp.plugins.otp_totp.models import TOTPDevice

from authority.models import AuditEvent, CertificateAuthority, CertificateRequest
from enrollment.models import Peer, SitePolicy
from enrollment.services import peer_register
from tests.conftest import fixture_bytes, login

pytestmark = pytest.mark.django_db

PASSWORD = "correct horse battery"


def _csrf_client(user: Any | None = None) -> Client:
    client = Client(enforce_csrf_checks=True)
    if user is not None:
        login(client, user)
    return client


def _pending(owner: Any, fqdn: str = "client.example.com") -> Peer:
    csr = "client-rsa2048.csr" if fqdn == "client.example.com" else "client-nocn.csr"
    return peer_register(
        owner=owner, fqdn=fqdn, kind="client", networks=[], address=None, csr_pem=fixture_bytes(csr).decode(),
        actor=owner,
    )  # fmt: skip


def _world() -> tuple[Any, ...]:
    return (
        list(Peer.objects.order_by("pk").values_list("pk", "fqdn", "decision", "decision_reason")),
        CertificateRequest.objects.count(),
        list(SitePolicy.objects.values_list("allowed_domains", "default_validity_days", "allow_self_approval")),
        list(AuditEvent.objects.values_list("seq", "action")),
        list(TOTPDevice.objects.values_list("pk", "confirmed")),
    )


def _refused(client: Client, url: str, data: dict[str, Any], still: Callable[[], None] | None = None) -> None:
    before = _world()
    sessions = set(Session.objects.values_list("session_key", flat=True))

    response = client.post(url, data)

    assert response.status_code == 403, url
    assert "CSRF verification failed" in response.content.decode()
    assert _world() == before
    assert set(Session.objects.values_list("session_key", flat=True)) == sessions
    if still is not None:
        still()


# --- the state-changing pages ------------------------------------------------------------------------


def test_approve_needs_the_token(ca: CertificateAuthority, owner: Any, admin: Any) -> None:
    peer = _pending(owner)

    _refused(_csrf_client(admin), f"/peers/approvals/{peer.pk}/approve/", {})


def test_reject_needs_the_token(ca: CertificateAuthority, owner: Any, admin: Any) -> None:
    peer = _pending(owner)

    _refused(_csrf_client(admin), f"/peers/approvals/{peer.pk}/reject/", {"reason": "forged"})


def test_bulk_approve_needs_the_token(ca: CertificateAuthority, owner: Any, admin: Any) -> None:
    peers = [_pending(owner), _pending(owner, "two.example.com")]

    _refused(_csrf_client(admin), "/peers/approvals/bulk-approve/", {"peer": [str(p.pk) for p in peers]})


def test_policy_needs_the_token(admin: Any) -> None:
    _refused(
        _csrf_client(admin),
        "/peers/policy/",
        {"allowed_domains": "evil.example", "default_validity_days": "825", "allow_self_approval": "on"},
    )


def test_register_needs_the_token(owner: Any) -> None:
    data = {"fqdn": "client.example.com", "kind": "client", "key_source": "portal"}

    _refused(_csrf_client(owner), "/peers/new/", data)

    assert not Peer.objects.exists()


def test_logout_needs_the_token(owner: Any) -> None:
    client = _csrf_client(owner)

    _refused(client, "/logout/", {})

    assert client.get("/peers/").status_code == 200  # still signed in


def test_login_needs_the_token(owner: Any) -> None:
    client = _csrf_client()

    _refused(client, "/login/", {"username": "alice", "password": PASSWORD})

    assert "_auth_user_id" not in client.session


def test_otp_setup_needs_the_token(admin: Any) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(admin)  # password only: two-factor not done yet
    assert client.get("/otp/setup/").status_code == 200
    device = TOTPDevice.objects.get(user=admin)
    code = f"{totp(device.bin_key, step=device.step, t0=device.t0, digits=device.digits):06d}"

    _refused(client, "/otp/setup/", {"token": code})

    device.refresh_from_db()
    assert device.confirmed is False
    assert DEVICE_ID_SESSION_KEY not in client.session


def test_otp_verify_needs_the_token(admin: Any) -> None:
    device = TOTPDevice.objects.create(user=admin, name="phone", confirmed=True)
    client = Client(enforce_csrf_checks=True)
    client.force_login(admin)
    code = f"{totp(device.bin_key, step=device.step, t0=device.t0, digits=device.digits):06d}"

    _refused(client, "/otp/verify/", {"token": code})

    assert DEVICE_ID_SESSION_KEY not in client.session
    assert client.get("/peers/approvals/").status_code == 302


def test_the_same_post_with_the_token_goes_through(ca: CertificateAuthority, owner: Any, admin: Any) -> None:
    """The control: with the token from the page, the very same request is accepted."""
    peer = _pending(owner)
    client = _csrf_client(admin)
    page = client.get(f"/peers/approvals/{peer.pk}/")
    token = page.context["csrf_token"]

    response = client.post(f"/peers/approvals/{peer.pk}/approve/", {"csrfmiddlewaretoken": str(token)})

    assert response.status_code == 302
    peer.refresh_from_db()
    assert peer.decision == Peer.Decision.APPROVED


# --- the API ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/v1/peers", {"fqdn": "api.example.com", "kind": "client"}),
        ("/api/v1/peers/{id}/approve", {}),
        ("/api/v1/peers/{id}/reject", {"reason": "forged"}),
    ],
)
def test_the_api_needs_the_token_with_a_session(
    ca: CertificateAuthority, owner: Any, admin: Any, path: str, body: dict[str, str]
) -> None:
    peer = _pending(owner)
    client = _csrf_client(admin)
    before = _world()

    response = client.post(path.format(id=peer.pk), body, content_type="application/json")

    assert response.status_code == 403
    assert "CSRF" in response.json()["errors"]["__all__"][0]
    assert _world() == before


# --- GET to the POST-only URLs ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "path", ["/peers/approvals/{id}/approve/", "/peers/approvals/{id}/reject/", "/peers/approvals/bulk-approve/",
             "/logout/"],
)  # fmt: skip
def test_post_only_urls_answer_405_to_get(ca: CertificateAuthority, owner: Any, admin: Any, path: str) -> None:
    peer = _pending(owner)
    client = _csrf_client(admin)
    before = _world()

    response = client.get(path.format(id=peer.pk), {"peer": str(peer.pk), "reason": "by GET"})

    assert response.status_code == 405
    assert "POST" in response["Allow"]
    assert _world() == before
    assert client.get("/peers/").status_code == 200  # a GET to /logout/ did not sign out


# --- the sweep -----------------------------------------------------------------------------------------


def _all_routes(resolver: URLResolver | None = None, prefix: str = "") -> list[str]:
    routes: list[str] = []
    for entry in (resolver or get_resolver()).url_patterns:
        if isinstance(entry, URLResolver):
            routes += _all_routes(entry, prefix + str(entry.pattern))
        else:
            assert isinstance(entry, URLPattern)
            routes.append(prefix + str(entry.pattern))
    return routes


# URLs exempt from CSRF by design, and why. Each still refuses the sweep's forged POST (expected status).
CSRF_EXEMPT: dict[str, tuple[int, str]] = {
    # EST (RFC 7030): HTTP Basic credentials on every request, no session, no cookies. A session is
    # no credential there (401), and a cross-site form cannot send application/pkcs10 (415).
    "/.well-known/est/simpleenroll": (401, "EST: HTTP Basic on every request, the session is ignored"),
    "/.well-known/est/simplereenroll": (401, "EST: HTTP Basic on every request, the session is ignored"),
    # The gateway's sync (GET only): its sync token on every request; a session is no credential there.
    "/api/v1/gateway/bundle": (401, "gateway sync: the sync token on every request, the session is ignored"),
}
# Routes exempt by design, whatever their path parameter (the sweep puts a peer id there).
CSRF_EXEMPT_ROUTES: dict[str, tuple[int, str]] = {
    # A one-time link: its 256-bit token is the credential and no cookie of the visitor's is used, so a
    # forged cross-site POST must already know the token, and whoever knows it may redeem it anyway.
    # The sweep's token is unknown: 404.
    "bundles/link/<str:token>/": (404, "one-time link: the token in the URL is the credential, the session is ignored"),
}


def test_no_url_takes_a_post_without_the_token_from_a_session(ca: CertificateAuthority, owner: Any, admin: Any) -> None:
    peer = _pending(owner)
    client = _csrf_client(admin)
    before = _world()

    routes = {"/" + re.sub(r"<(?:\w+:)?\w+>", str(peer.pk), route): route for route in _all_routes()}
    urls = list(routes)
    assert f"/peers/approvals/{peer.pk}/approve/" in urls
    assert set(CSRF_EXEMPT) <= set(urls), "an exemption for a URL that no longer exists"
    assert set(CSRF_EXEMPT_ROUTES) <= set(routes.values()), "an exemption for a route that no longer exists"

    accepted = {}
    for url in urls:
        # Each POST as the first one: the styled refusal page (core.pages.csrf_failure) carries the
        # menu's sign-out form and so sets a CSRF cookie, after which the API would answer a form
        # body with 415 (it parses JSON only) before its CSRF check could answer 403.
        client.cookies.pop(settings.CSRF_COOKIE_NAME, None)
        response = client.post(url, {"reason": "swept", "peer": str(peer.pk)})
        exempt = CSRF_EXEMPT.get(url) or CSRF_EXEMPT_ROUTES.get(routes[url])
        expected = exempt[0] if exempt is not None else 403
        if exempt is not None:
            # An exempt view answers with a page (its sign-out form sets the CSRF cookie): the next
            # forged POSTs start from the same cookie-less state as before it.
            client.cookies.pop("csrftoken", None)
        if response.status_code != expected:
            accepted[url] = response.status_code

    assert accepted == {}, "URLs that took a POST without a CSRF token"
    assert _world() == before


@pytest.mark.parametrize("url", sorted(url for url in CSRF_EXEMPT if url.startswith("/.well-known/est/")))
def test_a_forged_est_post_with_cached_basic_credentials_is_refused(
    ca: CertificateAuthority, owner: Any, url: str
) -> None:
    """A browser may send Basic credentials it holds with another site's form: the form's type gives it away."""
    client = _csrf_client(owner)
    basic = "Basic " + base64.b64encode(f"alice:{PASSWORD}".encode()).decode()
    before = _world()

    for form in ({"csr": "MIIB"}, {}):
        response = client.post(url, form, HTTP_AUTHORIZATION=basic)
        assert response.status_code == 415, response.content
    response = client.post(url, "MIIB", content_type="text/plain", HTTP_AUTHORIZATION=basic)
    assert response.status_code == 415

    assert _world() == before
