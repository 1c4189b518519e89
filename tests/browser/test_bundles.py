"""Bundles in a real browser against a real server (gunicorn + a Celery worker that signs and renders).

The gateway www.example.com is registered by one CA admin and approved by another, alice's roaming
client by the worker after an admin's approval; nobody calls the render service: the worker's
sweeper makes the bundles after each issuance. Then: the user previews and downloads her bundle
(a zip with the modes of docs/architecture.md and a SHA256SUMS that verifies), the gateway page asks the admins
for new files after a client is issued and stops once they took them, and a one-time link works once.
"""

from __future__ import annotations

import base64
import hashlib
import io
import re
import stat
import time
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError
from playwright.sync_api import expect

from tests.browser.conftest import PASSWORD, Portal, watch_csp
from tests.browser.test_enrollment_flow import (  # the enrollment flow's helpers and its admin fixture
    ANY_FQDN_CSR,
    CLIENT_CSR,
    CSR_DIR,
    ISSUE_TIMEOUT,
    admin_page,  # noqa: F401 (a fixture: pytest finds it in this module's namespace)
    open_approval,
    register,
    sign_in,
)

pytestmark = pytest.mark.browser

GATEWAY = "www.example.com"
GATEWAY_ADDRESS = "192.0.34.72"
GATEWAY_NETWORK = "10.1.1.0/24"
CLIENT = "client.example.com"
BUNDLE_TIMEOUT = 30.0  # seconds from issuance to a rendered bundle (the sweeper is woken at once)

SECRET, PUBLIC, EXECUTABLE = 0o600, 0o644, 0o755
CA_DER_B64 = base64.b64encode(
    x509.load_pem_x509_certificate((CSR_DIR / "ca-rsa2048.crt").read_bytes()).public_bytes(serialization.Encoding.DER)
).decode()


# --- what a downloaded zip must be (docs/architecture.md "What a peer's bundle holds") ------------------


def expected_modes(fqdn: str, *, gateway: bool) -> dict[str, int]:
    """Mode 0600 for every config and policy, 0644 for certificates, README and sums, 0755 for install.sh."""
    return {
        "README.txt": PUBLIC,
        "SHA256SUMS": PUBLIC,
        "install.sh": EXECUTABLE,
        "isakmpd/isakmpd.conf": SECRET,
        "isakmpd/isakmpd.policy": SECRET,
        "isakmpd/ca/ca.crt": PUBLIC,
        f"isakmpd/certs/{fqdn}.crt": PUBLIC,
        "iked/iked.conf": SECRET,
        "swanctl/swanctl.conf": SECRET,
        ("firewall/pf.conf" if gateway else "firewall/ipf.rules"): SECRET,
        "bin/ca-portal-refresh": EXECUTABLE,
        **({"bin/ca-portal-sync": EXECUTABLE} if gateway else {}),
    }


def check_zip(data: bytes, fqdn: str, *, gateway: bool = False) -> dict[str, str]:
    """Assert the layout, the Unix modes and SHA256SUMS of a bundle; return its files as text by path."""
    archive = zipfile.ZipFile(io.BytesIO(data))
    assert archive.testzip() is None, "a CRC in the zip is wrong"
    files: dict[str, bytes] = {}
    modes: dict[str, int] = {}
    for info in archive.infolist():
        assert info.filename.startswith(f"{fqdn}/"), f"{info.filename} is not under {fqdn}/"
        assert info.create_system == 3, f"{info.filename}: not made on Unix, so unzip ignores its mode"
        mode = info.external_attr >> 16
        inner = info.filename[len(fqdn) + 1 :]
        if info.is_dir():
            assert stat.S_ISDIR(mode), info.filename
            want = 0o700 if inner.rstrip("/").rsplit("/", 1)[-1] == "private" else 0o755
            assert stat.S_IMODE(mode) == want, f"{info.filename}: {stat.S_IMODE(mode):04o}, want {want:04o}"
            continue
        assert stat.S_ISREG(mode), f"{info.filename} is not a regular file"
        modes[inner] = stat.S_IMODE(mode)
        files[inner] = archive.read(info)
    want = expected_modes(fqdn, gateway=gateway)
    if "isakmpd/crls/ca.crl" in modes:  # only once the CA has published a CRL
        want["isakmpd/crls/ca.crl"] = PUBLIC
    assert {path: f"{m:04o}" for path, m in modes.items()} == {path: f"{m:04o}" for path, m in want.items()}

    sums = files["SHA256SUMS"].decode("ascii").splitlines()
    listed = {}
    for line in sums:
        digest, path = line.split("  ", 1)
        listed[path] = digest
    assert set(listed) == set(files) - {"SHA256SUMS"}, "SHA256SUMS must list every other file"
    for path, digest in listed.items():
        assert hashlib.sha256(files[path]).hexdigest() == digest, f"SHA256SUMS does not verify for {path}"
    return {path: content.decode("utf-8") for path, content in files.items()}


def licensee_b64(policy: str) -> str:
    """The x509-base64 licensee of a KeyNote policy, its continuation lines joined."""
    match = re.search(r'Licensees: "x509-base64:\\\n(.*?)"', policy, re.S)
    assert match, policy
    return "".join(piece.strip().rstrip("\\") for piece in match.group(1).splitlines())


# --- browser helpers -------------------------------------------------------------------------


def wait_until(page: Any, locator: str, *, timeout: float = BUNDLE_TIMEOUT) -> None:
    """Reload the page until ``locator`` is there: bundle pages do not refresh themselves."""
    deadline = time.monotonic() + timeout
    while page.locator(locator).count() == 0:
        if time.monotonic() > deadline:
            raise AssertionError(f"{locator} did not appear on {page.url} within {timeout:.0f} s")
        time.sleep(0.4)
        page.reload()


def open_bundle(page: Any, peer_id: int) -> None:
    page.goto(f"/bundles/peer/{peer_id}/")
    wait_until(page, "#bundle-summary")


def download(page: Any, fqdn: str) -> bytes:
    """Press "Download <fqdn>.zip"; on no download, say what the POST got instead (a 403 page, ...)."""
    answers: list[str] = []

    def note(response: Any) -> None:
        if response.request.method == "POST":
            answers.append(f"{response.status} {response.url}")

    page.on("response", note)
    try:
        with page.expect_download() as info:
            page.get_by_role("button", name=f"Download {fqdn}.zip").click()
    except PlaywrightTimeoutError:
        raise AssertionError(f"no download; the POST was answered: {answers or 'not at all'}") from None
    finally:
        page.remove_listener("response", note)
    assert info.value.suggested_filename == f"{fqdn}.zip"
    path = info.value.path()
    assert path is not None
    return Path(path).read_bytes()


def preview(page: Any, path: str) -> Any:
    """The <details> preview of one bundle file, opened."""
    details = page.locator("details.preview").filter(
        has=page.locator("summary code", has_text=re.compile(rf"^{re.escape(path)}$"))
    )
    expect(details).to_have_count(1)
    if details.get_attribute("open") is None:
        details.locator("summary").click()
    return details


def peer_id_of(page: Any) -> int:
    match = re.search(r"/peers/(\d+)/$", page.url)
    assert match, page.url
    return int(match.group(1))


# --- the site: a gateway and alice's client, set up through the pages ------------------------


@pytest.fixture(scope="module")
def user_page(browser: Any, portal: Portal) -> Iterator[Callable[[str], Any]]:
    """A signed-in page per roaming user, kept for the module (like ``admin_page``)."""
    pages: dict[str, Any] = {}
    violations: list[str] = []

    def get(username: str) -> Any:
        if username not in pages:
            context = browser.new_context(base_url=portal.url, viewport={"width": 1280, "height": 900})
            context.set_default_timeout(10_000)
            page = context.new_page()
            watch_csp(page, violations)
            sign_in(page, username, PASSWORD)
            expect(page.locator(".who")).to_contain_text(username)
            pages[username] = page
        return pages[username]

    yield get
    for page in pages.values():
        page.context.close()
    assert violations == [], "Content-Security-Policy violations reported by Chromium"


def approve(admin: Any, fqdn: str) -> None:
    open_approval(admin, fqdn)
    admin.get_by_role("button", name="Approve and sign").click()
    expect(admin.locator(".banner.success")).to_contain_text(f"Approved {fqdn}")


@pytest.fixture(scope="module")
def gateway(portal: Portal, admin_page: Callable[[str], Any]) -> int:  # noqa: F811 (the imported fixture)
    """carol registers www.example.com (kind server) on the register page, dave approves, the worker signs."""
    carol, dave = admin_page("carol"), admin_page("dave")
    carol.goto("/")
    carol.get_by_role("link", name="Register a peer").click()
    carol.fill("#id_fqdn", GATEWAY)
    carol.select_option("#id_kind", "server")
    carol.fill("#id_networks", GATEWAY_NETWORK)
    carol.fill("#id_address", GATEWAY_ADDRESS)
    carol.check("input[name=key_source][value=csr]")
    carol.fill("#id_csr", ANY_FQDN_CSR)
    carol.get_by_role("button", name="Register").click()
    expect(carol).to_have_url(re.compile(r"/peers/\d+/$"))
    peer_id = peer_id_of(carol)
    approve(dave, GATEWAY)
    carol.goto(f"/peers/{peer_id}/")
    expect(carol.locator("#status-badge")).to_have_text("issued", timeout=ISSUE_TIMEOUT)
    return peer_id


@pytest.fixture(scope="module")
def client(gateway: int, user_page: Callable[[str], Any], admin_page: Callable[[str], Any]) -> int:  # noqa: F811
    """alice registers client.example.com with her CSR (CN=client.example.com); carol approves it."""
    alice = user_page("alice")
    register(alice, CLIENT, CLIENT_CSR)
    expect(alice).to_have_url(re.compile(r"/peers/\d+/$"))
    peer_id = peer_id_of(alice)
    approve(admin_page("carol"), CLIENT)
    return peer_id


# --- tests -----------------------------------------------------------------------------------


def test_the_owner_previews_and_downloads_her_bundle(
    portal: Portal, client: int, user_page: Callable[[str], Any], tmp_path: Path
) -> None:
    alice = user_page("alice")
    alice.goto(f"/peers/{client}/")
    expect(alice.locator("#status-badge")).to_have_text("issued", timeout=ISSUE_TIMEOUT)
    alice.get_by_role("link", name="Open the bundle").click()
    expect(alice).to_have_url(re.compile(rf"/bundles/peer/{client}/$"))
    wait_until(alice, "#bundle-summary")  # made by the worker's sweeper a moment after issuance
    expect(alice.get_by_role("heading", name=f"Bundle for {CLIENT}")).to_be_visible()
    expect(alice.locator("#bundle-summary h2")).to_have_text("Version 1")

    conf = preview(alice, "isakmpd/isakmpd.conf")
    expect(conf.locator("pre.file")).to_be_visible()
    expect(conf.locator("pre.file")).to_contain_text("[Phase 1]")
    expect(conf.locator("pre.file")).to_contain_text(GATEWAY_ADDRESS)
    policy = preview(alice, "isakmpd/isakmpd.policy")
    expect(policy.locator("pre.file")).to_be_visible()
    expect(policy.locator("pre.file")).to_contain_text("x509-base64:")
    expect(policy.locator("pre.file")).to_contain_text(f'remote_id == "{GATEWAY}"')
    row = alice.locator("#files tr", has=alice.locator("code", has_text=f"{CLIENT}/isakmpd/isakmpd.policy"))
    expect(row).to_contain_text("0600")
    alice.screenshot(path=str(tmp_path / "bundle.png"), full_page=True)

    files = check_zip(download(alice, CLIENT), CLIENT)
    assert "[Phase 1]" in files["isakmpd/isakmpd.conf"]
    assert licensee_b64(files["isakmpd/isakmpd.policy"]) == CA_DER_B64
    assert files[f"isakmpd/certs/{CLIENT}.crt"].startswith("-----BEGIN CERTIFICATE-----")

    alice.reload()
    downloads = alice.locator("#downloads tbody tr")
    expect(downloads).to_have_count(1)
    expect(downloads.first).to_contain_text("alice")


def test_the_gateway_page_asks_for_new_files_after_a_client_is_issued(
    portal: Portal,
    gateway: int,
    client: int,
    user_page: Callable[[str], Any],
    admin_page: Callable[[str], Any],  # noqa: F811
) -> None:
    carol = admin_page("carol")
    # Settle first: alice's client is issued and rendered, and the gateway's bundle names it.
    open_bundle(carol, client)
    carol.goto("/bundles/gateway/")
    deadline = time.monotonic() + BUNDLE_TIMEOUT
    while (
        carol.locator("#stale-count").inner_text().strip() != "0"
        or carol.locator("#gateway-state a.primary").count() == 0
    ):
        assert time.monotonic() < deadline, f"bundles still waiting: {carol.locator('#stale-count').inner_text()}"
        time.sleep(0.4)
        carol.reload()
    if carol.locator("#gateway-needs-update").count():  # nobody has taken the gateway's files yet
        carol.locator("#gateway-state").get_by_role("link", name=re.compile(r"^Gateway bundle")).click()
        check_zip(download(carol, GATEWAY), GATEWAY, gateway=True)
        carol.goto("/bundles/gateway/")
    expect(carol.locator("#gateway-current")).to_be_visible()
    expect(carol.locator("#gateway-banner")).to_have_count(0)

    # A new client is issued: the gateway's policy must name it, so its files are new.
    bob = user_page("bob")
    register(bob, "bob-laptop.example.com", ANY_FQDN_CSR)
    expect(bob).to_have_url(re.compile(r"/peers/\d+/$"))
    approve(carol, "bob-laptop.example.com")
    expect(bob.locator("#status-badge")).to_have_text("issued", timeout=ISSUE_TIMEOUT)

    carol.goto("/bundles/gateway/")
    wait_until(carol, "#gateway-needs-update")
    expect(carol.locator("#gateway-needs-update")).to_contain_text("The gateway needs new files")
    expect(carol.locator("#gateway-banner")).to_contain_text("The gateway needs new files")  # on every page
    carol.locator("#gateway-state").get_by_role("link", name=re.compile(r"^Gateway bundle")).click()
    expect(carol.get_by_role("heading", name=f"Bundle for {GATEWAY}")).to_be_visible()
    policy = preview(carol, "isakmpd/isakmpd.policy")
    expect(policy).to_contain_text("changed")
    expect(policy.locator("pre.diff")).to_contain_text('remote_id == "bob-laptop.example.com"')

    files = check_zip(download(carol, GATEWAY), GATEWAY, gateway=True)
    assert "[Phase 1]" in files["isakmpd/isakmpd.conf"]
    for fqdn in (CLIENT, "bob-laptop.example.com"):
        assert f'remote_id == "{fqdn}"' in files["isakmpd/isakmpd.policy"]
    assert licensee_b64(files["isakmpd/isakmpd.policy"]) == CA_DER_B64

    carol.goto("/bundles/gateway/")
    expect(carol.locator("#gateway-current")).to_be_visible()
    expect(carol.locator("#gateway-needs-update")).to_have_count(0)
    expect(carol.locator("#gateway-banner")).to_have_count(0)


def test_a_one_time_link_downloads_once(portal: Portal, client: int, user_page: Callable[[str], Any]) -> None:
    alice = user_page("alice")
    open_bundle(alice, client)
    alice.get_by_role("button", name="Make a one-time link (10 minutes)").click()
    expect(alice.get_by_role("heading", name=f"One-time link for {CLIENT}")).to_be_visible()
    url = alice.locator("#one-time-url").input_value()
    assert re.fullmatch(rf"{re.escape(portal.url)}/bundles/link/[A-Za-z0-9_-]{{43}}/", url), url

    first = alice.goto(url)
    assert first is not None
    assert first.status == 200
    expect(alice.get_by_role("heading", name=f"Bundle for {CLIENT}")).to_be_visible()
    data = download(alice, CLIENT)
    files = check_zip(data, CLIENT)
    assert licensee_b64(files["isakmpd/isakmpd.policy"]) == CA_DER_B64

    again = alice.goto(url)
    assert again is not None
    assert again.status == 410
    expect(alice.locator("#bundle-error")).to_contain_text("already been used")
    expect(alice.get_by_role("button", name=f"Download {CLIENT}.zip")).to_have_count(0)
