"""deploy/bin/ca-portal-manage: manage.py as the units run the portal, through systemd-run.

systemd cannot run here, so a stand-in systemd-run on PATH records what it is asked to run.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.deploy.units import DEPLOY, Unit, env_file, tool

WRAPPER = DEPLOY / "bin" / "ca-portal-manage"


def _run(tmp_path: Path, *args: str) -> tuple[int, list[str], str]:
    fake = tmp_path / "bin" / "systemd-run"
    fake.parent.mkdir(exist_ok=True)
    fake.write_text('#!/bin/sh\nfor a in "$@"; do printf "%s\\n" "$a"; done\n')
    fake.chmod(0o755)
    env = dict(os.environ, PATH=f"{fake.parent}:{os.environ['PATH']}")
    result = subprocess.run(
        ["/bin/sh", str(WRAPPER), *args], env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False
    )
    return result.returncode, result.stdout.splitlines(), result.stderr


def test_shellcheck_is_happy() -> None:
    result = subprocess.run(
        [tool("shellcheck", install="shellcheck"), str(WRAPPER)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout


def test_commands_run_as_the_portal_user_without_the_passphrase(tmp_path: Path) -> None:
    code, argv, _ = _run(tmp_path, "createsuperuser", "--username", "carol")
    assert code == 0
    assert argv == [
        "--quiet", "--wait", "--collect", "--pipe", "--uid=ca-portal", "--gid=ca-portal",
        "--property=EnvironmentFile=/etc/ca-portal/ca-portal.env",
        "--property=Environment=CA_PORTAL_VAR_DIR=/var/lib/ca-portal",
        "--property=UnsetEnvironment=CA_KEY_PASSPHRASE_FILE",
        "--property=WorkingDirectory=/opt/ca-portal",
        "--property=UMask=0077",
        "/opt/ca-portal/.venv/bin/python", "/opt/ca-portal/manage.py", "createsuperuser", "--username", "carol",
    ]  # fmt: skip


def test_signer_commands_run_as_the_signer_with_its_key_and_passphrase(tmp_path: Path) -> None:
    code, argv, _ = _run(tmp_path, "--signer", "init_ca", "--common-name", "Example VPN CA")
    assert code == 0
    assert "--uid=ca-portal-signer" in argv
    assert "--property=Environment=CA_PORTAL_VAR_DIR=/var/lib/ca-portal-signer" in argv
    assert "--property=Environment=CA_KEY_PASSPHRASE_FILE=/etc/ca-portal/signer/ca-key-passphrase" in argv
    assert argv[-4:] == ["/opt/ca-portal/manage.py", "init_ca", "--common-name", "Example VPN CA"]


def test_it_gives_each_command_its_units_variables(tmp_path: Path) -> None:
    for flag, unit_name in (["--signer"], "ca-portal-signer.service"), ([], "ca-portal-web.service"):
        unit = Unit.read(DEPLOY / "systemd" / unit_name)
        _, argv, _ = _run(tmp_path, *flag, "check")
        assert f"--uid={unit.last('User')}" in argv
        for key in ("CA_PORTAL_VAR_DIR", "CA_KEY_PASSPHRASE_FILE"):
            if key in unit.environment():
                assert f"--property=Environment={key}={unit.environment()[key]}" in argv
            else:
                assert f"--property=UnsetEnvironment={key}" in argv
                assert not [a for a in argv if a.startswith(f"--property=Environment={key}")]
    assert "CA_PORTAL_VAR_DIR" not in env_file(DEPLOY / "ca-portal.env.example")


def test_it_says_how_to_use_it(tmp_path: Path) -> None:
    code, argv, err = _run(tmp_path, "--signer")
    assert code == 2
    assert argv == []
    assert "usage: ca-portal-manage [--signer] COMMAND" in err
