"""The operations endpoints on real processes: gunicorn with two workers and the redacting logger, a signer worker.

- /readyz turns ready once the signer worker (another process) has taken a heartbeat from its queue;
- /metrics adds up what both gunicorn workers counted, whichever worker answers the scrape;
- gunicorn's access log (LOG_FORMAT=json) carries no one-time link token.
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devtools.stack import BIN, ROOT, Stack, free_port, stop_group, wait_healthy
from tests.ops_health.conftest import TOKEN, samples

pytestmark = pytest.mark.integration

LINK_TOKEN = "Zq3xN0vJ8kLmP2rS5tUwYb7cD9eFgHiKlMnOpQrStUv"


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # the 3xx comes back as it is


_opener = urllib.request.build_opener(_NoRedirect)


def _get(url: str, **headers: str) -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers=headers)  # noqa: S310 (loopback only)
    try:
        with _opener.open(request, timeout=10) as response:
            return int(response.status), bytes(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    stack = Stack(tmp_path, "embedded")
    # The test process's own metrics dir must not leak into the stack: it uses the one in its var dir.
    stack.env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    stack.setup()
    try:
        yield stack
    finally:
        stack.teardown()


def test_readyz_metrics_and_access_log_on_real_processes(stack: Stack, tmp_path: Path) -> None:
    token_file = tmp_path / "metrics-token"
    token_file.write_text(TOKEN + "\n", encoding="ascii")
    env = dict(stack.env, LOG_FORMAT="json", METRICS_TOKEN_FILE=str(token_file))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = tmp_path / "gunicorn.log"
    stack.manage("shell", "-c", _PUBLISH_CRL)
    stack.start_worker()
    with log_path.open("wb") as log:
        web = subprocess.Popen(
            [
                str(BIN / "gunicorn"), "ca_portal.wsgi:application", "--bind", f"127.0.0.1:{port}", "--workers", "2",
                "--access-logfile", "-", "--logger-class", "core.gunicorn_logging.RedactingLogger",
            ],
            env=env,
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    try:
        wait_healthy(url, web, log_path)
        # Beat sends this every 30 s; here the test sends it, by name, through the real broker.
        stack.manage("shell", "-c", "from core.tasks import send_by_name; send_by_name('authority.signer_heartbeat')")
        ready = _wait_ready(url, log_path)
        assert {name for name, check in ready["checks"].items() if check["ok"]} == {
            "database",
            "broker",
            "signer",
            "crl",
            "requests",
        }

        for _ in range(10):
            assert _get(f"{url}/healthz")[0] == 200
        # Links are redeemed without a session; an unknown token is a 404 (and its line in the access log).
        assert _get(f"{url}/bundles/link/{LINK_TOKEN}/")[0] == 404
        assert _get(f"{url}/metrics")[0] == 401
        status, body = _get(f"{url}/metrics", Authorization=f"Bearer {TOKEN}")
        assert status == 200
        found = samples(body.decode())
        served = sum(
            value for (name, labels), value in found.items() if name == "ca_portal_http_requests_total"
        )  # both workers' files, whichever worker answered
        assert served >= 13
        assert found[("ca_portal_http_requests_total", (("method", "GET"), ("status", "200")))] >= 11
        assert 0 <= found[("ca_portal_signer_heartbeat_age_seconds", ())] < 120
        assert found[("ca_portal_signer_key_ok", ())] == 1
        assert found[("ca_portal_metrics_source_up", (("source", "authority"),))] == 1
        assert len(list((stack.var / "metrics").glob("counter_*.db"))) >= 1
    finally:
        stop_group(web)

    lines = log_path.read_text(errors="replace").splitlines()
    access = [json.loads(line) for line in lines if '"logger": "gunicorn.access"' in line]
    assert LINK_TOKEN not in log_path.read_text(errors="replace")
    link = [entry for entry in access if entry["path"].startswith("/bundles/link/")]
    assert [entry["path"] for entry in link] == [f"/bundles/link/{LINK_TOKEN[:6]}.../"]
    assert link[0]["status"] == 404  # an unknown token, redeemed without a session
    assert len(link[0]["request_id"]) == 32  # the id the portal gave the request


_PUBLISH_CRL = (
    "from authority import keystore\n"
    "from authority.revocation import crl_publish\n"
    "keystore.enable_signing()\n"
    "crl_publish(trigger='manual')\n"
)


def _wait_ready(url: str, log: Path, *, timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    body: Any = None
    while time.monotonic() < deadline:
        status, raw = _get(f"{url}/readyz")
        body = json.loads(raw)
        if status == 200:
            return body
        time.sleep(0.5)
    raise AssertionError(f"not ready: {body}\n{log.read_text(errors='replace')[-3000:]}")


def test_the_broker_check_pings_a_real_redis() -> None:
    from celery import Celery

    from core import health
    from devtools.stack import REDIS_BASE

    started = time.monotonic()
    health._probe_broker(Celery("probe", broker=f"{REDIS_BASE}/13", set_as_current=False))

    assert time.monotonic() - started < 2
