"""Browser tests: Playwright driving Debian's Chromium against a real `manage.py serve` deployment.

The portal runs as in production: its own var dir (SQLite + filesystem broker), gunicorn and a
Celery worker that signs, started once per module. Each test opens fresh browser contexts.

Without /usr/bin/chromium the tests are skipped, unless CA_PORTAL_REQUIRE_BROWSER is set (CI
sets it), in which case they fail: a missing browser must not pass a CI run silently.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from devtools.stack import PYTHON, ROOT, Stack, free_port, wait_for_log, wait_healthy

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    # Without these Chromium phones home at start-up, and this closed network refuses it.
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PASSWORD = "correct horse battery staple"
HERE = Path(__file__).resolve().parent

# Users of the deployment: alice and bob are roaming users, carol and dave CA admins.
USERS_SCRIPT = f"""
from django.contrib.auth.models import Group, User
admins = Group.objects.get(name="ca-admin")
for name, admin in (("alice", False), ("bob", False), ("carol", True), ("dave", True)):
    user = User.objects.create_user(name, name + "@example.org", {PASSWORD!r})
    if admin:
        user.groups.add(admins)
"""


def browser_required() -> bool:
    return bool(os.environ.get("CA_PORTAL_REQUIRE_BROWSER"))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if CHROMIUM.exists() or browser_required():
        return
    skip = pytest.mark.skip(
        reason=f"{CHROMIUM} is missing: apt-get install chromium "
        "(set CA_PORTAL_REQUIRE_BROWSER=1 to make this a failure, as CI does)"
    )
    for item in items:
        if item.path.is_relative_to(HERE):
            item.add_marker(skip)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, Any]:
    report = yield
    portal = getattr(item, "funcargs", {}).get("portal")
    if report.failed and isinstance(portal, Portal):
        report.sections.append(("serve.log (tail)", portal.log_tail()))
    return report


@dataclass
class Portal:
    stack: Stack
    url: str
    log: Path
    process: subprocess.Popen[bytes]
    otp_secrets: dict[str, str] = field(default_factory=dict)

    def shell(self, code: str) -> str:
        return self.stack.manage("shell", "-c", code).stdout.strip()

    def log_tail(self, chars: int = 6000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""


@pytest.fixture(scope="module")
def portal(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Portal]:
    """A fresh deployment served by `manage.py serve` (gunicorn + a signing Celery worker)."""
    workdir = tmp_path_factory.mktemp("portal")
    stack = Stack(workdir, "embedded")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    # The site's own address is where the browser reaches it (CSRF origin, plain-HTTP cookies).
    stack.env["SITE_URL"] = url
    stack.setup()
    stack.manage("shell", "-c", USERS_SCRIPT)
    log = workdir / "serve.log"
    env = dict(stack.env, CA_KEY_PASSPHRASE_FILE=str(stack.var / "ca-key-passphrase"))
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [PYTHON, str(ROOT / "manage.py"), "serve", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            cwd=ROOT,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # a group of its own: nothing is left behind if serve does not stop cleanly
        )
    try:
        wait_healthy(url, process, log)
        wait_for_log(log, b" ready.", process)  # the signing worker consumes: the tests' waits are for the work
        yield Portal(stack=stack, url=url, log=log, process=process)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)  # serve stops gunicorn and the worker itself
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait()
        stack.teardown()


@pytest.fixture(scope="session", autouse=True)
def _chromium_present() -> None:
    """Reached only when not skipped, i.e. CA_PORTAL_REQUIRE_BROWSER is set: fail before any set-up."""
    if not CHROMIUM.exists():
        pytest.fail(f"CA_PORTAL_REQUIRE_BROWSER is set but {CHROMIUM} is missing (apt-get install chromium)")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def new_page(browser: Any, portal: Portal) -> Iterator[Callable[[], Any]]:
    """Pages in fresh browser contexts (separate cookie jars: one per person), closed after the test."""
    contexts: list[Any] = []
    violations: list[str] = []

    def make() -> Any:
        context = browser.new_context(base_url=portal.url, viewport={"width": 1280, "height": 900})
        context.set_default_timeout(10_000)
        contexts.append(context)
        page = context.new_page()
        watch_csp(page, violations)
        return page

    yield make
    for context in contexts:
        context.close()
    assert violations == [], "Content-Security-Policy violations reported by Chromium"


def watch_csp(page: Any, violations: list[str]) -> None:
    """Collect what Chromium reports as a Content-Security-Policy violation on this page."""

    def on_console(message: Any) -> None:
        if "Content Security Policy" in message.text:
            violations.append(f"{page.url}: {message.text}")

    page.on("console", on_console)
