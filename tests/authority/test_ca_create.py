"""services.ca_create and the init_ca command: a new CA, its key encrypted at rest (T20), audited."""

from __future__ import annotations

import io
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from django.conf import settings
from django.core.management import CommandError, call_command

from authority import keystore
from authority.models import AuditEvent, CertificateAuthority
from authority.services import AuthorityError, ca_create
from pki.keys import load_private_key, public_key_der
from pki.profiles import CaSubject

pytestmark = pytest.mark.django_db

SUBJECT = CaSubject("Test VPN CA", "Example", "NL")


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _make_ca(**overrides: Any) -> CertificateAuthority:
    options: dict[str, Any] = {"subject": SUBJECT, "key_type": "ecdsa-p256", "days": 3650, "actor": "test"}
    options.update(overrides)
    return ca_create(**options)


def test_it_creates_an_active_ca(signer: None, key_dir: Path) -> None:
    ca = _make_ca()

    assert ca.is_active
    assert not ca.imported
    assert not ca.is_legacy
    assert ca.key_type == "ecdsa-p256"
    assert ca.common_name == "Test VPN CA"
    assert ca.subject == "CN=Test VPN CA,O=Example,C=NL"
    assert CertificateAuthority.objects.get(is_active=True) == ca


def test_it_stores_the_key_encrypted_with_mode_0600(signer: None, key_dir: Path) -> None:
    ca = _make_ca()

    key_path = Path(settings.CA_KEY_DIR) / ca.key_file
    assert _mode(key_path) == 0o600
    pem = key_path.read_bytes()
    assert pem.startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----\n")
    assert b"BEGIN PRIVATE KEY" not in pem
    # The key decrypts under the passphrase file, and belongs to the certificate.
    passphrase = Path(settings.CA_KEY_PASSPHRASE_FILE).read_bytes().strip()
    key = load_private_key(pem, passphrase)
    assert public_key_der(key.public_key()) == public_key_der(ca.certificate.public_key())  # type: ignore[arg-type]


def test_it_makes_the_passphrase_file_with_mode_0600(signer: None, key_dir: Path) -> None:
    passphrase_file = Path(settings.CA_KEY_PASSPHRASE_FILE)
    assert not passphrase_file.exists()

    _make_ca()

    assert _mode(passphrase_file) == 0o600
    assert len(passphrase_file.read_bytes().strip()) >= 32


def test_it_writes_a_key_that_openssl_can_open_with_the_passphrase(signer: None, key_dir: Path) -> None:
    ca = _make_ca()

    result = subprocess.run(
        [
            "openssl", "pkey", "-noout",
            "-in", str(Path(settings.CA_KEY_DIR) / ca.key_file),
            "-passin", f"file:{settings.CA_KEY_PASSPHRASE_FILE}",
        ],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr


def test_it_records_the_audit_event(signer: None, key_dir: Path) -> None:
    ca = _make_ca(actor="cli:root")

    event = AuditEvent.objects.get()
    assert event.action == "ca.created"
    assert event.actor == "cli:root"
    assert event.target == f"ca:{ca.pk}"
    assert event.data["fingerprint_sha256"] == ca.fingerprint_sha256
    assert event.data["key_type"] == "ecdsa-p256"
    assert event.data["legacy_reasons"] == []


def test_it_refuses_a_second_ca(signer: None, key_dir: Path) -> None:
    first = _make_ca()
    key_files = sorted(Path(settings.CA_KEY_DIR).iterdir())

    with pytest.raises(AuthorityError, match="already exists"):
        _make_ca(subject=CaSubject("Another CA"))

    assert list(CertificateAuthority.objects.all()) == [first]
    assert sorted(Path(settings.CA_KEY_DIR).iterdir()) == key_files
    assert AuditEvent.objects.count() == 1


def test_it_cannot_create_a_ca_in_a_process_that_is_not_a_signer(key_dir: Path) -> None:
    with pytest.raises(keystore.SignerUnavailable):
        _make_ca()

    assert not CertificateAuthority.objects.exists()
    assert not AuditEvent.objects.exists()
    assert not any(Path(settings.CA_KEY_DIR).glob("*.key"))


def test_it_refuses_a_subject_that_could_inject_a_name(signer: None, key_dir: Path) -> None:
    with pytest.raises(CommandError, match="control characters"):
        call_command("init_ca", "--common-name", "Evil CA\n/CN=root", stdout=io.StringIO())

    assert not CertificateAuthority.objects.exists()
    assert not AuditEvent.objects.exists()


def test_it_creates_the_default_rsa_3072_ca_with_init_ca(key_dir: Path) -> None:
    out = io.StringIO()
    call_command(
        "init_ca", "--common-name", "Example VPN CA", "--organization", "Example", "--country", "nl", stdout=out
    )

    ca = CertificateAuthority.objects.get(is_active=True)
    output = out.getvalue()
    assert "Created CA CN=Example VPN CA,O=Example,C=NL (rsa-3072)" in output
    assert ca.fingerprint_sha256 in output
    assert str(Path(settings.CA_KEY_DIR) / ca.key_file) in output
    assert str(settings.CA_KEY_PASSPHRASE_FILE) in output
    assert "valid until" in output

    cert = ca.certificate
    assert ca.key_type == "rsa-3072"
    public_key = cert.public_key()
    assert isinstance(public_key, rsa.RSAPublicKey)
    assert public_key.key_size == 3072
    assert cert.issuer == cert.subject

    basic = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert basic.critical
    assert basic.value.ca is True

    usage = cert.extensions.get_extension_for_class(x509.KeyUsage)
    assert usage.critical
    assert usage.value.key_cert_sign
    assert usage.value.crl_sign
    assert not usage.value.digital_signature
    assert not usage.value.key_encipherment

    ski = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    assert ski.value == x509.SubjectKeyIdentifier.from_public_key(public_key)

    assert (ca.not_after - ca.not_before).days == 3650
    key_path = Path(settings.CA_KEY_DIR) / ca.key_file
    assert _mode(key_path) == 0o600
    assert key_path.read_bytes().startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    assert AuditEvent.objects.get().action == "ca.created"
    assert AuditEvent.objects.get().actor.startswith("cli:")
