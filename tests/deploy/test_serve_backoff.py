"""manage.py serve's worker supervisor: the back-off between restarts, and what it records.

The real worker is killed under a real `serve` in tests/integration/test_serve.py; here a shell
command stands in for it, with the delays shrunk, to check the schedule itself.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest

from authority.management.commands import serve
from core.serve_status import ServeWorkerStatus, serve_worker_status


def _run_until(supervisor: serve.WorkerSupervisor, var: Path, restarts: int) -> list[ServeWorkerStatus]:
    """Drive the supervisor's loop; return the status recorded at each exit."""
    exits: list[ServeWorkerStatus] = []
    deadline = time.monotonic() + 20
    while supervisor.status.restarts < restarts or supervisor.process is None:
        assert time.monotonic() < deadline
        before = supervisor.status.last_exit_at
        supervisor.check()
        if supervisor.status.last_exit_at != before:
            recorded = serve_worker_status(var)
            assert recorded is not None
            exits.append(recorded)
        time.sleep(0.005)
    supervisor.stop(time.monotonic() + 5)
    return exits


def test_the_delay_doubles_up_to_the_cap(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(serve, "RESTART_DELAY_FIRST", 0.05)
    monkeypatch.setattr(serve, "RESTART_DELAY_MAX", 0.2)
    monkeypatch.setattr(serve, "WORKER_STABLE_AFTER", 60.0)
    supervisor = serve.WorkerSupervisor(["sh", "-c", "exit 3"], tmp_path / "serve-worker.json")
    supervisor.start()
    with caplog.at_level(logging.INFO, logger="ca_portal.serve"):
        exits = _run_until(supervisor, tmp_path, restarts=5)
    delays = [round((s.next_restart_at - s.last_exit_at).total_seconds(), 2) for s in exits]  # type: ignore[operator]
    assert delays[:5] == [0.05, 0.1, 0.2, 0.2, 0.2]
    assert all(s.state == "restarting" and s.worker_pid is None for s in exits)
    assert exits[0].last_exit is not None
    assert exits[0].last_exit.startswith("exit code 3 after ")
    final = serve_worker_status(tmp_path)
    assert final is not None
    assert final.state == "stopped"
    assert final.restarts == 5
    assert final.last_restart_at is not None
    messages = [r.getMessage() for r in caplog.records]
    assert sum("exited: exit code 3" in m for m in messages) >= 5
    assert "started the celery worker again (pid" in messages[1]


def test_a_worker_that_ran_long_enough_starts_over(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(serve, "RESTART_DELAY_FIRST", 0.05)
    monkeypatch.setattr(serve, "RESTART_DELAY_MAX", 1.0)
    monkeypatch.setattr(serve, "WORKER_STABLE_AFTER", 0.1)
    supervisor = serve.WorkerSupervisor(["sh", "-c", "sleep 0.15; exit 1"], tmp_path / "serve-worker.json")
    supervisor.start()
    exits = _run_until(supervisor, tmp_path, restarts=3)
    delays = [round((s.next_restart_at - s.last_exit_at).total_seconds(), 2) for s in exits]  # type: ignore[operator]
    assert delays[:3] == [0.05, 0.05, 0.05]
