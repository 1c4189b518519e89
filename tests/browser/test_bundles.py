"""Bundles in a real browser against a real server (gunicorn + a Celery worker that signs and renders).

The gateway www.example.com is registered by one CA admin and approved by another, alice's roaming
client by the worker after an admin's approval; nobody calls the render service: the worker's
sweeper makes the bundles after each issuance. Then: the user previews and downloads her bundle
(a zip with the modes of docs/architecture.md and a SHA256SUMS that verifies), the gateway page asks the admins
for new files after a client is issued and stops once they took them, a one-time link works once
without signing in (the curl line it shows, its QR code, its copy button; no token in the logs),
owners are told what changed since their download and read it on a 390 px phone, the site profile
fills the page and its waiting count goes down by itself, and a link that carries a portal-made key
leaves no copy of it in the SQLite database or its WAL.
"""

from __future__ import annotations

import base64
import hashlib
import io
import re
import shlex
import stat
import subprocess
import time
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import segno
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


# --- one-time links (issue 10, item 6) ----------------------------------------------------------


def run_curl_line(page: Any, selector: str, workdir: Path) -> Path:
    """Run the curl one-liner the page shows, as shown (no cookie, no session); return the file it wrote."""
    command = shlex.split(page.locator(selector).inner_text())
    assert command[0] == "curl", command
    workdir.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(command, cwd=workdir, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, f"{command} failed: {done.stderr}"
    written = list(workdir.iterdir())
    assert len(written) == 1, written
    return written[0]


def qr_path(svg_path_d: str) -> str:
    return re.sub(r"\s+", " ", svg_path_d).strip()


def no_page_scroll(page: Any, width: int) -> None:
    """Nothing makes the page wider than the window: wide content scrolls inside its own box."""
    page.evaluate("document.querySelectorAll('details').forEach(d => d.open = true)")
    scroll = page.evaluate("document.documentElement.scrollWidth")
    wide = page.evaluate(
        """(width) => [...document.querySelectorAll('main *')].filter((el) => {
            if (el.getBoundingClientRect().right <= width + 1) return false;
            for (let up = el.parentElement; up; up = up.parentElement) {
                if (['auto', 'scroll', 'hidden'].includes(getComputedStyle(up).overflowX)) return false;
            }
            return true;
        }).slice(0, 8).map((el) => `${el.tagName}.${el.className} ${Math.round(el.getBoundingClientRect().right)}`)""",
        width,
    )
    assert (scroll, wide) == (width, []), f"{page.url} is {scroll} px wide at {width} px: {wide}"


def test_a_one_time_link_works_once_without_signing_in(
    portal: Portal, client: int, user_page: Callable[[str], Any], browser: Any, tmp_path: Path
) -> None:
    alice = user_page("alice")
    alice.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=portal.url)
    open_bundle(alice, client)
    alice.get_by_role("button", name="Make a one-time link (10 minutes)").click()
    expect(alice.get_by_role("heading", name=f"One-time link for {CLIENT}")).to_be_visible()
    field = alice.get_by_label("One-time link")  # a labelled field
    url = field.input_value()
    token = url.rstrip("/").rsplit("/", 1)[1]
    assert re.fullmatch(rf"{re.escape(portal.url)}/bundles/link/[A-Za-z0-9_-]{{43}}/", url), url
    expect(alice.locator("#link-without-key")).to_be_visible()

    # The copy button (static/js/copy.js) puts the link on the clipboard.
    alice.get_by_role("button", name="Copy").click()
    expect(alice.locator("#copy-status")).to_contain_text("on the clipboard")
    assert alice.evaluate("navigator.clipboard.readText()") == url
    # The QR code is that link: the same modules as segno draws for it.
    expect(alice.locator("#link-qr svg")).to_be_visible()
    drawn = alice.locator("#link-qr svg path").get_attribute("d")
    expected = re.search(r' d="([^"]+)"', segno.make(url, error="m").svg_inline(scale=4))
    assert expected is not None
    assert drawn is not None
    assert qr_path(drawn) == qr_path(expected.group(1))
    alice.set_viewport_size({"width": 390, "height": 844})
    try:
        no_page_scroll(alice, 390)
    finally:
        alice.set_viewport_size({"width": 1280, "height": 900})

    # Someone without a session (another browser) opens it: a page, nothing used up yet.
    stranger = browser.new_context(base_url=portal.url, viewport={"width": 390, "height": 844})
    try:
        phone = stranger.new_page()
        violations: list[str] = []
        watch_csp(phone, violations)
        shown = phone.goto(url)
        assert shown is not None
        assert shown.status == 200
        expect(phone.get_by_role("heading", name=f"Bundle for {CLIENT}")).to_be_visible()
        no_page_scroll(phone, 390)
        assert violations == []
    finally:
        stranger.close()

    # A headless peer runs the curl line shown on the page: the zip, under its own name.
    zip_path = run_curl_line(alice, "#link-curl", tmp_path / "curl")
    assert zip_path.name == f"{CLIENT}.zip"
    files = check_zip(zip_path.read_bytes(), CLIENT)
    assert licensee_b64(files["isakmpd/isakmpd.policy"]) == CA_DER_B64

    again = alice.goto(url)
    assert again is not None
    assert again.status == 410
    expect(alice.locator("#bundle-error")).to_contain_text("already been used")
    expect(alice.get_by_role("button", name=f"Download {CLIENT}.zip")).to_have_count(0)
    reused = subprocess.run(["curl", "-fsS", "-o", "/dev/null", "-X", "POST", url], capture_output=True, timeout=30)
    assert reused.returncode != 0  # 410

    open_bundle(alice, client)
    latest = alice.locator("#downloads tbody tr").first
    expect(latest).to_contain_text("one-time link")
    expect(latest).to_contain_text("127.0.0.1")  # the redeeming address

    # No log line holds the token: gunicorn's access lines and Django's "Gone" line cut it.
    log = portal.log.read_text(errors="replace")
    assert f"/bundles/link/{token[:6]}..." in log
    assert token not in log


# --- what changed since the owner's download, on a phone (items 7 and 9) ---------------------------


def test_owners_see_what_changed_since_their_download(
    portal: Portal,
    client: int,
    user_page: Callable[[str], Any],
    admin_page: Callable[[str], Any],  # noqa: F811
) -> None:
    alice, bob, carol = user_page("alice"), user_page("bob"), admin_page("carol")
    # A first CRL, so that the next one is a change of it (a fresh CA publishes at its first revocation).
    portal.shell("from core.tasks import send_by_name; send_by_name('authority.crl_publish', 'manual')")
    open_bundle(alice, client)
    wait_until(alice, f"#files td code:text-is('{CLIENT}/isakmpd/crls/ca.crl')", timeout=60)
    download(alice, CLIENT)
    alice.goto("/peers/")
    expect(alice.locator("#bundle-news")).to_have_count(0)

    # bob's phone is issued, then lost and revoked: the signer publishes a new CRL, every bundle ships it.
    register(bob, "bob-phone.example.com", ANY_FQDN_CSR)
    expect(bob).to_have_url(re.compile(r"/peers/\d+/$"))
    phone = peer_id_of(bob)
    approve(carol, "bob-phone.example.com")
    expect(bob.locator("#status-badge")).to_have_text("issued", timeout=ISSUE_TIMEOUT)
    bob.reload()
    serial = bob.locator("#details dd code.wrap").first.inner_text().strip()
    bob.locator("#revoke-link").click()
    bob.check("input[name=reason][value=keyCompromise]")
    bob.check("input[name=confirm]")
    bob.locator("#confirm-revoke").click()
    expect(bob).to_have_url(re.compile(rf"/peers/{phone}/$"))

    alice.goto("/peers/")
    wait_until(alice, "#bundle-news", timeout=60)
    expect(alice.locator("#bundle-news")).to_contain_text(CLIENT)
    expect(alice.locator("#bundle-news")).to_contain_text("a new CRL")
    alice.goto(f"/peers/{client}/")
    expect(alice.locator("#bundle-news")).to_contain_text("a new CRL")

    # The bundle page on a 390 px phone: no page scroll, a coloured diff, the CRL change in words.
    alice.set_viewport_size({"width": 390, "height": 844})
    try:
        alice.locator("#bundle-news").get_by_role("link", name="Open the bundle").click()
        expect(alice.locator("#bundle-news-here")).to_contain_text("a new CRL")
        no_page_scroll(alice, 390)
        crl = preview(alice, "isakmpd/crls/ca.crl")
        expect(crl.locator(".crl-change")).to_contain_text("CRL number")
        expect(crl.locator(".crl-change")).to_contain_text(f"{serial} revoked")
        expect(crl.locator(".crl-change")).to_contain_text("keyCompromise")
        expect(crl.locator("pre.diff")).to_have_count(0)  # no wall of base64
        sums = preview(alice, "SHA256SUMS")
        added = sums.locator("pre.diff .diff-add").first
        expect(added).to_contain_text("isakmpd/crls/ca.crl")
        assert added.evaluate("el => getComputedStyle(el).backgroundColor") not in ("rgba(0, 0, 0, 0)", "transparent")
        removed = sums.locator("pre.diff .diff-del").first
        assert removed.evaluate("el => getComputedStyle(el).backgroundColor") != added.evaluate(
            "el => getComputedStyle(el).backgroundColor"
        )
        policy = preview(alice, "isakmpd/isakmpd.policy").locator("pre.file")
        assert policy.evaluate("el => el.scrollWidth > el.clientWidth"), "long lines scroll inside their box"
        download(alice, CLIENT)
    finally:
        alice.set_viewport_size({"width": 1280, "height": 900})
    alice.goto("/peers/")
    expect(alice.locator("#bundle-news")).to_have_count(0)


# --- the site profile (item 13) --------------------------------------------------------------------


def test_the_site_profile_fills_the_page_and_the_waiting_count_goes_down_by_itself(
    portal: Portal,
    client: int,
    admin_page: Callable[[str], Any],  # noqa: F811
) -> None:
    carol = admin_page("carol")
    carol.goto("/bundles/profile/")
    form = carol.locator("form.profile-form").bounding_box()
    main = carol.locator("main").bounding_box()
    assert form is not None
    assert main is not None
    assert form["width"] > 0.85 * main["width"], (form, main)  # not half of it
    for label in carol.locator("#suite-choices label").all():
        assert label.evaluate("el => el.scrollWidth <= el.clientWidth"), label.inner_text()  # nothing cut off
        expect(label).to_be_visible()

    carol.locator("#suite-choices label", has_text="AES-128, SHA2-256").click()  # a radio, by its words
    carol.get_by_role("button", name="Save").click()
    expect(carol.locator(".banner.success")).to_contain_text("Every bundle is being rendered again")
    waiting = carol.locator("#stale-count")
    expect(waiting).not_to_have_text("0", timeout=5_000)  # the gateway and the clients wait
    carol.evaluate("window.__noReloadMarker = 'still here'")

    expect(waiting).to_have_text("0", timeout=BUNDLE_TIMEOUT * 1000)  # polled, not reloaded
    assert carol.evaluate("window.__noReloadMarker") == "still here"
    carol.goto("/bundles/profile/")
    expect(carol.locator("#profile-stale-count")).to_have_text("0")
    expect(carol.locator("#suite-choices input[value=aes128-sha256-modp3072]")).to_be_checked()


# --- a portal-made key through a link, and the SQLite files afterwards ----------------------------


def sqlite_files(portal: Portal) -> dict[str, bytes]:
    """The raw bytes of the embedded deployment's database file and its write-ahead log."""
    database = portal.stack.var / "ca_portal.sqlite3"
    paths = (database, database.with_name(database.name + "-wal"))
    return {path.name: path.read_bytes() for path in paths if path.exists()}


def test_a_link_carries_the_key_when_ticked_and_the_sqlite_files_keep_no_copy(
    portal: Portal,
    gateway: int,
    user_page: Callable[[str], Any],
    admin_page: Callable[[str], Any],  # noqa: F811
    tmp_path: Path,
) -> None:
    alice, carol = user_page("alice"), admin_page("carol")
    alice.goto("/peers/new/")
    alice.fill("#id_fqdn", "headless.example.com")
    alice.check("input[name=key_source][value=portal]")
    alice.get_by_role("button", name="Register").click()
    passphrase = alice.locator("#passphrase").inner_text().strip()
    alice.get_by_role("link", name=re.compile("I have saved it")).click()
    peer_id = peer_id_of(alice)
    open_approval(carol, "headless.example.com")
    deadline = time.monotonic() + BUNDLE_TIMEOUT
    while carol.get_by_role("button", name="Approve and sign").is_disabled():  # the signer makes the key
        assert time.monotonic() < deadline, "the portal-made key was not made"
        time.sleep(0.5)
        carol.reload()
    carol.get_by_role("button", name="Approve and sign").click()
    expect(carol.locator(".banner.success")).to_contain_text("Approved headless.example.com")
    open_bundle(alice, peer_id)

    shown = portal.shell(
        f"from enrollment.models import PortalKey; print(PortalKey.objects.get(peer_id={peer_id}).encrypted_pem)"
    )
    stored = shown[shown.index("-----BEGIN ") :]  # after the shell's own notice
    lines = [line for line in stored.splitlines() if line and not line.startswith("-----")]
    assert stored.startswith("-----BEGIN ENCRYPTED PRIVATE KEY-----")
    assert len(lines) > 20
    before = b"".join(sqlite_files(portal).values())
    assert any(line.encode() in before for line in lines), "the scan must see the key while the portal holds it"

    alice.check("#link-with-key-box")
    alice.get_by_role("button", name="Make a one-time link (10 minutes)").click()
    expect(alice.locator("#link-with-key")).to_contain_text("carries your private key")
    zip_path = run_curl_line(alice, "#link-curl", tmp_path / "curl")
    files = check_zip_with_key(zip_path.read_bytes(), "headless.example.com")
    assert files["isakmpd/private/local.key"].strip() == stored.strip()
    assert serialization.load_pem_private_key(files["isakmpd/private/local.key"].encode(), passphrase.encode())

    # The key is gone from the row, and from the SQLite files: the WAL was checkpointed and emptied.
    after = sqlite_files(portal)
    left = {name: [n for n, line in enumerate(lines) if line.encode() in data] for name, data in after.items()}
    assert left == {key: [] for key in left}, f"lines of the destroyed key still in {left}"
    open_bundle(alice, peer_id)
    expect(alice.locator("#key-gone")).to_be_visible()


def check_zip_with_key(data: bytes, fqdn: str) -> dict[str, str]:
    archive = zipfile.ZipFile(io.BytesIO(data))
    files = {
        info.filename[len(fqdn) + 1 :]: archive.read(info).decode() for info in archive.infolist() if not info.is_dir()
    }
    sums = dict(reversed(line.split("  ", 1)) for line in files["SHA256SUMS"].splitlines())
    key = files["isakmpd/private/local.key"]
    assert hashlib.sha256(key.encode()).hexdigest() == sums["isakmpd/private/local.key"]
    return files
