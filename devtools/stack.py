"""A real ca_portal deployment in a temp dir: its own var dir, database and broker, real worker processes.

Two flavours, as in DESIGN.md: ``embedded`` (SQLite + kombu's filesystem broker in the var dir)
and ``services`` (a fresh PostgreSQL database on 127.0.0.1:5432 and a Redis database on
127.0.0.1:6379). Used by the integration tests and by bench/issuance.py.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
PYTHON = sys.executable
BIN = Path(PYTHON).parent
PG_ADMIN_DSN = os.environ.get("CA_PORTAL_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_BASE = os.environ.get("CA_PORTAL_TEST_REDIS", "redis://127.0.0.1:6379")
REDIS_DB = 12
FIXTURES = ROOT / "tests" / "fixtures" / "pki"


class Stack:
    def __init__(
        self,
        workdir: Path,
        flavour: str,
        *,
        ca_cert: str = "ca-rsa2048.crt",
        ca_key: str = "ca-rsa2048.key",
        redis_db: int = REDIS_DB,
        db_prefix: str = "ca_portal_it",
    ):
        """``redis_db``: the Redis database that setup and teardown flush (services flavour). Tests
        that may run beside others (or beside a benchmark) take one of their own."""
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
            k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL", "CA_KEY_PASSPHRASE_FILE"}
        }
        self.env.update(
            DJANGO_SETTINGS_MODULE="ca_portal.settings",
            CA_PORTAL_VAR_DIR=str(self.var),
            SITE_URL="https://ca.example.org",
            PYTHONPATH=str(ROOT),
        )
        self.dbname = ""
        self.redis_db = redis_db
        if flavour == "services":
            self.dbname = f"{db_prefix}_{secrets.token_hex(4)}"
            self.env["DATABASE_URL"] = f"postgres://postgres@127.0.0.1:5432/{self.dbname}"
            self.env["REDIS_URL"] = f"{REDIS_BASE}/{redis_db}"
            self.env["CELERY_VISIBILITY_TIMEOUT"] = "5"

    # --- lifecycle ---------------------------------------------------------------------------
    def setup(self) -> None:
        if self.flavour == "services":
            _pg_admin(f'CREATE DATABASE "{self.dbname}"')
            _redis_flush(self.redis_db)
        self.manage("migrate", "--noinput", "-v0")
        self.manage("import_ca", "--cert", str(FIXTURES / self.ca_cert), "--key", str(FIXTURES / self.ca_key))

    def teardown(self) -> None:
        self.stop_worker()
        if self.flavour == "services":
            _redis_flush(self.redis_db)
            _pg_admin(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
                (self.dbname,),
            )
            _pg_admin(f'DROP DATABASE IF EXISTS "{self.dbname}"')

    def manage(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [PYTHON, str(ROOT / "manage.py"), *args], env=self.env, cwd=ROOT, capture_output=True, text=True
        )
        if check and result.returncode != 0:
            raise AssertionError(f"manage.py {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
        return result

    def driver(self, *args: str) -> Any:
        result = subprocess.run(
            [PYTHON, str(ROOT / "tests" / "integration" / "driver.py"), *args],
            env=self.env,
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
        if result.returncode != 0:
            raise AssertionError(f"driver {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
        return json.loads(result.stdout.strip().splitlines()[-1])

    def start_worker(
        self, *, concurrency: int = 1, failpoints: str = "", queues: str = "signer,render", loglevel: str = "INFO"
    ) -> None:
        env = dict(self.env)
        if failpoints:
            env["CA_PORTAL_FAILPOINTS"] = failpoints
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

    def wait_for(self, predicate: Any, *, timeout: float, interval: float = 0.5) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        state: dict[str, Any] = {}
        while time.monotonic() < deadline:
            state = self.driver("status")
            if predicate(state):
                return state
            time.sleep(interval)
        log = self.worker_log.read_text(errors="replace")[-4000:] if self.worker_log.exists() else ""
        raise AssertionError(f"timed out; last state: {state}\n--- worker log tail ---\n{log}")


def _pg_admin(sql: str, params: tuple[str, ...] = ()) -> None:
    """Run one statement as the PostgreSQL admin; database names here come from token_hex only."""
    import psycopg

    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
        conn.execute(sql, params)  # type: ignore[arg-type]


def _redis_flush(db: int) -> None:
    import redis

    redis.Redis.from_url(f"{REDIS_BASE}/{db}").flushdb()


# --- processes beside the stack: gunicorn, `manage.py serve` ---------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_healthy(url: str, process: subprocess.Popen[bytes], log: Path, *, timeout: float = 30) -> None:
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
