"""install.sh's new duties: bin/ and its schedules, the gateway's sync token, --iked and --swanctl.

Real bundles of the case study (every renderer), unpacked and installed into a scratch root. Nothing
here may touch the host's schedules: every run either is a dry run, passes --schedule-with none, or
puts stand-ins for crontab and id first on PATH.
"""

from __future__ import annotations

import io
import os
import stat
import subprocess
import zipfile
from pathlib import Path

import pytest

from bundles.archive import build_zip
from bundles.renderers.bundle import finish, render_files
from bundles.renderers.engine import environment
from bundles.renderers.spec import PeerSpec
from devtools.bundlecase import FIXTURES, LAPTOP_PASSPHRASE, client_peer, gateway_peer, laptop_peer, site

TOKEN = "cps_" + "A1b2-C3d4_" * 4 + "xyz"


def unpack(tmp_path: Path, peer: PeerSpec, *, key: bool = False) -> Path:
    files = finish(
        render_files(environment(), site(), peer),
        key_pem=peer.portal_key_pem if key else None,
    )
    with zipfile.ZipFile(io.BytesIO(build_zip(peer.fqdn, files))) as archive:
        archive.extractall(tmp_path / "bundle")
    (tmp_path / "root" / "etc").mkdir(parents=True, exist_ok=True)
    return tmp_path / "bundle" / peer.fqdn


def run(
    bundle: Path, *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["sh", str(bundle / "install.sh"), *args],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        env=env,
        cwd=cwd,
        timeout=120,
    )


def target_of(tmp_path: Path) -> Path:
    return tmp_path / "root" / "etc" / "isakmpd"


def spread(fqdn: str) -> int:
    out = subprocess.run(["cksum"], input=fqdn + "\n", capture_output=True, text=True, check=True).stdout
    return int(out.split()[0])


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def token_file(tmp_path: Path) -> Path:
    path = tmp_path / "sync.token"
    path.write_text(TOKEN + "\n")
    path.chmod(0o600)
    return path


# --- schedules ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("how", "expected"),
    [
        ("cron.d", "would run: write /etc/cron.d/ca-portal-refresh: {m} */6 * * * root {cmd}"),
        ("crontab", "would run: add to root's crontab: {m} */6 * * * {cmd}"),
        (
            "systemd",
            "would run: write /etc/systemd/system/ca-portal-refresh.service and ca-portal-refresh.timer "
            "(every 6h), then systemctl enable --now ca-portal-refresh.timer",
        ),
        ("none", "Not scheduled (--schedule-with none): run {cmd} every 6h, e.g. from cron:\n  {m} */6 * * * {cmd}"),
    ],
)
def test_a_dry_run_shows_what_it_would_schedule(tmp_path: Path, how: str, expected: str) -> None:
    bundle = unpack(tmp_path, client_peer())
    target = target_of(tmp_path)

    result = run(bundle, "--dry-run", "--address", "192.0.2.10", "--schedule-with", how, str(target))

    assert result.returncode == 0, result.stderr
    command = f"{target}/bin/ca-portal-refresh --target {target} --quiet"
    assert expected.format(m=spread("client.example.com") % 60, cmd=command) in result.stdout
    assert f"would run: install -m 0755 bin/ca-portal-refresh {target}/bin/ca-portal-refresh" in result.stdout
    assert not target.exists()


def test_a_daily_refresh_gets_an_hour_of_its_own(tmp_path: Path) -> None:
    bundle = unpack(tmp_path, client_peer())
    target = target_of(tmp_path)

    result = run(
        bundle,
        "--dry-run",
        "--address",
        "192.0.2.10",
        "--schedule-with",
        "cron.d",
        "--refresh-every",
        "24",
        str(target),
    )

    n = spread("client.example.com")
    assert result.returncode == 0, result.stderr
    assert f": {n % 60} {n // 60 % 24} * * * root {target}/bin/ca-portal-refresh" in result.stdout


def test_no_refresh_schedules_nothing(tmp_path: Path) -> None:
    bundle = unpack(tmp_path, client_peer())

    result = run(
        bundle,
        "--dry-run",
        "--address",
        "192.0.2.10",
        "--no-refresh",
        "--schedule-with",
        "cron.d",
        str(target_of(tmp_path)),
    )

    assert result.returncode == 0, result.stderr
    assert "cron.d" not in result.stdout
    assert "Not scheduled" not in result.stdout
    assert "install -m 0755 bin/ca-portal-refresh" in result.stdout  # the script is still installed


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--refresh-every", "0"], "--refresh-every takes"),
        (["--refresh-every", "25"], "--refresh-every takes"),
        (["--refresh-every", "6h"], "--refresh-every takes"),
        (["--refresh-every", "06"], "--refresh-every takes"),
        (["--sync-every", "61"], "--sync-every takes"),
        (["--schedule-with", "anacron"], "--schedule-with takes"),
        (["--refresh-every"], "needs a value"),
    ],
)
def test_it_refuses_bad_schedules(tmp_path: Path, args: list[str], message: str) -> None:
    bundle = unpack(tmp_path, client_peer())
    result = run(bundle, "--dry-run", "--address", "192.0.2.10", str(target_of(tmp_path)), *args)
    assert result.returncode == 1
    assert message in result.stderr


def _stand_ins(tmp_path: Path, *, uid: int) -> tuple[dict[str, str], Path]:
    """``crontab`` that keeps root's crontab in a file, and ``id`` that says who we are."""
    stubs = tmp_path / "stubs"
    stubs.mkdir()
    table = tmp_path / "crontab"
    table.write_text("MAILTO=root\n17 3 * * * /usr/local/bin/backup\n")
    (stubs / "crontab").write_text(
        f"#!/bin/sh\ncase $1 in\n-l) cat {table} ;;\n"
        f"-) cat > {table}.new && mv {table}.new {table} ;;\n*) exit 1 ;;\nesac\n"
    )
    (stubs / "id").write_text(f"#!/bin/sh\necho {uid}\n")
    for name in ("crontab", "id"):
        (stubs / name).chmod(0o755)
    return {**os.environ, "PATH": f"{stubs}{os.pathsep}{os.environ['PATH']}"}, table


def test_it_schedules_in_roots_crontab_once(tmp_path: Path, token_file: Path) -> None:
    bundle = unpack(tmp_path, gateway_peer())
    target = target_of(tmp_path)
    env, table = _stand_ins(tmp_path, uid=0)
    args = ("--schedule-with", "crontab", "--sync-token-file", str(token_file), str(target))

    first = run(bundle, *args, env=env)
    again = run(bundle, "--force", *args, env=env)

    assert first.returncode == 0, first.stderr
    assert again.returncode == 0, again.stderr
    n = spread("www.example.com") % 60
    assert table.read_text() == (
        "MAILTO=root\n"
        "17 3 * * * /usr/local/bin/backup\n"
        f"{n} */6 * * * {target}/bin/ca-portal-refresh --target {target} --quiet\n"
        f"*/5 * * * * {target}/bin/ca-portal-sync --target {target} --quiet\n"
    )


def test_without_root_it_installs_but_schedules_nothing(tmp_path: Path) -> None:
    bundle = unpack(tmp_path, client_peer())
    env, table = _stand_ins(tmp_path, uid=1000)
    before = table.read_text()

    result = run(bundle, "--address", "192.0.2.10", "--schedule-with", "crontab", str(target_of(tmp_path)), env=env)

    assert result.returncode == 0, result.stderr
    assert "not running as root, so nothing is scheduled" in result.stderr
    assert "Not scheduled" in result.stdout
    assert table.read_text() == before
    assert mode(target_of(tmp_path) / "bin" / "ca-portal-refresh") == 0o755


# --- the gateway's sync token ---------------------------------------------------------------


def test_the_gateway_keeps_its_sync_token_private(tmp_path: Path, token_file: Path) -> None:
    bundle = unpack(tmp_path, gateway_peer())
    target = target_of(tmp_path)

    dry = run(bundle, "--dry-run", "--schedule-with", "cron.d", "--sync-token-file", str(token_file), str(target))
    real = run(bundle, "--schedule-with", "none", "--sync-token-file", str(token_file), str(target))

    assert dry.returncode == 0, dry.stderr
    assert "would run: write /etc/cron.d/ca-portal-sync: */5 * * * * root" in dry.stdout
    assert real.returncode == 0, real.stderr
    stored = target / "private" / "ca-portal-sync.token"
    assert stored.read_text() == TOKEN + "\n"
    assert mode(stored) == 0o600
    assert mode(target / "private") == 0o700
    assert mode(target / "bin" / "ca-portal-sync") == 0o755
    for output in (dry.stdout, dry.stderr, real.stdout, real.stderr):
        assert TOKEN not in output
    assert f"every 5min, e.g. from cron:\n  */5 * * * * {target}/bin/ca-portal-sync" in real.stdout


def test_a_client_bundle_takes_no_sync_token(tmp_path: Path, token_file: Path) -> None:
    bundle = unpack(tmp_path, client_peer())
    result = run(
        bundle, "--dry-run", "--address", "192.0.2.10", "--sync-token-file", str(token_file), str(target_of(tmp_path))
    )
    assert result.returncode == 1
    assert "--sync-token-file is for the gateway's bundle" in result.stderr


@pytest.mark.parametrize("content", ["", "not a token!\n", "$(touch PWNED)\n"])
def test_it_refuses_a_file_that_holds_no_token(tmp_path: Path, content: str) -> None:
    bundle = unpack(tmp_path, gateway_peer())
    bad = tmp_path / "bad.token"
    bad.write_text(content)
    result = run(bundle, "--dry-run", "--sync-token-file", str(bad), str(target_of(tmp_path)), cwd=tmp_path)
    assert result.returncode == 1
    assert "does not hold a sync token" in result.stderr
    assert not (tmp_path / "PWNED").exists()


# --- iked and strongSwan ----------------------------------------------------------------------


def test_it_installs_the_iked_and_strongswan_files_beside_the_target(tmp_path: Path) -> None:
    peer = laptop_peer()
    bundle = unpack(tmp_path, peer, key=True)
    passfile = tmp_path / "pass"
    passfile.write_text(LAPTOP_PASSPHRASE + "\n")
    target = target_of(tmp_path)
    etc = target.parent
    args = ("--address", "192.0.2.10", "--passphrase-file", str(passfile), "--schedule-with", "none")

    result = run(bundle, *args, "--iked", "--swanctl", str(target))

    assert result.returncode == 0, result.stderr
    expected = {
        etc / "iked.conf": 0o600,
        etc / "iked" / "ca" / "ca.crt": 0o644,
        etc / "iked" / "certs" / "laptop.example.com.crt": 0o644,
        etc / "iked" / "private" / "local.key": 0o600,
        etc / "iked" / "private": 0o700,
        etc / "swanctl" / "swanctl.conf": 0o600,
        etc / "swanctl" / "x509ca" / "ca.crt": 0o644,
        etc / "swanctl" / "x509" / "laptop.example.com.crt": 0o644,
        etc / "swanctl" / "private" / "local.key": 0o600,
        etc / "swanctl" / "private": 0o700,
    }
    assert {str(p): f"{mode(p):04o}" for p in expected} == {str(p): f"{m:04o}" for p, m in expected.items()}
    assert (etc / "iked.conf").read_text() == (bundle / "iked" / "iked.conf").read_text()
    key = (target / "private" / "local.key").read_bytes()
    assert (etc / "iked" / "private" / "local.key").read_bytes() == key
    assert (etc / "swanctl" / "private" / "local.key").read_bytes() == key

    again = run(bundle, *args, "--iked", str(target))
    assert again.returncode == 1
    assert f"{etc}/iked.conf" in again.stderr  # never overwritten without --force


def test_iked_without_a_key_is_told_where_to_put_it(tmp_path: Path) -> None:
    bundle = unpack(tmp_path, client_peer())
    result = run(bundle, "--address", "192.0.2.10", "--schedule-with", "none", "--iked", str(target_of(tmp_path)))
    assert result.returncode == 0, result.stderr
    assert (
        f"no private key for iked yet: install -m 0600 /path/to/your.key {target_of(tmp_path).parent}/iked"
        in result.stderr
    )


def test_an_existing_iked_key_is_never_replaced(tmp_path: Path) -> None:
    bundle = unpack(tmp_path, client_peer())
    target = target_of(tmp_path)
    (target / "private").mkdir(parents=True, mode=0o700)
    (target / "private" / "local.key").write_bytes((FIXTURES / "client.example.com.key").read_bytes())
    (target / "private" / "local.key").chmod(0o600)
    iked_key = target.parent / "iked" / "private" / "local.key"
    iked_key.parent.mkdir(parents=True, mode=0o700)
    iked_key.write_text("another key\n")

    result = run(bundle, "--address", "192.0.2.10", "--schedule-with", "none", "--iked", str(target))

    assert result.returncode == 0, result.stderr
    assert iked_key.read_text() == "another key\n"
    assert "differs from" in result.stderr
