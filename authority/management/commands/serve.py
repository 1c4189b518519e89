"""``make run``: gunicorn and a Celery worker (queues signer + render, with beat) in the foreground.

Ctrl-C (SIGINT) or SIGTERM stops both cleanly.

When the worker dies (killed, out of memory, a crash in native code), the web tier keeps serving
and ``serve`` starts a new worker after a back-off: 1 s, doubling to at most 60 s, back to 1 s
once a worker has run for 60 s. Each restart is logged and recorded for readiness checks (see
``core.serve_status.serve_worker_status``). Nothing is lost meanwhile: requests are recorded
before they are signed, and the sweeper (beat, which restarts with the worker) queues again what
the dead worker held.

When gunicorn's master dies, ``serve`` stops the worker and exits with status 1. gunicorn already
replaces its own web workers when they crash, so its master dying means something a restart
would not fix (the port taken, a broken configuration, the host out of memory); the exit lets
systemd's ``Restart=on-failure``, or the person at the terminal, see it and act.
"""

from __future__ import annotations

import logging
import os
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandParser

from authority.services import active_ca
from core.listen import site_url_for, site_url_mismatch
from core.metrics import clear_multiprocess_dir
from core.serve_status import ServeWorkerStatus, describe_exit, now, status_path, write_status

logger = logging.getLogger("ca_portal.serve")

RESTART_DELAY_FIRST = 1.0
RESTART_DELAY_MAX = 60.0
# A worker that ran this long before it died starts the back-off over from RESTART_DELAY_FIRST.
WORKER_STABLE_AFTER = 60.0
STOP_TIMEOUT = 20.0
# The hints of the first start, the same as the overview's "no CA" card and the README's.
MANAGE = ".venv/bin/python manage.py"
INIT_CA_EXAMPLE = 'init_ca --common-name "Example VPN CA" --organization Example --country NL'


class WorkerSupervisor:
    """Runs the Celery worker in its own process group, starts it again when it dies, records it.

    Its own process group: when the main worker process is killed, its pool children and the
    embedded beat would live on as orphans (a second beat would then double every periodic task);
    the supervisor kills what is left of the group before it starts the next worker.
    """

    def __init__(self, command: list[str], status_file: Path, env: dict[str, str] | None = None) -> None:
        self.command = command
        self.status_file = status_file
        self.env = env
        self.process: subprocess.Popen[bytes] | None = None
        self.started_monotonic = 0.0
        self.restart_due: float | None = None
        self.delay = RESTART_DELAY_FIRST
        started = now()
        self.status = ServeWorkerStatus(
            serve_pid=os.getpid(),
            state="restarting",
            worker_pid=None,
            started_at=started,
            worker_started_at=None,
            restarts=0,
            last_restart_at=None,
            last_exit=None,
            last_exit_at=None,
            next_restart_at=None,
            updated_at=started,
        )

    def start(self) -> None:
        self.process = subprocess.Popen(self.command, process_group=0, env=self.env)
        self.started_monotonic = time.monotonic()
        self.restart_due = None
        started = now()
        restarted = self.status.worker_started_at is not None
        restarts = self.status.restarts + 1 if restarted else 0
        self._record(
            state="running",
            worker_pid=self.process.pid,
            worker_started_at=started,
            restarts=restarts,
            last_restart_at=started if restarted else self.status.last_restart_at,
            next_restart_at=None,
        )
        if restarted:
            logger.warning("started the celery worker again (pid %d, restart %d)", self.process.pid, restarts)

    def check(self) -> None:
        """Notice a dead worker and schedule its successor; start the successor once the back-off is over."""
        if self.process is not None:
            code = self.process.poll()
            if code is None:
                return
            ran = time.monotonic() - self.started_monotonic
            self._kill_group(self.process.pid)
            self.process = None
            if ran >= WORKER_STABLE_AFTER:
                self.delay = RESTART_DELAY_FIRST
            wait = self.delay
            self.delay = min(self.delay * 2, RESTART_DELAY_MAX)
            self.restart_due = time.monotonic() + wait
            exited = f"{describe_exit(code)} after {ran:.1f} s"
            logger.error(
                "the celery worker (pid %s) exited: %s; the web tier keeps serving, starting a new worker in %.0f s",
                self.status.worker_pid,
                exited,
                wait,
            )
            at = now()
            self._record(
                state="restarting",
                worker_pid=None,
                last_exit=exited,
                last_exit_at=at,
                next_restart_at=at + timedelta(seconds=wait),
            )
        elif self.restart_due is not None and time.monotonic() >= self.restart_due:
            self.start()

    def stop(self, deadline: float) -> None:
        process, self.process = self.process, None
        if process is not None:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            self._kill_group(process.pid)
        self._record(state="stopped", worker_pid=None, next_restart_at=None)

    @staticmethod
    def _kill_group(pgid: int) -> None:
        try:
            os.killpg(pgid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    def _record(self, **changes: Any) -> None:
        self.status = replace(self.status, updated_at=now(), **changes)
        try:
            write_status(self.status, self.status_file)
        except OSError as exc:  # the record is for readiness checks; never let it stop the portal
            logger.warning("cannot write %s: %s", self.status_file, exc)


class Command(BaseCommand):
    help = "Run the portal (gunicorn) and its worker (celery: signer + render queues, beat) until Ctrl-C."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
        parser.add_argument("--port", default=os.environ.get("PORT", "8000"))
        parser.add_argument("--web-workers", type=int, default=2)
        parser.add_argument("--concurrency", type=int, default=2, help="Celery pool processes")
        parser.add_argument(
            "--worker-nice",
            type=int,
            choices=range(20),
            metavar="0-19",
            default=settings.WORKER_NICE,
            help="the worker's niceness: people's requests first, background work (signing, rendering) "
            "after them on a shared host (default: CA_PORTAL_WORKER_NICE, 10)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        self._print_next_steps(options["host"], options["port"])
        python = sys.executable
        bin_dir = os.path.dirname(python)
        web = [
            os.path.join(bin_dir, "gunicorn"), "ca_portal.wsgi:application",
            "--bind", f"{options['host']}:{options['port']}",
            "--workers", str(options["web_workers"]),
            "--access-logfile", "-", "--graceful-timeout", "10",
            # One-time link tokens are cut to a prefix in the access log (docs/security.md T38).
            "--logger-class", "core.gunicorn_logging.RedactingLogger",
            # serve is gunicorn's supervisor; gunicorn's own control socket would be one more way in,
            # shared (~/.gunicorn/gunicorn.ctl) by every portal the same user runs.
            "--no-control-socket",
        ]  # fmt: skip
        worker = [
            os.path.join(bin_dir, "celery"), "-A", "ca_portal", "worker", "-B",
            "-Q", "signer,render", "--concurrency", str(options["concurrency"]),
            "--loglevel", "INFO", "--schedule", str(settings.CELERY_BEAT_SCHEDULE_FILENAME),
        ]  # fmt: skip
        if options["worker_nice"]:
            # On a host that also runs gunicorn, the worker yields the CPU to people's requests; it
            # loses nothing by waiting a little, because the signer and the sweepers then take
            # bigger batches (bench/enrollment.py: 10-15 % more enrollments/s, p95 halved).
            worker = ["nice", "-n", str(options["worker_nice"]), *worker]
        env = self._children_env(options["host"], options["port"])
        # The web tier gets no passphrase path: it must never sign (docs/architecture.md "Shape").
        web_env = {k: v for k, v in env.items() if k != "CA_KEY_PASSPHRASE_FILE"}
        clear_multiprocess_dir()  # fresh metric files: the previous run's processes are gone
        gunicorn = subprocess.Popen(web, env=web_env)
        supervisor = WorkerSupervisor(worker, status_path(), env=env)
        supervisor.start()
        stopping = False

        def stop(signum: int, _frame: Any) -> None:
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        self.stdout.write(f"ca_portal is up on http://{options['host']}:{options['port']}/ (Ctrl-C stops it)")
        while not stopping and gunicorn.poll() is None:
            supervisor.check()
            time.sleep(0.2)
        deadline = time.monotonic() + STOP_TIMEOUT
        if gunicorn.poll() is None:
            gunicorn.send_signal(signal.SIGTERM)
        supervisor.stop(deadline)
        try:
            gunicorn.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            gunicorn.kill()
            gunicorn.wait()
        if not stopping:
            self.stderr.write(
                f"gunicorn exited unexpectedly ({describe_exit(gunicorn.returncode)}); stopped the worker too. "
                "serve restarts a dead worker but not gunicorn, which replaces its own crashed web workers: "
                "its master dying needs a look (see the log above)"
            )
            raise SystemExit(1)
        self.stdout.write("stopped gunicorn and the worker")

    def _children_env(self, host: str, port: str) -> dict[str, str]:
        """The environment of gunicorn and the worker: SITE_URL follows --host/--port unless it is set.

        SITE_URL goes into every certificate (the CRL distribution point) and every bundle, so it
        must be where the portal is reached. Set explicitly and elsewhere, a line says so (it is
        right behind a reverse proxy, and a mistake otherwise).
        """
        env = dict(os.environ)
        if env.get("SITE_URL"):
            mismatch = site_url_mismatch(env["SITE_URL"].rstrip("/"), host, port)
            if mismatch:
                self.stdout.write(self.style.WARNING(f"Warning: {mismatch}"))
        else:
            env["SITE_URL"] = site_url_for(host, port)
        return env

    def _print_next_steps(self, host: str, port: str) -> None:
        steps = []
        # The commands must reach the same database: with the same var dir, if this one was chosen.
        var_dir = os.environ.get("CA_PORTAL_VAR_DIR", "")
        prefix = f"CA_PORTAL_VAR_DIR={shlex.quote(var_dir)} " if var_dir else ""
        if not get_user_model().objects.filter(is_superuser=True).exists():
            steps.append(f"{prefix}{MANAGE} createsuperuser")
        if active_ca() is None:
            steps.append(f"{prefix}{MANAGE} {INIT_CA_EXAMPLE}")
        if steps:
            self.stdout.write(self.style.WARNING("First start: in another terminal, in this directory, run"))
            for step in steps:
                self.stdout.write(f"    {step}")
            self.stdout.write(f"then sign in at {site_url_for(host, port)}/login/")
