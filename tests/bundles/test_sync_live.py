"""A gateway that syncs its own files (issue 16 §2): bin/ca-portal-sync against the portal.

The gateway's real bundle, carrying the live test server's URL, is installed with install.sh
--sync-token-file into a scratch root; ca-portal-sync then picks up the version made when a client
is issued, is answered 304 in between, refuses a version whose certificate does not match the
gateway's key, and stops when the token is revoked.
"""

from __future__ import annotations

import io
import os
import shutil
import stat
import subprocess
import zipfile
from pathlib import Path
from typing import Any

import pytest
from django.test import Client

from authority.revocation import crl_publish
from bundles import services, sync
from enrollment.models import Peer
from tests.bundles.conftest import issue, render
from tests.conftest import fixture_bytes, login

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)
NO_SCHEDULE = ("--schedule-with", "none")  # never the host's cron or systemd


@pytest.fixture
def portal(live_server: Any, settings: Any) -> str:
    """Bundles rendered from now on name the live server as the portal."""
    settings.SITE_URL = live_server.url
    settings.CA_CRL_URL = f"{live_server.url}/crl.der"
    return str(live_server.url)


def install_gateway(tmp_path: Path, gateway: Peer, admin: Any, token: str) -> Path:
    render(gateway)
    download = services.bundle_download(peer_id=gateway.pk, user=admin, address=None, via="page")
    with zipfile.ZipFile(io.BytesIO(download.data)) as archive:
        archive.extractall(tmp_path / "bundle")
    token_file = tmp_path / "sync.token"
    token_file.write_text(token + "\n")
    target = tmp_path / "root" / "etc" / "isakmpd"
    target.parent.mkdir(parents=True)
    result = subprocess.run(
        [
            "sh",
            str(tmp_path / "bundle" / gateway.fqdn / "install.sh"),
            *NO_SCHEDULE,
            "--sync-token-file",
            str(token_file),
            str(target),
        ],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    key = target / "private" / "local.key"  # the gateway's own key (its CSR was made from it)
    key.write_bytes(fixture_bytes("client-rsa2048.key"))
    key.chmod(0o600)
    return target


def sync_now(target: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["sh", str(target / "bin" / "ca-portal-sync"), "--no-reload"],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        env=env,
        timeout=180,
    )


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_the_gateway_picks_up_a_new_version_by_itself(
    portal: str, ca: Any, gateway: Peer, owner: Any, admin: Any, second_admin: Any, sent_tasks: Any, tmp_path: Path
) -> None:
    crl_publish()
    token, row = sync.sync_token_create(actor=admin)
    target = install_gateway(tmp_path, gateway, admin, token)
    assert stat.S_IMODE((target / "private" / "ca-portal-sync.token").stat().st_mode) == 0o600

    first = sync_now(target)  # it knows no version yet: fetches the current one and installs it again
    quiet = sync_now(target)

    assert first.returncode == 0, first.stderr
    assert "installed version 1" in first.stdout
    assert quiet.returncode == 0, quiet.stderr
    assert "up to date (version 1)" in quiet.stdout

    issue(owner, second_admin, "laptop.example.com")  # a new client: the gateway's policy must name it
    render(gateway)
    picked = sync_now(target)

    assert picked.returncode == 0, picked.stderr
    assert "installed version 2" in picked.stdout
    assert "laptop.example.com" in (target / "isakmpd.policy").read_text()
    conf = (target / "isakmpd.conf").read_text()
    assert "@@MY_IP_ADDRESS@@" not in conf
    assert "192.0.34.72" in conf
    for name in ("isakmpd.conf", "isakmpd.policy"):
        assert stat.S_IMODE((target / name).stat().st_mode) == 0o600
    assert (target / "private" / "local.key").read_bytes() == fixture_bytes("client-rsa2048.key")

    assert "up to date (version 2)" in sync_now(target).stdout
    row.refresh_from_db()
    assert row.running_version == 2
    client = Client()
    login(client, admin)
    page = client.get("/bundles/gateway/").content.decode()
    assert "it runs version 2 (sync)" in page


def test_it_refuses_a_version_for_another_key_and_stops_with_a_revoked_token(
    portal: str, ca: Any, gateway: Peer, owner: Any, admin: Any, second_admin: Any, sent_tasks: Any, tmp_path: Path
) -> None:
    crl_publish()
    token, _ = sync.sync_token_create(actor=admin)
    target = install_gateway(tmp_path, gateway, admin, token)
    assert sync_now(target).returncode == 0
    (target / "private" / "local.key").write_bytes(fixture_bytes("not-a-ca.key"))  # a key the certificate is not for
    issue(owner, second_admin, "laptop.example.com")
    render(gateway)
    before = snapshot(target)

    refused = sync_now(target)
    still = sync_now(target)

    assert refused.returncode == 1
    assert "refused version 2: its certificate does not match this gateway's key" in refused.stderr
    assert still.returncode == 1
    assert "still refusing" in still.stderr
    after = snapshot(target)
    after.pop("private/ca-portal-sync.refused")
    assert after == before

    sync.sync_token_revoke(actor=admin)
    revoked = sync_now(target)
    assert revoked.returncode == 1
    assert "the portal refused the token" in revoked.stderr


def test_it_syncs_with_wget_where_there_is_no_curl(
    portal: str, ca: Any, gateway: Peer, owner: Any, admin: Any, second_admin: Any, sent_tasks: Any, tmp_path: Path
) -> None:
    if shutil.which("wget") is None:
        pytest.skip("wget is not installed")
    bindir = tmp_path / "no-curl"
    bindir.mkdir()
    for directory in ("/usr/local/bin", "/usr/bin", "/bin", "/usr/sbin", "/sbin"):
        for entry in Path(directory).iterdir() if Path(directory).is_dir() else ():
            if entry.name != "curl" and not os.path.lexists(bindir / entry.name):
                (bindir / entry.name).symlink_to(entry)
    env = {**os.environ, "PATH": str(bindir)}
    crl_publish()
    token, _ = sync.sync_token_create(actor=admin)
    target = install_gateway(tmp_path, gateway, admin, token)

    first = sync_now(target, env)
    quiet = sync_now(target, env)
    issue(owner, second_admin, "laptop.example.com")
    render(gateway)
    picked = sync_now(target, env)

    assert first.returncode == 0, first.stderr
    assert "up to date (version 1)" in quiet.stdout, quiet.stderr
    assert "installed version 2" in picked.stdout, picked.stderr
    assert "laptop.example.com" in (target / "isakmpd.policy").read_text()
