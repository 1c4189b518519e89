"""Revocation and the auditor pages in a real browser against a real server (gunicorn + a signing worker).

alice's two roaming clients are registered on the pages, approved by carol and signed by the live
worker. alice revokes one on its confirmation page (refused without the tick, done with it); the
worker publishes a CRL that lists it at /crl.pem and on the CA page. Then erin, an auditor, finds it
on the dashboard, in the inventory and its CSV export, reads its chain of custody, verifies the audit
log, and may neither see the Revoke link nor open the revocation page.
"""

from __future__ import annotations

import csv
import io
import re
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from playwright.sync_api import expect

from tests.browser.conftest import PASSWORD, Portal
from tests.browser.test_bundles import approve, peer_id_of, user_page  # noqa: F401 (user_page: a fixture)
from tests.browser.test_enrollment_flow import (  # the enrollment flow's helpers and its admin fixture
    ANY_FQDN_CSR,
    CLIENT_CSR,
    ISSUE_TIMEOUT,
    admin_page,  # noqa: F401 (a fixture: pytest finds it in this module's namespace)
    register,
    sign_in,
)

pytestmark = pytest.mark.browser

REVOKED = "client.example.com"  # alice's client that she revokes (CLIENT_CSR: CN=client.example.com)
KEPT = "laptop.example.com"  # alice's client that stays issued
ADMIN = "carol"
AUDITOR = "erin"
COMMENT = "laptop stolen at the airport"
CRL_TIMEOUT = 20.0  # seconds from the revocation to a published CRL that lists it

AUDITOR_SCRIPT = f"""
from django.contrib.auth.models import Group, User
user = User.objects.create_user({AUDITOR!r}, {AUDITOR + "@example.org"!r}, {PASSWORD!r})
user.groups.add(Group.objects.get(name="auditor"))
"""


@dataclass(frozen=True)
class Issued:
    peer_id: int
    serial: str  # lower-case hex, as the peer page shows it


# --- helpers ---------------------------------------------------------------------------------


def revoked_at(portal: Portal, serial: str) -> str:
    """The certificate's revoked_at as the database has it ("None" while it is not revoked)."""
    code = "from authority.models import Certificate as C; print(C.objects.get(serial={!r}).revoked_at)"
    return portal.shell(code.format(serial)).splitlines()[-1]


def serial_on(page: Any) -> str:
    """The serial in the Details card of a peer page."""
    serial = page.locator("#details dt:text-is('Serial') + dd code").inner_text().strip()
    assert re.fullmatch(r"[0-9a-f]+", serial), serial
    return serial


def fetch_crl(portal: Portal) -> tuple[x509.CertificateRevocationList, str]:
    """GET /crl.pem with no session (it is public); the CRL and its X-CRL-Number header."""
    with urllib.request.urlopen(f"{portal.url}/crl.pem", timeout=5) as response:  # noqa: S310 (loopback)
        return x509.load_pem_x509_crl(response.read()), response.headers["X-CRL-Number"]


def wait_for_crl_listing(portal: Portal, serial: str, *, timeout: float = CRL_TIMEOUT) -> tuple[Any, str]:
    """Poll /crl.pem until the worker has published a CRL that lists ``serial``."""
    deadline = time.monotonic() + timeout
    seen = "nothing"
    while True:
        try:
            crl, number = fetch_crl(portal)
        except OSError as exc:  # 404 until a first CRL exists
            seen = str(exc)
        else:
            if crl.get_revoked_certificate_by_serial_number(int(serial, 16)) is not None:
                return crl, number
            seen = f"CRL #{number} without it"
        if time.monotonic() > deadline:
            raise AssertionError(f"no CRL listed {serial} within {timeout:.0f} s (last: {seen})")
        time.sleep(0.3)


def issued(alice: Any, peer_id: int) -> Issued:
    """Wait on the peer page until the worker has signed; the serial from its Details card."""
    alice.goto(f"/peers/{peer_id}/")
    expect(alice.locator("#status-badge")).to_have_text("issued", timeout=ISSUE_TIMEOUT)
    alice.reload()  # the Details card shows the serial once issued
    return Issued(peer_id, serial_on(alice))


def revoke_through_the_page(alice: Any, peer: Issued) -> None:
    alice.goto(f"/peers/{peer.peer_id}/")
    alice.locator("#revoke-link").click()
    expect(alice).to_have_url(re.compile(rf"/peers/{peer.peer_id}/revoke/$"))
    alice.check("input[name=reason][value=keyCompromise]")
    alice.fill("#id_comment", COMMENT)
    alice.check("input[name=confirm]")
    alice.locator("#confirm-revoke").click()
    expect(alice).to_have_url(re.compile(rf"/peers/{peer.peer_id}/$"))


# --- the site: alice's two clients, through the pages, signed by the live worker --------------


@pytest.fixture(scope="module")
def peers(
    portal: Portal,
    user_page: Callable[[str], Any],  # noqa: F811 (the imported fixture)
    admin_page: Callable[[str], Any],  # noqa: F811
) -> dict[str, Issued]:
    portal.shell(AUDITOR_SCRIPT)
    alice, carol = user_page("alice"), admin_page(ADMIN)
    ids: dict[str, int] = {}
    for fqdn, csr in ((REVOKED, CLIENT_CSR), (KEPT, ANY_FQDN_CSR)):
        register(alice, fqdn, csr)
        expect(alice).to_have_url(re.compile(r"/peers/\d+/$"))
        ids[fqdn] = peer_id_of(alice)
    for fqdn in ids:  # both approved before waiting: the worker signs one while carol approves the other
        approve(carol, fqdn)
    return {fqdn: issued(alice, peer_id) for fqdn, peer_id in ids.items()}


@pytest.fixture
def revoked(portal: Portal, peers: dict[str, Issued], user_page: Callable[[str], Any]) -> Issued:  # noqa: F811
    """alice's revoked client, listed on the published CRL (revoked here if its own test did not run)."""
    peer = peers[REVOKED]
    alice = user_page("alice")
    alice.goto(f"/peers/{peer.peer_id}/")
    if alice.locator("#revoke-link").count():
        revoke_through_the_page(alice, peer)
    wait_for_crl_listing(portal, peer.serial)
    return peer


# --- tests -----------------------------------------------------------------------------------


def test_the_owner_revokes_her_certificate_and_the_crl_lists_it(
    portal: Portal,
    peers: dict[str, Issued],
    user_page: Callable[[str], Any],  # noqa: F811
    admin_page: Callable[[str], Any],  # noqa: F811
    tmp_path: Path,
) -> None:
    peer = peers[REVOKED]
    alice = user_page("alice")
    alice.goto(f"/peers/{peer.peer_id}/")
    expect(alice.locator("#status-badge")).to_have_text("issued")
    expect(alice.locator("#revoked-note")).to_have_count(0)
    alice.get_by_role("link", name="Revoke this certificate…").click()
    expect(alice).to_have_url(re.compile(rf"/peers/{peer.peer_id}/revoke/$"))
    expect(alice.get_by_role("heading", name=f"Revoke {REVOKED}")).to_be_visible()
    expect(alice.locator("main")).to_contain_text(peer.serial)
    # An owner gets the owner's reasons only; key compromise is preselected.
    offered = alice.locator("input[name=reason]")
    assert sorted(offered.evaluate_all("inputs => inputs.map(i => i.value)")) == [
        "affiliationChanged",
        "cessationOfOperation",
        "keyCompromise",
        "unspecified",
    ]
    expect(alice.locator("input[name=reason][value=keyCompromise]")).to_be_checked()
    expect(alice.locator("input[name=confirm]")).not_to_be_checked()

    # Without the tick: the page says so, and nothing is revoked.
    alice.check("input[name=reason][value=cessationOfOperation]")
    alice.fill("#id_comment", COMMENT)
    alice.get_by_role("button", name="Revoke the certificate").click()
    expect(alice).to_have_url(re.compile(rf"/peers/{peer.peer_id}/revoke/$"))
    confirm_field = alice.locator(".field.has-error", has=alice.locator("input[name=confirm]"))
    expect(confirm_field.locator(".field-error")).to_have_text("This field is required.")
    expect(alice.locator("input[name=reason][value=cessationOfOperation]")).to_be_checked()  # kept
    expect(alice.locator("#id_comment")).to_have_value(COMMENT)
    assert revoked_at(portal, peer.serial) == "None"
    alice.screenshot(path=str(tmp_path / "revoke-unconfirmed.png"), full_page=True)

    # With it: revoked, back on the peer page.
    alice.check("input[name=reason][value=keyCompromise]")
    alice.check("input[name=confirm]")
    alice.locator("#confirm-revoke").click()
    expect(alice).to_have_url(re.compile(rf"/peers/{peer.peer_id}/$"))
    expect(alice.locator(".banner.success")).to_contain_text(f"{REVOKED} is revoked. A new CRL is being published.")
    expect(alice.locator("#status-badge")).to_have_text("revoked")
    expect(alice.locator("#revoked-note")).to_contain_text("key compromise")
    expect(alice.locator("#revoked-note")).to_contain_text("alice")
    expect(alice.locator("#revoke-link")).to_have_count(0)
    expect(alice.locator("#download")).to_be_hidden()
    expect(alice.locator("#next-step")).to_contain_text("This certificate is revoked")
    alice.screenshot(path=str(tmp_path / "revoked.png"), full_page=True)
    assert revoked_at(portal, peer.serial) != "None"

    # The worker publishes a CRL that lists it, signed by the CA, with the reason.
    crl, number = wait_for_crl_listing(portal, peer.serial)
    with urllib.request.urlopen(f"{portal.url}/ca.pem", timeout=5) as response:  # noqa: S310 (loopback)
        ca = x509.load_pem_x509_certificate(response.read())
    assert crl.issuer == ca.subject
    assert crl.is_signature_valid(ca.public_key())
    entry = crl.get_revoked_certificate_by_serial_number(int(peer.serial, 16))
    assert entry is not None
    assert entry.extensions.get_extension_for_class(x509.CRLReason).value.reason == x509.ReasonFlags.key_compromise
    assert crl.get_revoked_certificate_by_serial_number(int(peers[KEPT].serial, 16)) is None, "only the revoked one"
    # The same CRL through the browser's own request context (public: no session needed either way).
    response = alice.request.get("/crl.pem")
    assert response.status == 200
    assert x509.load_pem_x509_crl(response.body()).get_revoked_certificate_by_serial_number(int(peer.serial, 16))

    # The CA page (CA admins) shows that CRL.
    carol = admin_page(ADMIN)
    carol.goto("/ca/")
    card = carol.locator("#crl")
    expect(card.get_by_role("heading", name="Certificate revocation list")).to_be_visible()
    expect(card.locator("dt:text-is('Number') + dd")).to_have_text(number)
    expect(card.locator("dt:text-is('Revoked certificates listed') + dd")).to_have_text("1")


def test_an_auditor_finds_the_revocation_and_may_not_revoke(
    portal: Portal, peers: dict[str, Issued], revoked: Issued, new_page: Callable[[], Any], tmp_path: Path
) -> None:
    erin = new_page()
    sign_in(erin, AUDITOR)  # auditors sign in with a password alone: no TOTP
    expect(erin.get_by_role("heading", name="Overview")).to_be_visible()
    expect(erin.locator(".who .role")).to_have_text("auditor")

    # The dashboard: counts and inline SVG charts.
    erin.get_by_role("navigation", name="main").get_by_role("link", name="Audit").click()
    expect(erin).to_have_url(re.compile(r"/audit/$"))
    expect(erin.get_by_role("heading", name="Audit", exact=True)).to_be_visible()
    expect(erin.locator("#count-issued")).to_have_text("2")
    expect(erin.locator("#count-revoked")).to_have_text("1")
    expect(erin.locator("#count-valid")).to_have_text("1")
    assert erin.locator("main svg").count() >= 1
    expect(erin.locator("#chart-issued svg")).to_be_visible()
    expect(erin.locator("#chart-issued figcaption")).to_contain_text("2 in all")
    erin.screenshot(path=str(tmp_path / "dashboard.png"), full_page=True)

    # The inventory: search the FQDN, only revoked ones.
    erin.get_by_role("navigation", name="audit").get_by_role("link", name="Certificates").click()
    expect(erin.get_by_role("heading", name="Certificate inventory")).to_be_visible()
    erin.fill("#id_q", REVOKED)
    erin.select_option("#id_status", "revoked")
    erin.get_by_role("button", name="Filter").click()
    expect(erin).to_have_url(re.compile(r"[?&]status=revoked(&|$)"))
    expect(erin.locator("#summary")).to_have_text("Showing 1–1 of 1 certificate.")
    row = erin.locator(f"#inventory tbody tr[data-serial='{revoked.serial}']")
    expect(row).to_have_count(1)
    expect(erin.locator("#inventory tbody tr")).to_have_count(1)
    expect(row).to_contain_text(REVOKED)
    expect(row.locator(".status")).to_have_text("revoked")
    expect(row).to_contain_text("keyCompromise")
    # The kept certificate is valid, so a revoked-only search for it finds nothing.
    erin.fill("#id_q", KEPT)
    erin.get_by_role("button", name="Filter").click()
    expect(erin.locator("#summary")).to_have_text("No certificate matches.")
    erin.go_back()
    expect(row).to_have_count(1)

    # The CSV export of that search.
    with erin.expect_download() as info:
        erin.locator("#export-csv").click()
    assert re.fullmatch(r"certificates-\d{8}T\d{6}Z\.csv", info.value.suggested_filename)
    path = info.value.path()
    assert path is not None
    rows = list(csv.DictReader(io.StringIO(Path(path).read_text(encoding="utf-8"))))
    assert [(r["fqdn"], r["serial"], r["status"], r["owner"]) for r in rows] == [
        (REVOKED, revoked.serial, "revoked", "alice")
    ]

    # The certificate's page: its chain of custody, oldest first.
    row.get_by_role("link", name=REVOKED).click()
    expect(erin).to_have_url(re.compile(rf"/audit/certificates/{revoked.serial}/$"))
    expect(erin.locator("#status")).to_have_text("revoked")
    expect(erin.locator("#serial")).to_have_text(revoked.serial)
    banner = erin.locator("#revoked")
    expect(banner).to_contain_text("by alice: key compromise")
    expect(banner).to_contain_text(re.compile(r"First listed on CRL #\d+"))
    expect(erin.locator("#facts")).to_contain_text(COMMENT)
    timeline = erin.locator("#timeline")
    # Approving makes the certificate request, so "approved" comes just before "requested".
    facts = ["registered", "approved", "requested", "issued", "revoked", "crl"]
    step = {kind: timeline.locator(f"li[data-kind={kind}]") for kind in facts}
    for kind, entry in step.items():
        expect(entry, f"timeline step {kind}").to_have_count(1)
    expect(step["registered"].locator(".tl-what")).to_have_text(f"client peer {REVOKED} registered for alice")
    expect(step["requested"].locator(".tl-what")).to_have_text("certificate requested")
    expect(step["approved"].locator(".tl-what")).to_have_text(f"approved by {ADMIN}")
    expect(step["approved"].locator(".tl-actor")).to_have_text(ADMIN)
    expect(step["issued"].locator(".tl-what")).to_have_text(f"issued, serial {revoked.serial}")
    expect(step["revoked"].locator(".tl-what")).to_have_text(
        "revoked: key compromise (the private key was lost or stolen)"
    )
    expect(step["revoked"].locator(".tl-actor")).to_have_text("alice")
    expect(step["revoked"].locator(".tl-detail")).to_have_text(COMMENT)
    expect(step["crl"].locator(".tl-what")).to_have_text(re.compile(r"^first listed on CRL #\d+$"))
    expect(step["crl"].locator(".tl-actor")).to_have_text("signer")
    # Every step is backed by its audit event, and the steps come in the order they happened.
    expect(timeline.locator(".tl-missing")).to_have_count(0)
    kinds = timeline.locator("li").evaluate_all("items => items.map(i => i.dataset.kind)")
    assert [kind for kind in kinds if kind in step] == facts, kinds
    erin.screenshot(path=str(tmp_path / "certificate.png"), full_page=True)

    # The audit log: verify the chain.
    erin.get_by_role("navigation", name="audit").get_by_role("link", name="Audit log").click()
    expect(erin.get_by_role("heading", name="Audit log")).to_be_visible()
    expect(erin.locator("#events tbody tr").first).to_be_visible()
    erin.locator("#verify-button").click()
    expect(erin.locator("#verify-result")).to_have_class(re.compile(r"\bsuccess\b"))
    expect(erin.locator("#verify-result")).to_have_text(re.compile(r"^OK \d+ events: the chain is intact\.$"))
    verified = re.search(r"OK (\d+) events", erin.locator("#verify-result").inner_text())
    assert verified is not None
    assert int(verified.group(1)) >= 9  # 2 x (registered, requested, approved, issued), revoked, the CRL
    token = erin.locator("#verify input[name=csrfmiddlewaretoken]").input_value()

    # Auditors review; they do not revoke: no link, and the revocation page is refused.
    kept = peers[KEPT]
    erin.goto(f"/peers/{kept.peer_id}/")
    expect(erin.locator("#status-badge")).to_have_text("issued")  # where alice or an admin sees the link
    expect(erin.locator("#details")).to_contain_text(kept.serial)
    expect(erin.locator("#revoke-link")).to_have_count(0)
    erin.goto(f"/peers/{revoked.peer_id}/")
    expect(erin.locator("#revoked-note")).to_contain_text("key compromise")
    expect(erin.locator("#revoke-link")).to_have_count(0)
    for peer in (kept, revoked):
        response = erin.goto(f"/peers/{peer.peer_id}/revoke/")
        assert response is not None
        assert response.status == 403, f"/peers/{peer.peer_id}/revoke/: {response.status}"
        expect(erin.locator("main")).to_contain_text("You are not allowed to see this page.")
    # A POST with a good CSRF token (from the audit log's form) is refused by the view too.
    response = erin.request.post(
        f"/peers/{kept.peer_id}/revoke/",
        form={"csrfmiddlewaretoken": token, "reason": "keyCompromise", "confirm": "on"},
        headers={"Referer": f"{portal.url}/peers/{kept.peer_id}/revoke/"},
    )
    assert response.status == 403
    assert "You are not allowed to see this page." in response.text(), response.text()[:300]
    assert revoked_at(portal, kept.serial) == "None"
