"""Reading deploy/: the systemd units, the environment file, and running a unit's command here.

The units name production paths (/opt/ca-portal, /var/lib/ca-portal, ...). ``Layout`` maps each of
them to a directory of a test, so a test can run the very command line, environment and
system-call sandbox a unit declares (tests/deploy/sandbox.py), against a real database and broker.
"""

from __future__ import annotations

import os
import shlex
import shutil
import socket
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn

import pytest

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
UNITS = DEPLOY / "systemd"
PYTHON = sys.executable
BIN = Path(PYTHON).parent
SANDBOX = Path(__file__).with_name("sandbox.py")


def unavailable(reason: str) -> NoReturn:
    """Skip, or fail when CI promised the tool (CA_PORTAL_REQUIRE_TOOLS=1), as tests/unit/bundles do."""
    if os.environ.get("CA_PORTAL_REQUIRE_TOOLS") == "1":
        pytest.fail(f"{reason} and CA_PORTAL_REQUIRE_TOOLS=1")
    pytest.skip(reason)


def tool(name: str, *candidates: str, install: str) -> str:
    found = shutil.which(name) or next((c for c in candidates if os.access(c, os.X_OK)), None)
    if found is None:
        unavailable(f"{name} is not installed (apt-get install {install})")
    return found


@dataclass(frozen=True)
class Unit:
    path: Path
    sections: dict[str, dict[str, list[str]]]

    @classmethod
    def read(cls, path: Path) -> Unit:
        sections: dict[str, dict[str, list[str]]] = {}
        current: dict[str, list[str]] = {}
        for raw in path.read_text().splitlines():
            line = raw.strip()
            if not line or line.startswith(("#", ";")):
                continue
            if line.startswith("[") and line.endswith("]"):
                current = sections.setdefault(line[1:-1], {})
                continue
            key, _, value = line.partition("=")
            current.setdefault(key.strip(), []).append(value.strip())
        return cls(path, sections)

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def service(self) -> dict[str, list[str]]:
        return self.sections.get("Service", {})

    def last(self, key: str, default: str = "") -> str:
        values = self.service.get(key)
        return values[-1] if values else default

    def environment(self) -> dict[str, str]:
        """The unit's Environment= lines (quoted assignments as systemd splits them)."""
        env: dict[str, str] = {}
        for line in self.service.get("Environment", []):
            for assignment in shlex.split(line):
                key, _, value = assignment.partition("=")
                env[key] = value
        return env

    def exec_lines(self) -> list[str]:
        return [line for key in ("ExecStartPre", "ExecStart", "ExecReload") for line in self.service.get(key, [])]


def services() -> list[Unit]:
    return [Unit.read(path) for path in sorted(UNITS.glob("*.service"))]


def all_units() -> list[Path]:
    return sorted(p for p in UNITS.iterdir() if p.suffix in {".service", ".socket", ".target"})


def env_file(path: Path) -> dict[str, str]:
    """KEY=value lines of an EnvironmentFile (the subset of its syntax deploy/ uses)."""
    env = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            key, sep, value = line.partition("=")
            assert sep, f"{path}: not KEY=value: {raw!r}"
            env[key] = value
    return env


def system_users() -> dict[str, str]:
    """deploy/sysusers.d: user name -> home directory."""
    users = {}
    for raw in (DEPLOY / "sysusers.d" / "ca-portal.conf").read_text().splitlines():
        if raw.startswith("u "):
            fields = shlex.split(raw)
            users[fields[1]] = fields[4]
    return users


@dataclass
class Layout:
    """Where this test keeps what a unit expects at a production path."""

    code: Path = ROOT
    venv_bin: Path = BIN
    paths: dict[str, Path] = field(default_factory=dict)

    def map(self, text: str) -> str:
        text = text.replace("/opt/ca-portal/.venv/bin", str(self.venv_bin)).replace("/opt/ca-portal", str(self.code))
        for production, here in sorted(self.paths.items(), key=lambda item: -len(item[0])):
            text = text.replace(production, str(here))
        return text.replace("%H", socket.gethostname())

    def argv(self, unit: Unit) -> list[str]:
        lines = unit.service["ExecStart"]
        assert len(lines) == 1, f"{unit.name}: one ExecStart"
        return [self.map(arg) for arg in shlex.split(lines[0])]

    def env(self, unit: Unit, environment_file: dict[str, str]) -> dict[str, str]:
        """What systemd would give the command: a clean environment, the file, the unit's own lines."""
        user = unit.last("User")
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8", "USER": user, "LOGNAME": user}
        env["HOME"] = self.map(system_users()[user])  # systemd sets HOME to User='s home
        env.update({k: self.map(v) for k, v in unit.environment().items()})
        env.update(environment_file)  # EnvironmentFile= overrides Environment= (systemd.exec(5))
        for name in unit.last("UnsetEnvironment").split():
            env.pop(name, None)
        return env

    def popen(
        self,
        unit: Unit,
        environment_file: dict[str, str],
        log: Path,
        *,
        listen_fd: int | None = None,
    ) -> subprocess.Popen[bytes]:
        """Start the unit's ExecStart in its sandbox, in a process group of its own."""
        wrapper = [PYTHON, str(SANDBOX), str(unit.path)]
        if listen_fd is not None:
            wrapper += ["--listen-fd", str(listen_fd)]
        if unit.last("PrivateNetwork") == "yes" and os.geteuid() == 0 and shutil.which("unshare"):
            wrapper = ["unshare", "--net", *wrapper]  # a network namespace with nothing in it, as systemd makes
        cwd = self.map(unit.last("WorkingDirectory", "/"))
        return subprocess.Popen(
            [*wrapper, "--", *self.argv(unit)],
            env=self.env(unit, environment_file),
            cwd=cwd,
            stdout=log.open("ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
            pass_fds=(listen_fd,) if listen_fd is not None else (),
        )
