"""`make run`'s command: gunicorn and a Celery worker in the foreground, stopped together by Ctrl-C.

A worker that dies is started again (with a back-off) while the web tier keeps serving; gunicorn
dying stops the whole command (see authority/management/commands/serve.py).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from core.serve_status import ServeWorkerStatus, serve_worker_status
from devtools.stack import PYTHON, ROOT, START_TIMEOUT, Stack, free_port, wait_for_log, wait_healthy

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


# --- the worker dies under `serve`: the web tier keeps serving, a new worker takes over -------------


def _start_serve(stack: Stack, tmp_path: Path, **extra_env: str) -> tuple[subprocess.Popen[bytes], int, Path]:
    port = free_port()
    env = dict(stack.env, CA_KEY_PASSPHRASE_FILE=str(stack.var / "ca-key-passphrase"), **extra_env)
    log_path = tmp_path / "serve.log"
    serve = subprocess.Popen(
        [PYTHON, str(ROOT / "manage.py"), "serve", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        cwd=ROOT,
        stdout=log_path.open("wb"),
        stderr=subprocess.STDOUT,
    )
    wait_healthy(f"http://127.0.0.1:{port}", serve, log_path)
    return serve, port, log_path


def _stop_serve(serve: subprocess.Popen[bytes]) -> None:
    """Stop `serve` and whatever it started, even when a test failed half-way."""
    if serve.poll() is None:
        kids = _children(serve.pid)
        serve.send_signal(signal.SIGTERM)
        try:
            serve.wait(timeout=30)
        except subprocess.TimeoutExpired:
            serve.kill()
            serve.wait()
        for pid in kids:
            try:
                os.killpg(pid, signal.SIGKILL)  # the worker has its own process group
            except (ProcessLookupError, PermissionError):
                pass


def _group_members(pgid: int) -> list[int]:
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == pgid and fields[0] != "Z":
                members.append(int(entry.name))
    return members


def _wait_status(var: Path, predicate: Any, *, timeout: float) -> ServeWorkerStatus:
    deadline = time.monotonic() + timeout
    status = serve_worker_status(var)
    while status is None or not predicate(status):
        if time.monotonic() > deadline:
            raise AssertionError(f"the worker status did not get there; last: {status}")
        time.sleep(0.1)
        status = serve_worker_status(var)
    return status


def test_a_killed_worker_is_started_again_while_the_web_tier_keeps_serving(tmp_path: Path) -> None:
    stack = Stack(tmp_path, "embedded")
    stack.setup()
    serve, port, log_path = _start_serve(stack, tmp_path, CA_REQUEUE_AFTER_SECONDS="5")
    try:
        first = _wait_status(stack.var, lambda s: s.state == "running", timeout=10)
        assert first.restarts == 0
        assert first.last_restart_at is None
        assert first.last_exit is None
        assert first.serve_pid == serve.pid
        assert first.worker_pid in _children(serve.pid)
        stack.driver("submit", "2")
        stack.wait_for(lambda s: s["by_status"].get("issued", 0) == 2, timeout=60)
        pool = _group_members(first.worker_pid)
        assert len(pool) >= 3, "the worker's pool children and beat share its process group"

        os.kill(first.worker_pid, signal.SIGKILL)
        # The web tier answers throughout: while the worker is dead and while the new one starts.
        answered = 0
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            assert b'"status": "ok"' in _get(f"http://127.0.0.1:{port}/healthz")
            answered += 1
        assert _get(f"http://127.0.0.1:{port}/ca.pem").startswith(b"-----BEGIN CERTIFICATE-----")
        assert answered > 10

        second = _wait_status(stack.var, lambda s: s.restarts == 1 and s.state == "running", timeout=15)
        assert second.worker_pid not in (None, first.worker_pid)
        assert second.worker_pid in _children(serve.pid)
        assert second.last_exit is not None
        assert second.last_exit.startswith("killed by SIGKILL after ")
        assert second.last_restart_at is not None
        assert second.last_exit_at is not None
        assert second.last_exit_at <= second.last_restart_at
        assert second.started_at == first.started_at
        assert _group_members(first.worker_pid) == [], "the dead worker's pool children and beat were left behind"
        assert serve.poll() is None

        # Issuance resumes with the new worker.
        stack.driver("submit", "3")
        state = stack.wait_for(lambda s: s["by_status"].get("issued", 0) == 5, timeout=60)
        assert state["problems"] == []
        assert state["intents"] == 5
        assert state["distinct_serials"] == 5
        assert state["audit_ok"], state["audit_problem"]

        serve.send_signal(signal.SIGINT)
        assert serve.wait(timeout=30) == 0
        stopped = serve_worker_status(stack.var)
        assert stopped is not None
        assert stopped.state == "stopped"
        assert stopped.restarts == 1
    finally:
        _stop_serve(serve)
        stack.teardown()
    output = log_path.read_text(errors="replace")
    assert f"the celery worker (pid {first.worker_pid}) exited: killed by SIGKILL" in output
    assert "the web tier keeps serving, starting a new worker in 1 s" in output
    assert f"started the celery worker again (pid {second.worker_pid}, restart 1)" in output


def test_a_worker_killed_mid_signing_loses_nothing_under_serve(tmp_path: Path) -> None:
    """The whole worker group dies right after the intents were committed: serve starts a new worker,
    the sweeper queues the request again and it is signed with the serial recorded before the crash."""
    stack = Stack(tmp_path, "embedded")
    stack.setup()
    markers = tmp_path / "markers"
    markers.mkdir()
    serve, port, _log = _start_serve(
        stack,
        tmp_path,
        CA_REQUEUE_AFTER_SECONDS="5",
        CA_PORTAL_FAILPOINTS=f"after_intent_commit=kill-group-once:{markers}",
    )
    try:
        stack.driver("submit", "1")
        _wait_status(stack.var, lambda s: s.restarts >= 1 and s.state == "running", timeout=30)
        assert [p.name.rsplit("-", 1)[0] for p in markers.iterdir()] == ["after_intent_commit"]
        assert b'"status": "ok"' in _get(f"http://127.0.0.1:{port}/healthz")
        state = stack.wait_for(lambda s: s["by_status"].get("issued", 0) == 1, timeout=90)
        assert state["intents"] == 1, "the new worker signed under the serial recorded before the crash"
        assert state["certificates"] == 1
        assert state["problems"] == []
        assert state["audit_ok"], state["audit_problem"]
        assert serve_worker_status(stack.var).restarts == 1  # type: ignore[union-attr]
    finally:
        _stop_serve(serve)
        stack.teardown()


def test_serve_stops_the_worker_and_exits_when_gunicorn_dies(tmp_path: Path) -> None:
    stack = Stack(tmp_path, "embedded")
    stack.setup()
    serve, _port, log_path = _start_serve(stack, tmp_path)
    try:
        running = _wait_status(stack.var, lambda s: s.state == "running", timeout=10)
        gunicorn = next(pid for pid in _children(serve.pid) if b"gunicorn" in Path(f"/proc/{pid}/cmdline").read_bytes())
        os.kill(gunicorn, signal.SIGKILL)
        assert serve.wait(timeout=30) == 1
        assert running.worker_pid is not None
        assert _group_members(running.worker_pid) == []
        stopped = serve_worker_status(stack.var)
        assert stopped is not None
        assert stopped.state == "stopped"
        assert stopped.restarts == 0
    finally:
        _stop_serve(serve)
        stack.teardown()
    assert "gunicorn exited unexpectedly (killed by SIGKILL); stopped the worker too" in log_path.read_text(
        errors="replace"
    )
