"""The sign_csr command: the CA host's own path, through the same services, checks and audit."""

from __future__ import annotations

import getpass
import io
import os
import re
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command

from authority.models import AuditEvent, Certificate, CertificateAuthority, CertificateRequest
from authority.services import ca_create
from enrollment.models import Peer
from pki.profiles import CaSubject
from tests.conftest import FIXTURES

pytestmark = pytest.mark.django_db

FQDN = "client.example.com"
CSR = FIXTURES / "client-rsa2048.csr"


@pytest.fixture(autouse=True)
def _umask_022() -> Iterator[None]:
    """The certificate is written 0644 through the umask; pin the usual one so the mode is known."""
    old = os.umask(0o022)
    yield
    os.umask(old)


def _sign(*args: str, csr: Path = CSR) -> str:
    out = io.StringIO()
    call_command("sign_csr", str(csr), *args, stdout=out)
    return out.getvalue()


def _openssl_verify(ca_pem: str, cert_path: Path, tmp_path: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    ca_file = tmp_path / "ca.pem"
    ca_file.write_text(ca_pem)
    return subprocess.run(
        ["openssl", "verify", *flags, "-CAfile", str(ca_file), str(cert_path)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip


def _nothing_recorded(events_before: int) -> None:
    assert not Peer.objects.exists()
    assert not CertificateRequest.objects.exists()
    assert not Certificate.objects.exists()
    assert AuditEvent.objects.count() == events_before


def test_it_writes_a_pem_certificate_that_verifies_against_the_ca(ca: CertificateAuthority, tmp_path: Path) -> None:
    out = tmp_path / "client.crt"

    output = _sign("--fqdn", FQDN, "--out", str(out))

    assert stat.S_IMODE(out.stat().st_mode) == 0o644
    pem = out.read_text()
    assert pem.startswith("-----BEGIN CERTIFICATE-----\n")
    assert pem.count("BEGIN") == 1
    cert = x509.load_pem_x509_certificate(pem.encode())
    stored = Certificate.objects.get()
    assert stored.pem == pem
    assert f"Signed {FQDN}: serial {stored.serial}" in output
    assert stored.fingerprint_sha256 in output
    cert.verify_directly_issued_by(ca.certificate)
    result = _openssl_verify(ca.certificate_pem, out, tmp_path, "-x509_strict")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip().endswith(": OK")


@pytest.mark.parametrize("key_type", ["rsa-2048", "ecdsa-p256", "ecdsa-p384"])
def test_it_issues_certificates_that_pass_openssl_strict_verification(
    signer: None, key_dir: Path, tmp_path: Path, key_type: Any
) -> None:
    # CAs of every supported key type, made by init_ca's service.
    ca = ca_create(subject=CaSubject("Strict Test CA", "Example", "NL"), key_type=key_type, days=365, actor="test")
    out = tmp_path / "client.crt"

    _sign("--fqdn", FQDN, "--out", str(out))

    result = _openssl_verify(ca.certificate_pem, out, tmp_path, "-x509_strict")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip().endswith(": OK")


def test_it_records_an_issued_peer_approved_by_its_owner(ca: CertificateAuthority, tmp_path: Path) -> None:
    _sign("--fqdn", FQDN, "--out", str(tmp_path / "client.crt"))

    peer = Peer.objects.get()
    assert peer.fqdn == FQDN
    assert peer.kind == Peer.Kind.CLIENT
    assert peer.status == "issued"
    assert peer.decided_by == peer.owner
    request = peer.certificate_request
    assert request is not None
    assert request.approved_by == request.requested_by == peer.owner
    assert request.status == CertificateRequest.Status.ISSUED
    assert request.certificate.serial == Certificate.objects.get().serial
    # Without --user, the operator gets a local account that cannot sign in to the portal.
    assert peer.owner.get_username() == f"ca-host-{getpass.getuser()}"
    assert not peer.owner.is_active
    assert not peer.owner.has_usable_password()


def test_it_audits_every_step_as_the_cli_operator(ca: CertificateAuthority, tmp_path: Path) -> None:
    _sign("--fqdn", FQDN, "--out", str(tmp_path / "client.crt"))

    events = list(AuditEvent.objects.filter(seq__gt=1).order_by("seq"))
    assert [event.action for event in events] == [
        "peer.registered",
        "certificate.requested",
        "peer.approved",
        "certificate.intent",
        "certificate.issued",
    ]
    operator = f"ca-host-{getpass.getuser()}"
    for event in events[:3]:
        assert event.actor.startswith("cli:"), event
        assert event.actor.endswith(f" as user:{operator}"), event
    # The signing steps are the signer's, whichever process runs them.
    assert {event.actor for event in events[3:]} == {"signer"}


def test_it_uses_the_named_user(ca: CertificateAuthority, admin: Any, tmp_path: Path) -> None:
    _sign("--fqdn", FQDN, "--out", str(tmp_path / "client.crt"), "--user", admin.username, "--days", "30")

    peer = Peer.objects.get()
    assert peer.owner == admin
    assert peer.certificate_request is not None
    assert peer.certificate_request.approved_by == admin
    stored = Certificate.objects.get()
    assert (stored.not_after - stored.not_before).days == 30
    assert AuditEvent.objects.get(action="peer.approved").actor.endswith(" as user:carol")


def test_it_signs_a_gateway_with_its_address_and_networks(ca: CertificateAuthority, tmp_path: Path) -> None:
    _sign(
        "--fqdn", FQDN, "--out", str(tmp_path / "gw.crt"), "--kind", "server", "--address", "192.0.2.10",
        "--network", "10.20.0.0/16", "--network", "10.10.0.0/24",
    )  # fmt: skip

    peer = Peer.objects.get()
    assert peer.kind == Peer.Kind.SERVER
    assert peer.address == "192.0.2.10"
    assert peer.networks == ["10.10.0.0/24", "10.20.0.0/16"]
    assert peer.status == "issued"


def test_it_refuses_to_overwrite_the_output_file(ca: CertificateAuthority, tmp_path: Path) -> None:
    out = tmp_path / "client.crt"
    out.write_text("keep me\n")
    events = AuditEvent.objects.count()

    with pytest.raises(CommandError, match="exists; refusing to overwrite it"):
        _sign("--fqdn", FQDN, "--out", str(out))

    assert out.read_text() == "keep me\n"
    _nothing_recorded(events)


def test_it_refuses_a_weak_csr_and_writes_nothing(ca: CertificateAuthority, tmp_path: Path) -> None:
    out = tmp_path / "client.crt"
    events = AuditEvent.objects.count()

    with pytest.raises(CommandError, match="csr: the RSA key has 1024 bits"):
        _sign("--fqdn", FQDN, "--out", str(out), csr=FIXTURES / "weak-rsa1024.csr")

    assert not out.exists()
    _nothing_recorded(events)


def test_it_refuses_a_csr_for_another_name(ca: CertificateAuthority, tmp_path: Path) -> None:
    events = AuditEvent.objects.count()

    with pytest.raises(CommandError, match=re.escape("csr: the certificate request is for 'other.example.com'")):
        _sign("--fqdn", FQDN, "--out", str(tmp_path / "c.crt"), csr=FIXTURES / "other-cn.csr")

    _nothing_recorded(events)


def test_it_refuses_a_server_without_an_address(ca: CertificateAuthority, tmp_path: Path) -> None:
    out = tmp_path / "gw.crt"
    events = AuditEvent.objects.count()

    with pytest.raises(CommandError, match="address: a VPN gateway needs its public address"):
        _sign("--fqdn", FQDN, "--out", str(out), "--kind", "server")

    assert not out.exists()
    _nothing_recorded(events)


def test_it_refuses_an_unknown_user(ca: CertificateAuthority, tmp_path: Path) -> None:
    out = tmp_path / "client.crt"
    events = AuditEvent.objects.count()
    users = get_user_model().objects.count()

    with pytest.raises(CommandError, match="there is no portal user 'nobody'"):
        _sign("--fqdn", FQDN, "--out", str(out), "--user", "nobody")

    assert not out.exists()
    assert get_user_model().objects.count() == users
    _nothing_recorded(events)


def test_it_refuses_an_unreadable_csr_file(ca: CertificateAuthority, tmp_path: Path) -> None:
    events = AuditEvent.objects.count()

    with pytest.raises(CommandError, match="cannot read"):
        _sign("--fqdn", FQDN, "--out", str(tmp_path / "c.crt"), csr=tmp_path / "missing.csr")

    _nothing_recorded(events)


def test_it_leaves_nothing_behind_when_the_approval_is_refused(signer: None, key_dir: Path, tmp_path: Path) -> None:
    """Register and approve commit together: a refusal must not leave a pending peer that blocks the retry."""
    out = tmp_path / "client.crt"

    with pytest.raises(CommandError, match="there is no CA yet"):
        _sign("--fqdn", FQDN, "--out", str(out))

    _nothing_recorded(0)
    ca_create(subject=CaSubject("Late CA"), key_type="ecdsa-p256", days=365, actor="test")
    _sign("--fqdn", FQDN, "--out", str(out))
    assert Peer.objects.get().status == "issued"


@pytest.mark.parametrize("days", ["0", "826"])
def test_it_refuses_a_validity_outside_the_profile(ca: CertificateAuthority, tmp_path: Path, days: str) -> None:
    events = AuditEvent.objects.count()

    with pytest.raises(CommandError, match="between 1 and 825 days"):
        _sign("--fqdn", FQDN, "--out", str(tmp_path / "c.crt"), "--days", days)

    _nothing_recorded(events)
