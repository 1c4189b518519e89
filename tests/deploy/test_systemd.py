"""deploy/systemd, deploy/sysusers.d, deploy/tmpfiles.d: checked with systemd's own tools.

A scratch root is laid out as docs/deploy.md installs the portal: the users made by
systemd-sysusers from deploy/sysusers.d, the directories made by systemd-tmpfiles from
deploy/tmpfiles.d, the units in /etc/systemd/system, the environment file, and the programs the
units start (copied from this checkout's venv, at /opt/ca-portal/.venv/bin). Then:

- ``systemd-analyze verify`` accepts every unit with no complaint at all (it exits 0 even for an
  unknown key, so its output must be empty too);
- ``systemd-analyze security --offline=yes`` scores every service under its threshold (THRESHOLDS;
  the scale is systemd's, 0.0 to 10.0, lower is better);
- the units, users and directories agree with one another: only the signer's user can read the key
  directory and the passphrase, only the signer unit consumes the signer queue or names the
  passphrase, and every service carries the same hardening.

Skips without systemd-analyze (or systemd-sysusers/-tmpfiles), unless CA_PORTAL_REQUIRE_TOOLS=1.
"""

from __future__ import annotations

import json
import re
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from tests.deploy.units import BIN, DEPLOY, ROOT, UNITS, Unit, all_units, env_file, services, tool

# Exposure scores measured with systemd 252 (Debian 12): signer 0.9, web/render/beat/migrate 0.9,
# static 0.2. The thresholds leave a little room for another systemd's weights, and none for
# dropping a whole class of protection (e.g. the system-call filter alone is worth more than 1.0).
THRESHOLDS = {
    "ca-portal-signer.service": 1.2,
    "ca-portal-web.service": 1.2,
    "ca-portal-render.service": 1.2,
    "ca-portal-beat.service": 1.2,
    "ca-portal-migrate.service": 1.2,
    "ca-portal-static.service": 0.5,
}

# Every service sets these, with these values (the exceptions are named in EXCEPTIONS).
HARDENING = {
    "NoNewPrivileges": "yes",
    "CapabilityBoundingSet": "",
    "AmbientCapabilities": "",
    "ProtectSystem": "strict",
    "ProtectHome": "yes",
    "PrivateTmp": "yes",
    "PrivateDevices": "yes",
    "PrivateUsers": "yes",
    "PrivateMounts": "yes",
    "ProtectProc": "invisible",
    "ProcSubset": "pid",
    "ProtectHostname": "yes",
    "ProtectClock": "yes",
    "ProtectKernelTunables": "yes",
    "ProtectKernelModules": "yes",
    "ProtectKernelLogs": "yes",
    "ProtectControlGroups": "yes",
    "RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6",
    "IPAddressDeny": "any",
    "IPAddressAllow": "localhost",
    "RestrictNamespaces": "yes",
    "RestrictRealtime": "yes",
    "RestrictSUIDSGID": "yes",
    "LockPersonality": "yes",
    "MemoryDenyWriteExecute": "yes",
    "RemoveIPC": "yes",
    "KeyringMode": "private",
    "DevicePolicy": "closed",
    "SystemCallArchitectures": "native",
    "SystemCallErrorNumber": "EPERM",
    "UMask": "0077",
}
EXCEPTIONS = {
    # collectstatic: nginx must read what it writes, and it needs no network at all.
    "ca-portal-static.service": {"UMask": "0022", "RestrictAddressFamilies": "AF_UNIX", "IPAddressAllow": None},
}

SIGNER = "ca-portal-signer.service"


def _analyze() -> str:
    return tool("systemd-analyze", install="systemd")


def _system_units_dir() -> Path:
    for candidate in (Path("/usr/lib/systemd/system"), Path("/lib/systemd/system")):
        if (candidate / "sysinit.target").exists():
            return candidate
    pytest.fail("systemd-analyze is installed but systemd's own units (sysinit.target) are not")


@pytest.fixture(scope="module")
def scratch_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A root file system laid out as docs/deploy.md installs the portal."""
    _analyze()
    sysusers = tool("systemd-sysusers", install="systemd")
    tmpfiles = tool("systemd-tmpfiles", install="systemd")
    root = tmp_path_factory.mktemp("root")
    # systemd's own units: verify loads the units ours are ordered against (sysinit.target, ...).
    shutil.copytree(_system_units_dir(), root / "usr/lib/systemd/system", symlinks=True)
    for folder, tool_path in (("sysusers.d", sysusers), ("tmpfiles.d", tmpfiles)):
        (root / "etc" / folder).mkdir(parents=True)
        shutil.copy(DEPLOY / folder / "ca-portal.conf", root / "etc" / folder / "ca-portal.conf")
        args = [tool_path, f"--root={root}"] + (["--create"] if folder == "tmpfiles.d" else [])
        result = subprocess.run(args, capture_output=True, text=True, check=False)
        assert result.returncode == 0, f"{folder}: {result.stderr}"
        assert "ignoring" not in result.stderr.lower(), f"{folder}: {result.stderr}"
    (root / "etc/systemd/system").mkdir(parents=True)
    for unit in all_units():
        shutil.copy(unit, root / "etc/systemd/system" / unit.name)
    env = root / "etc/ca-portal/ca-portal.env"
    shutil.copy(DEPLOY / "ca-portal.env.example", env)
    env.chmod(0o600)
    # The programs the units start: this checkout's venv at /opt/ca-portal/.venv, the rest from this host.
    for unit in services():
        for line in unit.exec_lines():
            program = line.lstrip("-@:+!").split()[0]
            target = root / program.lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            if program.startswith("/opt/ca-portal/.venv/bin/"):
                source = BIN / Path(program).name
            else:
                source = Path(program)
            assert source.exists(), f"{unit.name} starts {program}, which {source} should provide"
            shutil.copy(source, target)
    (root / "opt/ca-portal/manage.py").write_bytes((ROOT / "manage.py").read_bytes())
    return root


def _passwd(root: Path) -> dict[str, int]:
    return {line.split(":")[0]: int(line.split(":")[2]) for line in (root / "etc/passwd").read_text().splitlines()}


# --- systemd-analyze verify ---------------------------------------------------------------------


@pytest.mark.parametrize("unit", [p.name for p in all_units()])
def test_systemd_analyze_verify_accepts_the_unit_without_a_word(scratch_root: Path, unit: str) -> None:
    result = subprocess.run(
        [_analyze(), "verify", f"--root={scratch_root}", "--man=no", "--generators=no", unit],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout + result.stderr == "", "verify warns but exits 0 for unknown or bad settings"


def test_verify_would_catch_a_broken_unit(scratch_root: Path, tmp_path: Path) -> None:
    """The check above is not vacuous: a misspelt setting and a missing program are both reported."""
    broken = (UNITS / SIGNER).read_text().replace("Restart=on-failure", "Restart=on-failur\nRestartSecs=5")
    root = scratch_root / "etc/systemd/system"
    (root / "ca-portal-broken.service").write_text(broken.replace("/.venv/bin/celery", "/.venv/bin/celeryy"))
    try:
        result = subprocess.run(
            [_analyze(), "verify", f"--root={scratch_root}", "--man=no", "--generators=no", "ca-portal-broken.service"],
            capture_output=True,
            text=True,
            check=False,
        )
    finally:
        (root / "ca-portal-broken.service").unlink()
    assert "on-failur" in result.stderr
    assert "RestartSecs" in result.stderr
    assert "celeryy is not executable" in result.stderr


# --- systemd-analyze security ---------------------------------------------------------------------


def _exposure(root: Path, unit: str, threshold: float) -> tuple[int, float, str]:
    result = subprocess.run(
        [_analyze(), "security", "--offline=yes", f"--root={root}", f"--threshold={round(threshold * 10)}", unit],
        capture_output=True,
        text=True,
        check=False,
    )
    found = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", result.stdout + result.stderr)
    assert found, result.stdout + result.stderr
    return result.returncode, float(found.group(1)), result.stdout


def test_every_service_has_a_threshold() -> None:
    assert sorted(THRESHOLDS) == sorted(unit.name for unit in services())


@pytest.mark.parametrize("unit", sorted(THRESHOLDS))
def test_exposure_is_under_the_threshold(scratch_root: Path, unit: str) -> None:
    code, exposure, table = _exposure(scratch_root, unit, THRESHOLDS[unit])
    assert exposure <= THRESHOLDS[unit], table
    assert code == 0, table  # systemd-analyze's own --threshold agrees


def test_the_signer_meets_the_issue_s_bar(scratch_root: Path) -> None:
    """Issue 13 asks for an exposure of at most 2.5 for the signer; ours is well under it."""
    code, exposure, table = _exposure(scratch_root, SIGNER, 2.5)
    assert code == 0, table
    assert exposure <= 2.5


def test_a_prefix_drop_in_reaches_every_service(scratch_root: Path) -> None:
    """docs/deploy.md ("Split") adds the database's and the broker's addresses to every unit at once
    with /etc/systemd/system/ca-portal-.service.d/network.conf; systemd applies it to each service."""
    drop_in = scratch_root / "etc/systemd/system/ca-portal-.service.d"
    drop_in.mkdir()
    (drop_in / "network.conf").write_text("[Service]\nIPAddressAllow=192.0.2.10 192.0.2.11\n")
    try:
        for unit in THRESHOLDS:
            if unit == "ca-portal-static.service":
                continue  # no network at all
            out = subprocess.run(
                [_analyze(), "security", "--offline=yes", f"--root={scratch_root}", "--json=short", unit],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            rows = {row["name"]: row for row in json.loads(out)}
            assert "non-localhost" in rows["IPAddressDeny="]["description"], unit
    finally:
        shutil.rmtree(drop_in)


# --- the units, users and directories agree --------------------------------------------------------


@pytest.mark.parametrize("unit", [u.name for u in services()])
def test_every_service_carries_the_hardening(unit: str) -> None:
    service = Unit.read(UNITS / unit)
    expected = dict(HARDENING)
    expected.update(EXCEPTIONS.get(unit, {}))
    for key, value in expected.items():
        if value is None:
            assert key not in service.service, f"{unit}: {key}"
        else:
            assert service.last(key, "<unset>") == value, f"{unit}: {key}"
    assert service.service["SystemCallFilter"] == ["@system-service", "~@privileged @resources"]
    assert service.last("User") not in ("", "root")
    assert service.last("Group") == service.last("User")
    assert "ReadWritePaths" not in service.service or unit == "ca-portal-static.service"
    if service.last("Type") != "oneshot":
        assert service.last("Restart") == "on-failure", unit
    assert service.last("EnvironmentFile") == "/etc/ca-portal/ca-portal.env"


def test_only_the_signer_can_sign() -> None:
    units = {u.name: u for u in services()}
    signer = units.pop(SIGNER)
    assert "-Q signer " in signer.last("ExecStart")
    assert signer.environment()["CA_KEY_PASSPHRASE_FILE"] == "/etc/ca-portal/signer/ca-key-passphrase"
    assert signer.environment()["CA_PORTAL_VAR_DIR"] == "/var/lib/ca-portal-signer"  # CA_KEY_DIR is <var>/keys
    assert signer.last("User") == "ca-portal-signer"
    for name, unit in units.items():
        assert unit.last("User") != "ca-portal-signer", name
        queues = re.search(r" -Q (\S+)", unit.last("ExecStart"))
        assert queues is None or "signer" not in queues.group(1).split(","), name
        assert "CA_KEY_PASSPHRASE_FILE" not in unit.environment(), name
        assert "CA_KEY_PASSPHRASE_FILE" in unit.last("UnsetEnvironment").split(), name
        assert unit.last("InaccessiblePaths").split() == ["-/var/lib/ca-portal-signer", "-/etc/ca-portal/signer"]
    assert "-Q render " in units["ca-portal-render.service"].last("ExecStart")
    # The environment file must not undo the units' choices (EnvironmentFile= overrides Environment=).
    shared = env_file(DEPLOY / "ca-portal.env.example")
    assert not {"CA_PORTAL_VAR_DIR", "CA_KEY_PASSPHRASE_FILE"} & set(shared)


def test_only_the_signer_user_can_reach_the_key_and_its_passphrase(scratch_root: Path) -> None:
    users = _passwd(scratch_root)
    signer, portal = users["ca-portal-signer"], users["ca-portal"]
    assert signer != portal
    for path in ("var/lib/ca-portal-signer", "var/lib/ca-portal-signer/keys", "etc/ca-portal/signer"):
        info = (scratch_root / path).stat()
        assert (info.st_uid, stat.S_IMODE(info.st_mode)) == (signer, 0o700), path
    for path in ("var/lib/ca-portal", "var/lib/ca-portal/configs"):
        info = (scratch_root / path).stat()
        assert (info.st_uid, stat.S_IMODE(info.st_mode)) == (portal, 0o750), path
    static = (scratch_root / "var/www/ca-portal/static").stat()
    assert (static.st_uid, stat.S_IMODE(static.st_mode)) == (portal, 0o755), "nginx reads it, collectstatic writes it"
    env = (scratch_root / "etc/ca-portal/ca-portal.env").stat()
    assert (env.st_uid, stat.S_IMODE(env.st_mode)) == (0, 0o600), "read by systemd (root), never by a service user"


def test_every_path_a_unit_names_exists_in_the_layout(scratch_root: Path) -> None:
    users = _passwd(scratch_root)
    for unit in services():
        assert unit.last("User") in users, unit.name
        named = [unit.last("WorkingDirectory"), unit.last("EnvironmentFile")]
        named += unit.last("ReadWritePaths").split()
        named += [v for k, v in unit.environment().items() if v.startswith("/") and k != "CA_PORTAL_VAR_DIR"]
        if "CA_KEY_PASSPHRASE_FILE" in unit.environment():  # init_ca/import_ca make the file,
            named.remove(unit.environment()["CA_KEY_PASSPHRASE_FILE"])  # in the directory tmpfiles makes
            named.append(str(Path(unit.environment()["CA_KEY_PASSPHRASE_FILE"]).parent))
        for path in filter(None, named):
            assert (scratch_root / path.lstrip("/")).exists(), f"{unit.name}: {path}"
        var_dir = unit.environment()["CA_PORTAL_VAR_DIR"]
        state = unit.last("StateDirectory")
        assert (scratch_root / var_dir.lstrip("/")).is_dir() or var_dir == f"/var/lib/{state}", unit.name
    shared = env_file(DEPLOY / "ca-portal.env.example")
    assert (scratch_root / shared["CA_PORTAL_STATIC_ROOT"].lstrip("/")).is_dir()
    nginx_site = (DEPLOY / "nginx/ca-portal.conf").read_text()
    assert f"alias {shared['CA_PORTAL_STATIC_ROOT']}/;" in nginx_site
    socket_unit = Unit.read(UNITS / "ca-portal-web.socket")
    assert f"server unix:{socket_unit.sections['Socket']['ListenStream'][0]} " in nginx_site


def test_the_environment_file_is_what_production_needs() -> None:
    env = env_file(DEPLOY / "ca-portal.env.example")
    assert env["BEHIND_TLS_PROXY"] == "1"
    assert env["DEBUG"] == "0"
    assert env["SITE_URL"].startswith("https://")
    assert env["DATABASE_URL"].startswith("postgres://")
    assert env["REDIS_URL"].startswith("redis://")
    assert len(env["DJANGO_SECRET_KEY"]) < 32, "the placeholder must stop the portal, not run it"
