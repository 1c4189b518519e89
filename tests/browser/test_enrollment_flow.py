"""The enrollment flow in a real browser against a real server (gunicorn + a signing Celery worker).

A user registers with a CSR, an admin signs in with TOTP and approves, the user's page turns to
issued without a reload; the rejection path; self-approval refused; the lockout; bad input.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django_otp.oath import TOTP
from playwright.sync_api import expect

from tests.browser.conftest import PASSWORD, Portal, watch_csp

pytestmark = pytest.mark.browser

CSR_DIR = Path(__file__).resolve().parents[1] / "fixtures" / "pki"
CLIENT_CSR = (CSR_DIR / "client-rsa2048.csr").read_text()  # CN=client.example.com
ANY_FQDN_CSR = (CSR_DIR / "client-nocn.csr").read_text()  # no CN: fits any FQDN
ISSUE_TIMEOUT = 30_000


def totp_code(secret: str) -> str:
    """RFC 6238 as authenticator apps do it: base32 key, 30 s steps, 6 digits."""
    key = base64.b32decode(secret + "=" * (-len(secret) % 8))
    return f"{TOTP(key, step=30, t0=0, digits=6).token():06d}"


def sign_in(page: Any, username: str, password: str = PASSWORD) -> None:
    page.goto("/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_load_state()


def sign_in_admin(page: Any, portal: Portal, username: str) -> None:
    """Password, then the first-time TOTP set-up: read the key off the page, answer with the code."""
    sign_in(page, username)
    expect(page).to_have_url(re.compile(r"/otp/setup/"))
    secret = page.locator("#otp-secret").inner_text().strip()
    portal.otp_secrets[username] = secret
    page.fill("#id_token", totp_code(secret))
    page.get_by_role("button", name="Confirm").click()
    expect(page.get_by_role("heading", name="Overview")).to_be_visible()
    expect(page.locator(".who .role")).to_have_text("CA admin")


@pytest.fixture(scope="module")
def admin_page(browser: Any, portal: Portal) -> Iterator[Callable[[str], Any]]:
    """A signed-in (password + TOTP) page per CA admin, kept for the module.

    A TOTP code is good once per 30 s step, so admins set up their authenticator once and keep
    their session, as a person would, instead of signing in again for each test.
    """
    pages: dict[str, Any] = {}
    violations: list[str] = []

    def get(username: str) -> Any:
        if username not in pages:
            context = browser.new_context(base_url=portal.url, viewport={"width": 1280, "height": 900})
            context.set_default_timeout(10_000)
            page = context.new_page()
            watch_csp(page, violations)
            sign_in_admin(page, portal, username)
            pages[username] = page
        return pages[username]

    yield get
    for page in pages.values():
        page.context.close()
    assert violations == [], "Content-Security-Policy violations reported by Chromium"


def register(page: Any, fqdn: str, csr: str) -> None:
    page.goto("/")
    page.get_by_role("link", name="Register a peer").click()
    page.fill("#id_fqdn", fqdn)
    page.check("input[name=key_source][value=csr]")
    page.fill("#id_csr", csr)
    page.get_by_role("button", name="Register").click()
    page.wait_for_load_state()


def watch_for_navigation(page: Any) -> list[str]:
    """Mark the document and record main-frame navigations from now on: both must show no reload."""
    page.evaluate("window.__noReloadMarker = 'still here'")
    navigations: list[str] = []
    page.on("framenavigated", lambda frame: navigations.append(frame.url) if frame == page.main_frame else None)
    return navigations


def assert_not_reloaded(page: Any, navigations: list[str]) -> None:
    assert navigations == [], f"the peer page navigated: {navigations}"
    assert page.evaluate("window.__noReloadMarker") == "still here", "the peer page was reloaded"


def open_approval(admin: Any, fqdn: str) -> None:
    admin.goto("/")
    admin.get_by_role("link", name="Approvals").click()
    admin.get_by_role("link", name=fqdn, exact=True).click()
    expect(admin.get_by_role("heading", name=f"Review {fqdn}")).to_be_visible()


def test_register_approve_with_totp_and_the_page_turns_issued_without_reload(
    portal: Portal, new_page: Callable[[], Any], admin_page: Callable[[str], Any], tmp_path: Path
) -> None:
    print(f"screenshots: {tmp_path}")
    alice = new_page()
    sign_in(alice, "alice")
    register(alice, "client.example.com", CLIENT_CSR)
    expect(alice).to_have_url(re.compile(r"/peers/\d+/$"))
    expect(alice.get_by_role("heading", name="client.example.com")).to_be_visible()
    expect(alice.locator(".banner.success")).to_contain_text("client.example.com is registered")
    expect(alice.locator("#status-badge")).to_have_text("pending")
    waiting = alice.locator("li[data-step=pending]")
    expect(waiting).to_have_text("Waiting for approval")
    expect(waiting).to_have_class("current")
    expect(alice.locator("#download")).to_be_hidden()
    navigations = watch_for_navigation(alice)

    carol = admin_page("carol")  # password, sent to /otp/setup/, TOTP code from the shown key
    open_approval(carol, "client.example.com")
    expect(carol.get_by_role("heading", name="What approval will issue")).to_be_visible()
    preview = carol.locator("section.card", has=carol.get_by_role("heading", name="What approval will issue"))
    expect(preview).to_contain_text("DNS:client.example.com")
    expect(preview).to_contain_text("alice <alice@example.org>")
    carol.get_by_role("button", name="Approve and sign").click()
    expect(carol.locator(".banner.success")).to_contain_text("Approved client.example.com")
    expect(carol).to_have_url(re.compile(r"/peers/approvals/$"))

    expect(alice.locator("#status-badge")).to_have_text("issued", timeout=ISSUE_TIMEOUT)
    expect(alice.locator("#download")).to_be_visible()
    expect(alice.locator("li[data-step=issued]")).to_have_class("done")
    # The Details card catches up by itself too: serial and expiry appear without a reload.
    expect(alice.locator("#details")).to_contain_text("Serial", timeout=10_000)
    expect(alice.locator("#details")).to_contain_text("Decided by")
    expect(alice.locator("#next-step")).to_contain_text("Your certificate is ready")
    alice.screenshot(path=str(tmp_path / "issued.png"), full_page=True)
    assert_not_reloaded(alice, navigations)

    link = alice.get_by_role("link", name="Certificate (PEM)")
    response = alice.context.request.get(link.get_attribute("href"))
    assert response.status == 200
    assert response.text().startswith("-----BEGIN CERTIFICATE-----")


def test_rejection_shows_on_the_open_page_with_the_reason(
    portal: Portal, new_page: Callable[[], Any], admin_page: Callable[[str], Any]
) -> None:
    alice = new_page()
    sign_in(alice, "alice")
    register(alice, "laptop7.example.com", ANY_FQDN_CSR)
    expect(alice.locator("#status-badge")).to_have_text("pending")
    navigations = watch_for_navigation(alice)

    dave = admin_page("dave")  # the second admin sets up his authenticator the same way
    open_approval(dave, "laptop7.example.com")
    reason = "laptop7 was retired in March; register the replacement instead"
    dave.fill("#id_reason", reason)
    dave.get_by_role("button", name="Reject").click()
    expect(dave.locator(".banner.success")).to_contain_text("Rejected laptop7.example.com")

    expect(alice.locator("#status-badge")).to_have_text("rejected", timeout=ISSUE_TIMEOUT)
    expect(alice.locator("#failure")).to_have_text(f"Reason: {reason}")
    expect(alice.locator("#next-step")).to_contain_text("rejected this request")
    expect(alice.locator("#download")).to_be_hidden()
    assert_not_reloaded(alice, navigations)


def test_an_admin_cannot_approve_a_request_they_filed(portal: Portal, admin_page: Callable[[str], Any]) -> None:
    carol = admin_page("carol")
    register(carol, "carol-laptop.example.com", ANY_FQDN_CSR)
    expect(carol.locator("#status-badge")).to_have_text("pending")
    carol.get_by_role("link", name="Review this request as CA admin").click()
    carol.get_by_role("button", name="Approve and sign").click()
    expect(carol.locator(".banner.error")).to_contain_text("cannot approve a request you filed yourself")
    expect(carol.locator("main")).to_contain_text("pending")  # still waiting for another admin
    assert portal.shell(
        "from enrollment.models import Peer; print(Peer.objects.get(fqdn='carol-laptop.example.com').decision)"
    ).endswith("pending")


def test_five_wrong_passwords_lock_the_account_from_that_address(portal: Portal, new_page: Callable[[], Any]) -> None:
    page = new_page()
    try:
        for attempt in range(1, 6):
            sign_in(page, "alice", "not the password")
            if attempt < 5:
                expect(page.get_by_role("alert")).to_contain_text("did not match")
        # The fifth failure locks at once; from then on even the right password gets this page.
        expect(page.get_by_role("heading", name="Too many failed sign-ins")).to_be_visible()
        sign_in(page, "alice")
        expect(page.get_by_role("heading", name="Too many failed sign-ins")).to_be_visible()
        page.goto("/peers/")
        expect(page).to_have_url(re.compile(r"/login/"))  # the right password did not sign her in

        sign_in(page, "bob")  # another user from the same address is not locked out
        expect(page.get_by_role("heading", name="Overview")).to_be_visible()
        expect(page.locator(".who")).to_contain_text("bob")
    finally:
        portal.stack.manage("axes_reset_username", "alice")


def test_a_bad_fqdn_shows_the_field_error_and_creates_nothing(portal: Portal, new_page: Callable[[], Any]) -> None:
    count = "from enrollment.models import Peer; print(Peer.objects.count())"
    before = portal.shell(count)
    alice = new_page()
    sign_in(alice, "alice")
    register(alice, "Bad Name!", ANY_FQDN_CSR)
    expect(alice).to_have_url(re.compile(r"/peers/new/$"))
    field = alice.locator("#field-fqdn")
    expect(field).to_have_class(re.compile(r"\bhas-error\b"))
    expect(field.locator(".field-error")).to_contain_text("not allowed")
    expect(alice.locator("#id_fqdn")).to_have_value("Bad Name!")
    expect(alice.locator(".field-error")).to_have_count(1)
    assert portal.shell(count) == before
