"""A peer installed from its bundle keeps its CRL current by itself (issue 16 §1), against the portal.

The client's real bundle is downloaded, unpacked and installed with its install.sh into a scratch
root; a client is revoked, the signer publishes a new CRL, and bin/ca-portal-refresh fetches it from
the portal's /crl.der under a live test server. Then openssl verify -crl_check -attime proves what
the refresh is for: past the old CRL's nextUpdate, verification fails with the old CRL and works
with the refreshed one.
"""

from __future__ import annotations

import io
import subprocess
import zipfile
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from django.utils import timezone

from authority.revocation import certificate_revoke, crl_publish
from bundles import services
from enrollment.models import Peer
from tests.bundles.conftest import issue, render

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)
NO_SCHEDULE = ("--schedule-with", "none")  # never the host's cron or systemd
OTHER_CA = Path(__file__).parents[1] / "fixtures" / "pki" / "ca-p384.crt"


def install(tmp_path: Path, peer: Peer, user: Any) -> Path:
    render(peer)
    download = services.bundle_download(peer_id=peer.pk, user=user, address=None, via="page")
    with zipfile.ZipFile(io.BytesIO(download.data)) as archive:
        archive.extractall(tmp_path / "bundle")
    target = tmp_path / "root" / "etc" / "isakmpd"
    target.parent.mkdir(parents=True)
    result = subprocess.run(
        [
            "sh",
            str(tmp_path / "bundle" / peer.fqdn / "install.sh"),
            *("--address", "192.0.2.10"),
            *NO_SCHEDULE,
            str(target),
        ],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return target


def verify(ca: Path, crl: Path, cert: Path, at: int) -> subprocess.CompletedProcess[str]:
    args = ["openssl", "verify", "-crl_check", "-attime", str(at), "-CAfile", str(ca), "-CRLfile", str(crl), str(cert)]
    return subprocess.run(args, capture_output=True, text=True, timeout=60)


def test_a_revocation_reaches_an_installed_peer_and_keeps_it_working_past_the_old_nextupdate(
    live_server: Any,
    ca: Any,
    client_peer: Peer,
    owner: Any,
    admin: Any,
    sent_tasks: list[Any],
    tmp_path: Path,
) -> None:
    # The CRL the bundle ships was made 25 days ago: valid for 30, it runs out in 5.
    old = crl_publish(now=timezone.now() - timedelta(days=25))
    target = install(tmp_path, client_peer, owner)
    installed = target / "crls" / "ca.crl"
    assert installed.read_text() == old.pem
    (tmp_path / "old.crl").write_text(old.pem)

    laptop, _ = issue(owner, admin, "laptop.example.com")
    lost = laptop.certificate_request.certificate  # type: ignore[union-attr]
    certificate_revoke(certificate_id=lost.pk, reason="keyCompromise", actor=admin)
    assert ("authority.crl_publish", ("revocation",)) in [(name, args) for name, args, _ in sent_tasks]
    new = crl_publish(trigger="revocation")  # what the signer does with that task

    refresh = [str(target / "bin" / "ca-portal-refresh"), "--url", f"{live_server.url}/crl.der", "--no-reload"]
    fetched = subprocess.run(["sh", *refresh], capture_output=True, text=True, timeout=120)
    again = subprocess.run(["sh", *refresh], capture_output=True, text=True, timeout=120)

    assert fetched.returncode == 0, fetched.stderr
    assert f"installed CRL 0x{new.number:X} for isakmpd" in fetched.stdout
    assert installed.read_text() == new.pem
    listed = {entry.serial_number for entry in x509.load_pem_x509_crl(installed.read_bytes())}
    assert int(lost.serial, 16) in listed
    assert again.returncode == 0, again.stderr
    assert "the portal has nothing newer" in again.stdout  # its entity tag matched: a 304

    # A day after the old CRL's nextUpdate: the old one fails every verification, the new one works.
    later = int((old.next_update + timedelta(days=1)).timestamp())
    cert = target / "certs" / "client.example.com.crt"
    ca_file = target / "ca" / "ca.crt"
    stale = verify(ca_file, tmp_path / "old.crl", cert, later)
    fresh = verify(ca_file, installed, cert, later)
    assert stale.returncode != 0
    assert "CRL has expired" in stale.stdout + stale.stderr
    assert fresh.returncode == 0, fresh.stdout + fresh.stderr
    (tmp_path / "lost.crt").write_text(lost.pem)
    revoked = verify(ca_file, installed, tmp_path / "lost.crt", later)
    assert "certificate revoked" in revoked.stdout + revoked.stderr


def test_the_portals_crl_is_refused_when_another_ca_signed_the_installed_one(
    live_server: Any, ca: Any, client_peer: Peer, owner: Any, tmp_path: Path
) -> None:
    crl_publish()
    target = install(tmp_path, client_peer, owner)
    (target / "ca" / "ca.crt").write_bytes(OTHER_CA.read_bytes())
    before = (target / "crls" / "ca.crl").read_bytes()
    crl_publish(now=timezone.now() + timedelta(minutes=1))

    result = subprocess.run(
        ["sh", str(target / "bin" / "ca-portal-refresh"), "--url", f"{live_server.url}/crl.der"],
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert result.returncode == 1
    assert "bad signature" in result.stderr
    assert (target / "crls" / "ca.crl").read_bytes() == before
