"""Readiness checks: the shape every app's checks share, and the two the plumbing owns (database, broker).

A check answers ``Check(name, ok, detail)``. Its detail is for the operator who reads /readyz,
which answers anyone: it says what is wrong in words ("the broker does not answer"), never a host
name, a path, a URL or an exception's text. What went wrong exactly goes to the log.

The site's /readyz (``ca_portal.ops``) runs the checks of every app through ``run_checks``, which
turns a check that raises (say, because the database is down) into a failed check instead of a 500.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from celery import Celery
from celery._state import get_current_app
from django.db import connection
from kombu.transport import filesystem

log = logging.getLogger(__name__)

BROKER_TIMEOUT = 1.5  # seconds: connect + ping; /readyz never waits much longer than this for the broker


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


CheckFunction = Callable[[], Check]


def run_checks(checks: Iterable[tuple[str, CheckFunction]]) -> list[Check]:
    """Run each named check; one that raises fails with a detail that gives nothing away."""
    results = []
    for name, check in checks:
        try:
            results.append(check())
        except Exception:
            log.warning("readiness check %s raised", name, exc_info=True)
            results.append(Check(name, False, "could not be checked (see the portal's log)"))
    return results


def database_check() -> Check:
    started = time.monotonic()
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()
    return Check("database", True, f"answers ({(time.monotonic() - started) * 1000:.0f} ms)")


def _filesystem_folders(options: dict[str, object]) -> list[str]:
    keys = ("data_folder_in", "data_folder_out", "processed_folder", "control_folder")
    return [str(options[key]) for key in keys if options.get(key)]


def _probe_broker(app: Celery) -> None:
    """Connect to the broker the site sends through, and ping it. Raises when it does not answer.

    Redis: a connection (socket timeouts of BROKER_TIMEOUT) that kombu's transport verifies with a
    PING, no retry. The embedded filesystem broker has nothing to connect to: its transport
    "connects" without looking at the disk, so the folders it reads and writes must exist and be
    writable, or every message is lost.
    """
    options = dict(app.conf.broker_transport_options or {})
    with app.connection_for_write(
        connect_timeout=BROKER_TIMEOUT,
        transport_options={"socket_connect_timeout": BROKER_TIMEOUT, "socket_timeout": BROKER_TIMEOUT},
    ) as conn:
        conn.ensure_connection(max_retries=0)  # no retry: the socket timeouts bound the one try
        if isinstance(conn.transport, filesystem.Transport):
            for folder in _filesystem_folders(options):
                if not (os.path.isdir(folder) and os.access(folder, os.W_OK | os.X_OK)):
                    raise OSError(f"broker folder {folder} is missing or not writable")


def broker_check(*, timeout: float = BROKER_TIMEOUT + 0.5) -> Check:
    """A cheap connection check that never holds the request longer than ``timeout`` seconds.

    The probe runs in a thread: a name that does not resolve or a broker that accepts the connection
    and then says nothing must not hang the request past the socket timeouts (a probe left behind
    ends at its own socket timeout).
    """
    started = time.monotonic()
    failure: list[BaseException] = []
    # The app current in this thread: a new thread would fall back to Celery's default app.
    app = get_current_app()

    def probe() -> None:
        try:
            _probe_broker(app)
        except BaseException as exc:
            failure.append(exc)

    thread = threading.Thread(target=probe, name="readyz-broker", daemon=True)
    thread.start()
    thread.join(timeout)
    elapsed = (time.monotonic() - started) * 1000
    if thread.is_alive():
        log.warning("broker check: no answer within %.1f s", timeout)
        return Check("broker", False, f"no answer within {timeout:.1f} s")
    if failure:
        log.warning("broker check failed: %s", failure[0])
        return Check("broker", False, "the broker does not answer")
    return Check("broker", True, f"answers ({elapsed:.0f} ms)")
