"""A real ca_portal deployment in a temp dir: its own var dir, database and broker, real worker processes.

Two flavours, as in docs/architecture.md: ``embedded`` (SQLite + kombu's filesystem broker in the var dir)
and ``services`` (a fresh PostgreSQL database on 127.0.0.1:5432 and a Redis database on
127.0.0.1:6379). Used by the integration and browser tests and by the benchmarks in bench/.

Stacks may run side by side: pytest-xdist workers, a benchmark beside a test run, two checkouts on
one machine. Each stack leases a Redis database of its own (an exclusive lock file per database
number, held until teardown or the end of the process), its PostgreSQL database's name carries the
process id and a random part and is created with CREATE DATABASE (which refuses a name taken), and
free_port() hands out ports that are locked the same way, from below the kernel's ephemeral range.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import random
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import weakref
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
BIN = Path(PYTHON).parent
PG_ADMIN_DSN = os.environ.get("CA_PORTAL_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_BASE = os.environ.get("CA_PORTAL_TEST_REDIS", "redis://127.0.0.1:6379")
# Database 0 is left to `make run` and other tools; a stack leases one of these (Redis has 16 by default).
REDIS_DBS = range(1, 16)
LEASE_TIMEOUT = 300.0  # seconds to wait for a Redis database when every one is leased
FIXTURES = ROOT / "tests" / "fixtures" / "pki"
LOCK_DIR = Path(tempfile.gettempdir()) / "ca_portal-locks"
# Below Linux's ephemeral range (32768-60999 by default), so no outgoing connection can take a
# port between free_port() and the server's bind.
PORTS = range(20000, 32000)
# How long a server or worker may take to come up: seconds on an idle machine, a minute or more
# when the suite runs in parallel beside other work. Only a hang should reach it.
START_TIMEOUT = 180.0


def worker_id() -> str:
    """The pytest-xdist worker this process is ("gw0", "gw1", ...), or "" outside xdist."""
    return os.environ.get("PYTEST_XDIST_WORKER", "")


def _worker_index() -> int:
    worker = worker_id()
    return int(worker[2:]) if worker.startswith("gw") and worker[2:].isdigit() else 0


def _try_lock(name: str) -> int | None:
    """An exclusive lock on LOCK_DIR/name, as an open descriptor (closing it releases the lock), or
    None if another process (or another descriptor of this one) holds it."""
    LOCK_DIR.mkdir(mode=0o1777, parents=True, exist_ok=True)
    fd = os.open(LOCK_DIR / name, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        if exc.errno in (errno.EAGAIN, errno.EACCES):
            return None
        raise
    return fd


def lease_redis_db(db: int | None = None, *, timeout: float = LEASE_TIMEOUT) -> tuple[int, int]:
    """(database number, lock descriptor): a Redis database no other stack on this machine uses
    until the descriptor is closed. ``db`` asks for one number; otherwise the first free one,
    starting at a different place for each xdist worker."""
    candidates = [db] if db is not None else [REDIS_DBS[(_worker_index() + i) % len(REDIS_DBS)] for i in REDIS_DBS]
    deadline = time.monotonic() + timeout
    while True:
        for number in candidates:
            fd = _try_lock(f"redis-db-{number}")
            if fd is not None:
                return number, fd
        if time.monotonic() > deadline:
            raise RuntimeError(f"no free Redis database among {candidates} after {timeout:.0f} s (see {LOCK_DIR})")
        time.sleep(0.5)


class Stack:
    def __init__(
        self,
        workdir: Path,
        flavour: str,
        *,
        ca_cert: str = "ca-rsa2048.crt",
        ca_key: str = "ca-rsa2048.key",
        redis_db: int | None = None,
        db_prefix: str = "ca_portal_it",
    ):
        """``redis_db``: the Redis database that setup and teardown flush (services flavour); by
        default the stack leases a free one (see lease_redis_db), so that stacks never share one."""
        if flavour not in ("embedded", "services"):
            raise ValueError(flavour)
        self.workdir = workdir
        self.flavour = flavour
        self.var = workdir / "var"
        self.var.mkdir(parents=True, exist_ok=True)
        self.ca_cert, self.ca_key = ca_cert, ca_key
        self.worker: subprocess.Popen[bytes] | None = None
        self.worker_log = workdir / "worker.log"
        self.env = {
            k: v
            for k, v in os.environ.items()
            # A deployment keeps its metric files in its own var dir: an inherited folder would be the
            # test process's, which `serve` empties at start-up.
            if k not in {"DATABASE_URL", "REDIS_URL", "CA_KEY_PASSPHRASE_FILE", "PROMETHEUS_MULTIPROC_DIR"}
        }
        self.env.update(
            DJANGO_SETTINGS_MODULE="ca_portal.settings",
            CA_PORTAL_VAR_DIR=str(self.var),
            SITE_URL="https://ca.example.org",
            PYTHONPATH=str(ROOT),
        )
        self.dbname = ""
        self.redis_db = -1
        self._redis_lease: weakref.finalize | None = None
        if flavour == "services":
            # The process id keeps live stacks apart; CREATE DATABASE refuses a name a dead one left.
            self.dbname = f"{db_prefix}_{os.getpid()}_{secrets.token_hex(4)}"
            self.env["DATABASE_URL"] = f"postgres://postgres@127.0.0.1:5432/{self.dbname}"
            self.redis_db, fd = lease_redis_db(redis_db)
            self._redis_lease = weakref.finalize(self, os.close, fd)
            self.env["REDIS_URL"] = f"{REDIS_BASE}/{self.redis_db}"
            self.env["CELERY_VISIBILITY_TIMEOUT"] = "5"

    # --- lifecycle ---------------------------------------------------------------------------
    def setup(self) -> None:
        """A migrated database and the fixture CA imported (``migrate``, ``import_ca``). Under pytest,
        stacks set up alike in one run (same flavour, CA and environment) copy the var dir and
        database that the first of them made (see _template): the same state, without running both
        commands again in each of the run's many stacks."""
        if self.flavour == "services":
            _redis_flush(self.redis_db)
        if not TEMPLATES:
            self._make(self.env, self.dbname)
            return
        var, dbname = _template(self)
        shutil.copytree(var, self.var, dirs_exist_ok=True)
        if self.flavour == "services":
            _pg_create_from(self.dbname, dbname)

    def _make(self, env: dict[str, str], dbname: str) -> None:
        if self.flavour == "services":
            _pg_admin(f'CREATE DATABASE "{dbname}"')
        self.manage("migrate", "--noinput", "-v0", env=env)
        self.manage("import_ca", "--cert", str(FIXTURES / self.ca_cert), "--key", str(FIXTURES / self.ca_key), env=env)

    def setup_key(self) -> str:
        """What the state after setup() depends on: the flavour, the CA and the environment, less
        what differs between stacks that start out alike (their own var dir, database, Redis)."""
        env = {k: v for k, v in self.env.items() if k not in _OWN_ENV and not k.startswith("PYTEST_")}
        blob = json.dumps([self.flavour, self.ca_cert, self.ca_key, sorted(env.items())])
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def teardown(self) -> None:
        self.stop_worker()
        if self.flavour == "services":
            try:
                _redis_flush(self.redis_db)
                _pg_admin(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE datname = %s AND pid <> pg_backend_pid()",
                    (self.dbname,),
                )
                _pg_admin(f'DROP DATABASE IF EXISTS "{self.dbname}"')
            finally:
                if self._redis_lease is not None:
                    self._redis_lease()  # the database is empty again: release it

    def manage(
        self, *args: str, check: bool = True, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [PYTHON, str(ROOT / "manage.py"), *args], env=env or self.env, cwd=ROOT, capture_output=True, text=True
        )
        if check and result.returncode != 0:
            raise AssertionError(f"manage.py {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
        return result

    def driver(self, *args: str) -> Any:
        result = subprocess.run(
            [PYTHON, str(ROOT / "devtools" / "driver.py"), *args],
            env=self.env,
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
        if result.returncode != 0:
            raise AssertionError(f"driver {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
        return json.loads(result.stdout.strip().splitlines()[-1])

    def start_worker(
        self,
        *,
        concurrency: int = 1,
        failpoints: str = "",
        queues: str = "signer,render",
        loglevel: str = "INFO",
        wait: bool = True,
    ) -> None:
        """Start a Celery worker on the stack; with ``wait``, return once it consumes (its log says
        "ready."), so that what a test times afterwards is the work and not the start-up, which
        takes many seconds on a loaded machine."""
        env = dict(self.env)
        if failpoints:
            env["CA_PORTAL_FAILPOINTS"] = failpoints
        offset = self.worker_log.stat().st_size if self.worker_log.exists() else 0
        log = self.worker_log.open("ab")
        self.worker = subprocess.Popen(
            [
                str(BIN / "celery"), "-A", "ca_portal", "worker", "-Q", queues, "-c", str(concurrency),
                "--without-gossip", "--without-mingle", "--without-heartbeat", "-l", loglevel,
                "-n", f"it-{secrets.token_hex(3)}@%h",
            ],
            env=env,
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: a failpoint may kill the whole group
        )  # fmt: skip
        log.close()  # the worker has its own descriptor
        if wait:
            if loglevel.upper() not in ("DEBUG", "INFO"):
                raise ValueError("waiting for the worker needs its INFO lines: loglevel DEBUG or INFO, or wait=False")
            wait_for_log(self.worker_log, b" ready.", self.worker, offset=offset)

    def stop_worker(self) -> None:
        if self.worker is None:
            return
        if self.worker.poll() is None:
            try:
                os.killpg(self.worker.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.worker.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.worker.pid, signal.SIGKILL)
                self.worker.wait()
        else:
            try:  # the main process died (a failpoint); make sure no orphaned child lingers
                os.killpg(self.worker.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.worker = None

    def worker_alive(self) -> bool:
        return self.worker is not None and self.worker.poll() is None

    def quick_status(self) -> dict[str, Any]:
        """Requests by status, read straight from the stack's database: cheap enough to poll (the
        full ``driver status`` starts a Python process and checks every certificate)."""
        sql = "SELECT status, COUNT(*) FROM authority_certificaterequest GROUP BY status"
        if self.flavour == "services":
            import psycopg

            with psycopg.connect(self.env["DATABASE_URL"], autocommit=True) as conn:
                rows = conn.execute(sql).fetchall()
        else:
            import sqlite3

            conn = sqlite3.connect(self.var / "ca_portal.sqlite3", timeout=30)
            try:
                rows = conn.execute(sql).fetchall()
            finally:
                conn.close()
        by_status = {str(status): int(count) for status, count in rows}
        return {"requests": sum(by_status.values()), "by_status": by_status}

    def wait_for(self, predicate: Any, *, timeout: float, interval: float = 0.5) -> dict[str, Any]:
        """Poll until ``predicate(state)`` holds, then return the full ``driver status``. The
        predicate sees quick_status() ("requests", "by_status") while polling, and must hold for
        the full status too."""
        deadline = time.monotonic() + timeout
        state: dict[str, Any] = {}
        while time.monotonic() < deadline:
            state = self.quick_status()
            if predicate(state):
                state = self.driver("status")
                if predicate(state):
                    return state
            time.sleep(interval)
        log = self.worker_log.read_text(errors="replace")[-4000:] if self.worker_log.exists() else ""
        raise AssertionError(f"timed out; last state: {state}\n--- worker log tail ---\n{log}")


# --- set-up templates (see Stack.setup) -----------------------------------------------------------

# Under pytest (which sets PYTEST_VERSION) stacks start from templates; benchmarks make each afresh.
TEMPLATES = "PYTEST_VERSION" in os.environ
_OWN_ENV = {"CA_PORTAL_VAR_DIR", "DATABASE_URL", "REDIS_URL"}


def _run_owner() -> int:
    """The process whose run the templates belong to: the pytest-xdist controller (the workers'
    parent) or this process; they are dropped when it ends (drop_templates) or found stale later."""
    return os.getppid() if worker_id() else os.getpid()


def _template(stack: Stack) -> tuple[Path, str]:
    """The var dir and database name of the run's template for stacks set up like ``stack``; the
    first caller (any worker of the run: a lock file orders them) makes it with ``stack._make``."""
    owner = _run_owner()
    name = f"tpl-{owner}-{stack.setup_key()}"
    home = LOCK_DIR / name
    dbname = f"ca_portal_{name.replace('-', '_')}" if stack.flavour == "services" else ""
    LOCK_DIR.mkdir(mode=0o1777, parents=True, exist_ok=True)
    fd = os.open(LOCK_DIR / f"{name}.lock", os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        if not (home / "ready").exists():
            _drop_stale_templates()
            shutil.rmtree(home, ignore_errors=True)
            if dbname:
                _pg_admin(f'DROP DATABASE IF EXISTS "{dbname}"')
            (home / "var").mkdir(parents=True)
            env = dict(stack.env, CA_PORTAL_VAR_DIR=str(home / "var"))
            if dbname:
                env["DATABASE_URL"] = f"postgres://postgres@127.0.0.1:5432/{dbname}"
            stack._make(env, dbname)
            (home / "ready").touch()
    finally:
        os.close(fd)
    return home / "var", dbname


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def drop_templates(owner: int | None = None, *, stale_only: bool = False) -> None:
    """Remove the templates of ``owner``'s run (default: this process's), or with ``stale_only``
    those of every run whose process is gone."""

    if not stale_only and not any(LOCK_DIR.glob(f"tpl-{owner or os.getpid()}-*")):
        return  # this run made none (each template has its directory here)

    def doomed(name: str) -> bool:
        match = re.match(r"(?:ca_portal_)?tpl[-_](\d+)[-_]", name)
        if match is None:
            return False
        pid = int(match.group(1))
        return not _pid_alive(pid) if stale_only else pid == (owner or os.getpid())

    if LOCK_DIR.is_dir():
        for path in LOCK_DIR.glob("tpl-*"):
            if doomed(path.name):
                if path.is_dir():
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    path.unlink(missing_ok=True)
    try:
        import psycopg

        with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
            rows = conn.execute("SELECT datname FROM pg_database WHERE datname LIKE 'ca!_portal!_tpl!_%' ESCAPE '!'")
            for name in [row[0] for row in rows]:
                if doomed(name):
                    conn.execute(f'DROP DATABASE IF EXISTS "{name}"')  # type: ignore[arg-type]
    except psycopg.OperationalError:  # PostgreSQL is not there: no templates in it either
        pass


def _drop_stale_templates() -> None:
    drop_templates(stale_only=True)


def _pg_create_from(dbname: str, template: str) -> None:
    """CREATE DATABASE from a template; PostgreSQL refuses while a session is still connected to
    the template (the commands that made it may not have left yet), so retry for a while."""
    import psycopg

    deadline = time.monotonic() + 30
    while True:
        try:
            _pg_admin(f'CREATE DATABASE "{dbname}" TEMPLATE "{template}"')
            return
        except psycopg.errors.ObjectInUse:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def _pg_admin(sql: str, params: tuple[str, ...] = ()) -> None:
    """Run one statement as the PostgreSQL admin; database names here come from token_hex only."""
    import psycopg

    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
        conn.execute(sql, params)  # type: ignore[arg-type]


def _redis_flush(db: int) -> None:
    import redis

    redis.Redis.from_url(f"{REDIS_BASE}/{db}").flushdb()


# --- processes beside the stack: gunicorn, `manage.py serve` ---------------------------------------


_held_ports: dict[int, int] = {}  # port -> lock descriptor, kept for the life of this process


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on and that no other caller of free_port() on this
    machine gets while this process lives (a lock file per port; the server may bind it later)."""
    for _ in range(1000):
        port = random.choice(PORTS)
        if port in _held_ports:
            continue
        fd = _try_lock(f"port-{port}")
        if fd is None:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                os.close(fd)
                continue
        _held_ports[port] = fd
        return port
    raise RuntimeError(f"no free port in {PORTS}")


def wait_healthy(url: str, process: subprocess.Popen[bytes], log: Path, *, timeout: float = START_TIMEOUT) -> None:
    """Until ``url``/healthz answers ok; fails with the log's tail if the process dies or time runs out."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"{url}/healthz", timeout=5) as response:  # noqa: S310 (loopback)
                if b'"status": "ok"' in response.read():
                    return
        except OSError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"{url} did not come up:\n{log.read_text(errors='replace')[-4000:]}")
        time.sleep(0.2)


def wait_for_log(
    log: Path, marker: bytes, process: subprocess.Popen[bytes], *, offset: int = 0, timeout: float = START_TIMEOUT
) -> None:
    """Until ``marker`` appears in ``log`` past ``offset`` (e.g. a Celery worker's "ready."); fails
    with the log's tail if the process dies or time runs out."""
    deadline = time.monotonic() + timeout
    while True:
        with log.open("rb") as handle:
            handle.seek(offset)
            if marker in handle.read():
                return
        if process.poll() is not None or time.monotonic() > deadline:
            state = "exited" if process.poll() is not None else f"not there after {timeout:.0f} s"
            raise AssertionError(f"{marker!r} {state}:\n{log.read_text(errors='replace')[-4000:]}")
        time.sleep(0.2)


def stop_group(process: subprocess.Popen[bytes] | None) -> None:
    """SIGTERM a process started with start_new_session=True and its children; SIGKILL after 15 s."""
    if process is None or process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
