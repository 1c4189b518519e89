"""A deployment of the portal in a temp dir for the backup and role tests: its own var dir and database.

``sqlite`` keeps the embedded database in the var dir; ``postgresql`` gets a fresh database named
``ca_portal_bk_<hex>`` on 127.0.0.1:5432 (dropped by ``drop``). No broker is started: tasks sent
after commit land in the var dir's filesystem queue, where nobody reads them (the tests call the
services themselves, as tests/bundles/conftest.py's ``issue`` does).
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
PYTHON = sys.executable
PG_ADMIN_DSN = os.environ.get("CA_PORTAL_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
PG_HOST = "127.0.0.1:5432"
FIXTURES = ROOT / "tests" / "fixtures" / "pki"
SCENARIO = Path(__file__).resolve().parent / "scenario.py"


def pg_admin(sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """One statement as the PostgreSQL superuser (names here come from token_hex only)."""
    import psycopg

    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
        cursor = conn.execute(sql, params)  # type: ignore[arg-type]
        return cursor.fetchall() if cursor.description else []


def pg_drop_database(name: str) -> None:
    pg_admin("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,))
    pg_admin(f'DROP DATABASE IF EXISTS "{name}"')


class Deployment:
    def __init__(self, workdir: Path, flavour: str, *, name: str = "site") -> None:
        if flavour not in ("sqlite", "postgresql"):
            raise ValueError(flavour)
        self.flavour = flavour
        self.var = workdir / name / "var"
        self.var.mkdir(parents=True)
        drop = {"DATABASE_URL", "REDIS_URL", "CA_KEY_PASSPHRASE_FILE", "DJANGO_SECRET_KEY"}
        drop |= {"CA_PORTAL_CONFIG_TEMPLATES", "CA_AUDIT_CHECKPOINT_FILE"}
        self.env = {k: v for k, v in os.environ.items() if k not in drop}
        self.env.update(
            DJANGO_SETTINGS_MODULE="ca_portal.settings",
            CA_PORTAL_VAR_DIR=str(self.var),
            SITE_URL="https://ca.example.org",
            PYTHONPATH=str(ROOT),
            LOG_LEVEL="WARNING",
        )
        self.dbname = ""
        if flavour == "postgresql":
            self.dbname = f"ca_portal_bk_{secrets.token_hex(4)}"
            pg_admin(f'CREATE DATABASE "{self.dbname}"')
            self.env["DATABASE_URL"] = self.url("postgres")

    def url(self, role: str) -> str:
        return f"postgres://{role}@{PG_HOST}/{self.dbname}"

    def drop(self) -> None:
        if self.dbname:
            pg_drop_database(self.dbname)

    def run(self, args: list[str], *, role: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        env = dict(self.env)
        if role is not None:
            env["DATABASE_URL"] = self.url(role)
        result = subprocess.run(args, env=env, cwd=ROOT, capture_output=True, text=True, timeout=600, check=False)
        if check and result.returncode != 0:
            command = " ".join(args[1:3])
            raise AssertionError(f"{command} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
        return result

    def manage(self, *args: str, role: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.run([PYTHON, str(ROOT / "manage.py"), *args], role=role, check=check)

    def scenario(self, *args: str, role: str | None = None) -> Any:
        """Run tests/ops/scenario.py in this deployment; its last line of output is JSON."""
        result = self.run([PYTHON, str(SCENARIO), *args], role=role)
        return json.loads(result.stdout.strip().splitlines()[-1])

    def set_up(self, *, role: str | None = None) -> None:
        """migrate, then import the fixture CA (its key stored encrypted under a new passphrase file)."""
        self.manage("migrate", "--noinput", "-v0", role=role)
        self.import_ca(role=role)

    def import_ca(self, *, role: str | None = None) -> None:
        cert, key = FIXTURES / "ca-rsa2048.crt", FIXTURES / "ca-rsa2048.key"
        self.manage("import_ca", "--cert", str(cert), "--key", str(key), role=role)
