"""`make run`'s command: gunicorn and a Celery worker in the foreground, stopped together by Ctrl-C."""

from __future__ import annotations

import os
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from devtools.stack import PYTHON, ROOT, START_TIMEOUT, Stack, free_port, wait_for_log

pytestmark = pytest.mark.integration


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 (loopback only)
        return bytes(response.read())


def test_it_serves_signs_and_stops_cleanly_on_ctrl_c(tmp_path: Path) -> None:
    stack = Stack(tmp_path, "embedded")
    stack.setup()
    port = free_port()
    env = dict(stack.env, CA_KEY_PASSPHRASE_FILE=str(stack.var / "ca-key-passphrase"))
    log = (tmp_path / "serve.log").open("wb")
    serve = subprocess.Popen(
        [PYTHON, str(ROOT / "manage.py"), "serve", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # serve, gunicorn and the worker in a group of their own, to clean up after a failure
    )
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                assert b'"status": "ok"' in _get(f"http://127.0.0.1:{port}/healthz")
                break
            except OSError:
                if time.monotonic() > deadline or serve.poll() is not None:
                    raise
                time.sleep(0.3)
        ca_pem = (ROOT / "tests" / "fixtures" / "pki" / "ca-rsa2048.crt").read_bytes()
        assert _get(f"http://127.0.0.1:{port}/ca.pem").strip() == ca_pem.strip()

        # The web tier is started without the passphrase path; the worker gets it.
        kids = _children(serve.pid)
        assert len(kids) == 2
        environs = {pid: Path(f"/proc/{pid}/environ").read_bytes() for pid in kids}
        cmdlines = {pid: Path(f"/proc/{pid}/cmdline").read_bytes() for pid in kids}
        gunicorn = next(pid for pid in kids if b"gunicorn" in cmdlines[pid])
        worker = next(pid for pid in kids if b"celery" in cmdlines[pid])
        assert b"CA_KEY_PASSPHRASE_FILE" not in environs[gunicorn]
        assert b"CA_KEY_PASSPHRASE_FILE" in environs[worker]
        # People's requests first: the worker runs at niceness 10 (CA_PORTAL_WORKER_NICE), gunicorn at 0.
        nice = {pid: int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[16]) for pid in kids}
        assert (nice[gunicorn], nice[worker]) == (0, 10)

        # The worker that `serve` started signs what is submitted (once it is up: slow on a loaded machine).
        wait_for_log(tmp_path / "serve.log", b" ready.", serve)
        stack.driver("submit", "3")
        state = stack.wait_for(lambda s: s["by_status"].get("issued", 0) == 3, timeout=60)
        assert state["problems"] == []

        serve.send_signal(signal.SIGINT)
        assert serve.wait(timeout=30) == 0
        for pid in kids:
            assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2]
    finally:
        try:  # whatever is left of the group after a failure: serve, gunicorn, its workers, the Celery worker
            os.killpg(serve.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        serve.wait()
        stack.teardown()
    output = (tmp_path / "serve.log").read_text(errors="replace")
    assert "createsuperuser" in output, "the first start must print the next steps"
    assert "stopped gunicorn and the worker" in output
