"""``make run``: gunicorn and a Celery worker (queues signer + render, with beat) in the foreground.

Ctrl-C (SIGINT) or SIGTERM stops both cleanly; if either dies, the other is stopped too, so the
portal never runs half-up without anyone noticing.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandParser

from authority.services import active_ca


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
        # The web tier gets no passphrase path: it must never sign (DESIGN.md "Shape").
        web_env = {k: v for k, v in os.environ.items() if k != "CA_KEY_PASSPHRASE_FILE"}
        children = [subprocess.Popen(web, env=web_env), subprocess.Popen(worker)]
        stopping = False

        def stop(signum: int, _frame: Any) -> None:
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        self.stdout.write(f"ca_portal is up on http://{options['host']}:{options['port']}/ (Ctrl-C stops it)")
        while not stopping and all(child.poll() is None for child in children):
            time.sleep(0.2)
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 20
        for child in children:
            try:
                child.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.kill()
        codes = [child.returncode for child in children]
        if not stopping:
            self.stderr.write(f"a process exited unexpectedly (gunicorn={codes[0]}, celery={codes[1]}); stopped both")
            raise SystemExit(1)
        self.stdout.write("stopped gunicorn and the worker")

    def _print_next_steps(self, host: str, port: str) -> None:
        steps = []
        if not get_user_model().objects.filter(is_superuser=True).exists():
            steps.append(".venv/bin/python manage.py createsuperuser")
        if active_ca() is None:
            steps.append('.venv/bin/python manage.py init_ca --common-name "Example VPN CA" --organization Example')
        if steps:
            self.stdout.write(self.style.WARNING("First start: in another terminal, run"))
            for step in steps:
                self.stdout.write(f"    {step}")
            self.stdout.write(f"then sign in at http://{host}:{port}/login/")
