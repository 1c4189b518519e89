"""Usability in a real browser (issue 10): the passphrase page (copy, reload), styled refusals (CSRF,
405), the TOTP throttle's message, and the peer page's Renew card appearing without a reload."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import Portal, watch_csp
from tests.browser.test_enrollment_flow import (
    ANY_FQDN_CSR,
    ISSUE_TIMEOUT,
    assert_not_reloaded,
    open_approval,
    register,
    sign_in,
    sign_in_admin,
    totp_code,
    watch_for_navigation,
)

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def carol(browser: Any, portal: Portal) -> Iterator[Any]:
    """carol, a CA admin, signed in with password and TOTP once for the module (a code is good once per step)."""
    violations: list[str] = []
    context = browser.new_context(base_url=portal.url, viewport={"width": 1280, "height": 900})
    context.set_default_timeout(10_000)
    page = context.new_page()
    watch_csp(page, violations)
    sign_in_admin(page, portal, "carol")
    yield page
    context.close()
    assert violations == [], "Content-Security-Policy violations reported by Chromium"


def test_the_passphrase_is_copied_and_a_reload_leads_to_the_peer(portal: Portal, new_page: Callable[[], Any]) -> None:
    alice = new_page()
    alice.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=portal.url)
    sign_in(alice, "alice")
    alice.goto("/peers/new/")
    alice.fill("#id_fqdn", "portal-key.example.com")
    alice.check("input[name=key_source][value=portal]")
    alice.get_by_role("button", name="Register").click()

    expect(alice.get_by_role("heading", name="Save this passphrase now")).to_be_visible()
    passphrase = alice.locator("#passphrase").inner_text().strip()
    assert len(passphrase) >= 24
    expect(alice.get_by_role("button", name="Copy the passphrase")).to_be_visible()  # hidden until the script runs
    alice.get_by_role("button", name="Copy the passphrase").click()
    copy = alice.locator("#copy-passphrase")
    expect(copy).to_have_text("Copied")
    expect(alice.locator("#copy-state")).to_contain_text("on your clipboard")
    assert alice.evaluate("navigator.clipboard.readText()") == passphrase
    expect(alice.get_by_role("link", name=re.compile("follow my request"))).to_have_attribute(
        "href", re.compile(r"^/peers/\d+/$")
    )

    alice.reload()  # the browser sends the registration again

    expect(alice).to_have_url(re.compile(r"/peers/\d+/$"))
    expect(alice.get_by_role("heading", name="portal-key.example.com")).to_be_visible()
    notice = alice.locator("main > .banner")
    expect(notice).to_contain_text("your browser sent the same form again")
    expect(notice).to_contain_text("shown once")
    expect(alice.locator("main")).not_to_contain_text("is already registered")
    assert passphrase not in alice.content()
    count = "from enrollment.models import Peer; print(Peer.objects.filter(fqdn='portal-key.example.com').count())"
    assert portal.shell(count).splitlines()[-1] == "1"


def test_a_form_refused_by_the_csrf_check_gets_a_page_that_says_what_to_do(
    portal: Portal, new_page: Callable[[], Any]
) -> None:
    alice = new_page()
    sign_in(alice, "alice")
    alice.goto("/peers/new/")
    alice.fill("#id_fqdn", "stale-form.example.com")
    alice.fill("#id_csr", ANY_FQDN_CSR)
    # As if the page had been open across a sign-out and sign-in: the form's token is no longer good.
    alice.evaluate("document.querySelector('main form input[name=csrfmiddlewaretoken]').value = 'x'.repeat(64)")
    alice.get_by_role("button", name="Register").click()

    expect(alice.get_by_role("heading", name="The form was not sent")).to_be_visible()
    expect(alice.locator("main")).to_contain_text("Nothing was changed")
    expect(alice.locator(".topbar")).to_contain_text("alice")  # the site's page, with its menu
    alice.get_by_role("link", name="Back", exact=True).click()
    expect(alice).to_have_url(re.compile(r"/peers/new/$"))
    expect(alice.get_by_role("heading", name="Register a peer")).to_be_visible()


def test_opening_the_verify_address_again_gets_a_page_with_the_way_back(portal: Portal, carol: Any) -> None:
    carol.goto("/audit/log/")
    carol.get_by_role("button", name="Verify the chain").click()
    expect(carol.locator("#verify-result")).to_contain_text("the chain is intact")
    expect(carol).to_have_url(re.compile(r"/audit/log/verify/"))

    response = carol.goto(carol.url)  # Enter in the address bar, the history, a bookmark: a GET

    assert response is not None
    assert response.status == 405
    expect(carol.get_by_role("heading", name="This address is not a page to open")).to_be_visible()
    expect(carol.locator("#method-not-allowed")).to_contain_text("It takes POST only")
    carol.get_by_role("link", name="Back", exact=True).click()
    expect(carol).to_have_url(re.compile(r"/audit/log/$"))
    expect(carol.get_by_role("button", name="Verify the chain")).to_be_visible()


def test_a_code_the_throttle_refuses_says_so(portal: Portal, browser: Any, new_page: Callable[[], Any]) -> None:
    first = new_page()
    sign_in_admin(first, portal, "dave")  # pairs his authenticator
    dave = new_page()  # another browser: password, then the code
    sign_in(dave, "dave")
    expect(dave).to_have_url(re.compile(r"/otp/verify/"))
    right = totp_code(portal.otp_secrets["dave"])
    wrong = f"{(int(right) + 1) % 1_000_000:06d}"

    dave.fill("#id_token", wrong)
    dave.get_by_role("button", name="Verify").click()
    expect(dave.locator(".field-error")).to_contain_text("That code is not valid")
    # Each failure doubles the wait before the next code is looked at (1, 2, 4, 8, 16 s): keep
    # trying at once, as a person typing quickly would, until the throttle answers after at least
    # five checked failures. Then the wait (16 s or more) is far longer than one request takes even
    # on a loaded machine, so the right code that follows meets the throttle, not the check.
    checked = 1
    for _ in range(20):
        dave.fill("#id_token", wrong)
        dave.get_by_role("button", name="Verify").click()
        dave.wait_for_load_state()
        if "Too many wrong codes" not in dave.locator(".field-error").inner_text():
            checked += 1
        elif checked >= 5:
            break
    dave.fill("#id_token", totp_code(portal.otp_secrets["dave"]))
    dave.get_by_role("button", name="Verify").click()

    error = dave.locator(".field-error")
    expect(error).to_contain_text("Too many wrong codes in a row, so this one was not checked")
    expect(error).to_contain_text(re.compile(r"Wait \d+ seconds?"))
    expect(error).not_to_contain_text("not valid")
    expect(dave).to_have_url(re.compile(r"/otp/verify/"))


def test_the_renew_card_appears_when_the_certificate_is_issued(
    portal: Portal, new_page: Callable[[], Any], carol: Any
) -> None:
    alice = new_page()
    sign_in(alice, "alice")
    register(alice, "renew-me.example.com", ANY_FQDN_CSR)
    expect(alice.locator("#status-badge")).to_have_text("pending")
    live = alice.locator("#live-status")
    expect(live).to_have_attribute("aria-live", "polite")
    expect(live).to_have_attribute("role", "status")
    expect(alice.locator("#renew")).to_have_count(0)
    navigations = watch_for_navigation(alice)

    open_approval(carol, "renew-me.example.com")
    carol.get_by_role("button", name="Approve and sign").click()
    expect(carol.locator(".banner.success")).to_contain_text("Approved renew-me.example.com")

    expect(alice.locator("#status-badge")).to_have_text("issued", timeout=ISSUE_TIMEOUT)
    renew = alice.locator("#renew")
    expect(renew).to_be_visible(timeout=10_000)
    expect(renew.get_by_role("link", name="Renew this certificate…")).to_have_attribute(
        "href", re.compile(r"^/peers/\d+/renew/$")
    )
    assert alice.locator("#renew").count() == 1
    assert_not_reloaded(alice, navigations)
