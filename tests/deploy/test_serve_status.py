"""core.serve_status: the record `manage.py serve` keeps of its worker, for readiness checks."""

from __future__ import annotations

import subprocess
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from core.serve_status import (
    ServeWorkerStatus,
    describe_exit,
    serve_worker_status,
    status_path,
    write_status,
)

T0 = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


def _status(**changes: object) -> ServeWorkerStatus:
    status = ServeWorkerStatus(
        serve_pid=1,  # init: always alive
        state="running",
        worker_pid=4242,
        started_at=T0,
        worker_started_at=T0 + timedelta(seconds=5),
        restarts=2,
        last_restart_at=T0 + timedelta(seconds=5),
        last_exit="killed by SIGKILL after 3.2 s",
        last_exit_at=T0 + timedelta(seconds=4),
        next_restart_at=None,
        updated_at=T0 + timedelta(seconds=5),
    )
    return replace(status, **changes)  # type: ignore[arg-type]


def test_it_reads_back_what_serve_wrote(tmp_path: Path) -> None:
    status = _status()
    write_status(status, status_path(tmp_path))
    assert serve_worker_status(tmp_path) == status
    assert (status_path(tmp_path).stat().st_mode & 0o777) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["serve-worker.json"], "no temporary file is left behind"


def test_it_is_none_without_a_serve(tmp_path: Path) -> None:
    assert serve_worker_status(tmp_path) is None


def test_it_is_none_for_a_file_it_cannot_read(tmp_path: Path) -> None:
    status_path(tmp_path).write_text('{"serve_pid": 1, "state": "bored"}')
    assert serve_worker_status(tmp_path) is None
    status_path(tmp_path).write_text("{not json")
    assert serve_worker_status(tmp_path) is None


def test_a_serve_that_died_without_a_word_reads_as_stopped(tmp_path: Path) -> None:
    gone = subprocess.Popen(["true"])
    gone.wait()
    write_status(_status(serve_pid=gone.pid, state="restarting", next_restart_at=T0), status_path(tmp_path))
    status = serve_worker_status(tmp_path)
    assert status is not None
    assert (status.state, status.worker_pid, status.next_restart_at) == ("stopped", None, None)
    assert status.restarts == 2
    assert status.last_exit == "killed by SIGKILL after 3.2 s"


def test_exits_in_words() -> None:
    assert describe_exit(-9) == "killed by SIGKILL"
    assert describe_exit(-15) == "killed by SIGTERM"
    assert describe_exit(1) == "exit code 1"
    assert describe_exit(0) == "exit code 0"
