"""How ``manage.py serve`` (``make run``)'s Celery worker is doing: read by anyone, written by ``serve``.

``serve`` runs gunicorn and one Celery worker. When the worker dies, the web tier keeps serving
and ``serve`` starts a new worker after a back-off; nothing is lost, because every request is
recorded before it is signed and the sweeper re-queues what the dead worker held. The restarts
are recorded in ``<CA_PORTAL_VAR_DIR>/serve-worker.json`` so a readiness check can report them:

    from core.serve_status import serve_worker_status

    status = serve_worker_status()    # None: no `serve` has run with this var dir (production units)
    status.state                      # "running", "restarting" (waiting out the back-off) or "stopped"
    status.restarts                   # workers started again since `serve` started
    status.last_restart_at            # when the latest of them started (UTC), or None
    status.last_exit                  # how the latest worker ended, e.g. "killed by SIGKILL after 12.0 s"

The file is replaced atomically (written under a temporary name, then renamed), so a reader never
sees half of it. A ``serve`` that was itself killed cannot say so; the reader then reports
``stopped`` because the process named in the file no longer exists.
"""

from __future__ import annotations

import json
import os
import signal
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from django.conf import settings

STATUS_FILE_NAME = "serve-worker.json"

State = Literal["running", "restarting", "stopped"]


@dataclass(frozen=True)
class ServeWorkerStatus:
    serve_pid: int
    state: State
    worker_pid: int | None
    started_at: datetime
    worker_started_at: datetime | None
    restarts: int
    last_restart_at: datetime | None
    last_exit: str | None
    last_exit_at: datetime | None
    next_restart_at: datetime | None
    updated_at: datetime

    def to_json(self) -> dict[str, Any]:
        return {key: value.isoformat() if isinstance(value, datetime) else value for key, value in asdict(self).items()}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ServeWorkerStatus:
        def when(key: str) -> datetime | None:
            value = data.get(key)
            return datetime.fromisoformat(value) if isinstance(value, str) else None

        def required(key: str) -> datetime:
            value = when(key)
            if value is None:
                raise ValueError(f"{key} is missing")
            return value

        state = data["state"]
        if state not in ("running", "restarting", "stopped"):
            raise ValueError(f"unknown state {state!r}")
        worker_pid = data.get("worker_pid")
        last_exit = data.get("last_exit")
        return cls(
            serve_pid=int(data["serve_pid"]),
            state=state,
            worker_pid=int(worker_pid) if worker_pid is not None else None,
            started_at=required("started_at"),
            worker_started_at=when("worker_started_at"),
            restarts=int(data["restarts"]),
            last_restart_at=when("last_restart_at"),
            last_exit=str(last_exit) if last_exit is not None else None,
            last_exit_at=when("last_exit_at"),
            next_restart_at=when("next_restart_at"),
            updated_at=required("updated_at"),
        )


def status_path(var_dir: Path | None = None) -> Path:
    return Path(var_dir if var_dir is not None else settings.VAR_DIR) / STATUS_FILE_NAME


def write_status(status: ServeWorkerStatus, path: Path) -> None:
    """Replace the status file atomically (mode 0600, like everything else in the var dir)."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(status.to_json(), handle, indent=1, sort_keys=True)
        handle.write("\n")
    os.replace(temporary, path)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: it exists
        return True
    return True


def serve_worker_status(var_dir: Path | None = None) -> ServeWorkerStatus | None:
    """The worker status ``serve`` last recorded in this var dir, or None if there is none (or it is unreadable).

    ``state`` is ``stopped`` when the ``serve`` process that wrote the file is gone, whatever the
    file says.
    """
    path = status_path(var_dir)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        status = ServeWorkerStatus.from_json(data)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if status.state != "stopped" and not _alive(status.serve_pid):
        return replace(status, state="stopped", worker_pid=None, next_restart_at=None)
    return status


def describe_exit(returncode: int) -> str:
    """``Popen.returncode`` in words: "exit code 1", "killed by SIGKILL"."""
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"killed by {name}"
    return f"exit code {returncode}"


def now() -> datetime:
    return datetime.now(UTC)
