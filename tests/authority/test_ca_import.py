"""The import_ca command: adopt an existing openssl CA, re-encrypt its key, refuse what cannot or should not work."""

from __future__ import annotations

import io
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from django.conf import settings
from django.core.management import CommandError, call_command

from authority import keystore
from authority.models import AuditEvent, CertificateAuthority
from pki.keys import load_private_key, public_key_der
from tests.conftest import FIXTURES, fixture_bytes, login

pytestmark = pytest.mark.django_db

SOURCE_PASSPHRASE = b"the case study's passphrase"


def _import(*args: str) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("import_ca", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def _fixture_args(name: str = "ca-rsa2048") -> list[str]:
    return ["--cert", str(FIXTURES / f"{name}.crt"), "--key", str(FIXTURES / f"{name}.key")]


def _assert_nothing_written() -> None:
    assert not CertificateAuthority.objects.exists()
    assert not AuditEvent.objects.exists()
    key_dir = Path(settings.CA_KEY_DIR)
    assert not key_dir.exists() or not any(key_dir.iterdir())


def _stored_key_pem(ca: CertificateAuthority) -> bytes:
    return (Path(settings.CA_KEY_DIR) / ca.key_file).read_bytes()


@pytest.mark.parametrize(("name", "key_type"), [("ca-rsa2048", "rsa-2048"), ("ca-p384", "ecdsa-p384")])
def test_it_imports_the_fixture_ca(key_dir: Path, name: str, key_type: str) -> None:
    out, err = _import(*_fixture_args(name))

    ca = CertificateAuthority.objects.get(is_active=True)
    assert ca.imported
    assert ca.key_type == key_type
    assert not ca.is_legacy
    assert ca.certificate_pem.encode() == fixture_bytes(f"{name}.crt")
    assert f"Imported CA {ca.subject} ({key_type})" in out
    assert ca.fingerprint_sha256 in out
    assert err == ""
    event = AuditEvent.objects.get()
    assert event.action == "ca.imported"
    assert event.actor.startswith("cli:")
    assert event.target == f"ca:{ca.pk}"
    assert event.data["fingerprint_sha256"] == ca.fingerprint_sha256


def test_it_re_encrypts_the_key_under_our_passphrase(key_dir: Path) -> None:
    _import(*_fixture_args())

    ca = CertificateAuthority.objects.get()
    key_path = Path(settings.CA_KEY_DIR) / ca.key_file
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(Path(settings.CA_KEY_PASSPHRASE_FILE).stat().st_mode) == 0o600
    pem = _stored_key_pem(ca)
    assert pem.startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    passphrase = Path(settings.CA_KEY_PASSPHRASE_FILE).read_bytes().strip()
    source = load_private_key(fixture_bytes("ca-rsa2048.key"), None)
    stored = load_private_key(pem, passphrase)
    assert public_key_der(stored.public_key()) == public_key_der(source.public_key())
    # A signer process can load it through the keystore.
    keystore.enable_signing()
    keystore.forget_keys()
    assert public_key_der(keystore.signing_key(ca).public_key()) == public_key_der(source.public_key())


def _encrypt_with_cryptography(source: Path, target: Path, passphrase_file: Path) -> None:
    key = serialization.load_pem_private_key(source.read_bytes(), None)
    target.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(SOURCE_PASSPHRASE),
        )
    )


def _encrypt_with_openssl_pkcs8(source: Path, target: Path, passphrase_file: Path) -> None:
    subprocess.run(
        ["openssl", "pkey", "-in", str(source), "-aes256", "-passout", f"file:{passphrase_file}", "-out", str(target)],
        check=True, capture_output=True,
    )  # fmt: skip


def _encrypt_with_openssl_traditional(source: Path, target: Path, passphrase_file: Path) -> None:
    """The 2002-era form, as `openssl genrsa -des3` made it: "BEGIN RSA PRIVATE KEY", Proc-Type header, 3DES."""
    subprocess.run(
        ["openssl", "rsa", "-in", str(source), "-traditional", "-des3",
         "-passout", f"file:{passphrase_file}", "-out", str(target)],
        check=True, capture_output=True,
    )  # fmt: skip


@pytest.mark.parametrize(
    "encrypt", [_encrypt_with_cryptography, _encrypt_with_openssl_pkcs8, _encrypt_with_openssl_traditional]
)
def test_it_imports_an_encrypted_key_with_its_passphrase_file(key_dir: Path, tmp_path: Path, encrypt: Any) -> None:
    passphrase_file = tmp_path / "source-pass"
    passphrase_file.write_bytes(SOURCE_PASSPHRASE + b"\n")  # the trailing newline is not part of it
    encrypted = tmp_path / "ca.key"
    encrypt(FIXTURES / "ca-rsa2048.key", encrypted, passphrase_file)
    assert b"ENCRYPTED" in encrypted.read_bytes()

    _import(
        "--cert", str(FIXTURES / "ca-rsa2048.crt"), "--key", str(encrypted),
        "--key-passphrase-file", str(passphrase_file),
    )  # fmt: skip

    ca = CertificateAuthority.objects.get()
    our_passphrase = Path(settings.CA_KEY_PASSPHRASE_FILE).read_bytes().strip()
    assert our_passphrase != SOURCE_PASSPHRASE
    stored = load_private_key(_stored_key_pem(ca), our_passphrase)
    assert public_key_der(stored.public_key()) == public_key_der(ca.certificate.public_key())  # type: ignore[arg-type]


def test_it_refuses_an_encrypted_key_with_the_wrong_passphrase(key_dir: Path, tmp_path: Path) -> None:
    passphrase_file = tmp_path / "source-pass"
    passphrase_file.write_bytes(SOURCE_PASSPHRASE)
    wrong = tmp_path / "wrong-pass"
    wrong.write_bytes(b"not it")
    encrypted = tmp_path / "ca.key"
    _encrypt_with_cryptography(FIXTURES / "ca-rsa2048.key", encrypted, passphrase_file)

    with pytest.raises(CommandError, match="wrong passphrase"):
        _import(
            "--cert", str(FIXTURES / "ca-rsa2048.crt"), "--key", str(encrypted), "--key-passphrase-file", str(wrong)
        )

    _assert_nothing_written()


def test_it_refuses_an_encrypted_key_without_a_passphrase(key_dir: Path, tmp_path: Path) -> None:
    passphrase_file = tmp_path / "source-pass"
    passphrase_file.write_bytes(SOURCE_PASSPHRASE)
    encrypted = tmp_path / "ca.key"
    _encrypt_with_cryptography(FIXTURES / "ca-rsa2048.key", encrypted, passphrase_file)

    with pytest.raises(CommandError, match="passphrase"):
        _import("--cert", str(FIXTURES / "ca-rsa2048.crt"), "--key", str(encrypted))

    _assert_nothing_written()


def test_it_refuses_a_certificate_that_is_not_a_ca(key_dir: Path) -> None:
    with pytest.raises(CommandError, match=r"not a CA certificate \(basicConstraints CA:FALSE\)"):
        _import(*_fixture_args("not-a-ca"))

    _assert_nothing_written()


def test_it_refuses_a_key_that_does_not_belong_to_the_certificate(key_dir: Path) -> None:
    with pytest.raises(CommandError, match="the private key does not belong to the certificate"):
        _import("--cert", str(FIXTURES / "ca-rsa2048.crt"), "--key", str(FIXTURES / "not-a-ca.key"))

    _assert_nothing_written()


def test_it_refuses_a_file_that_is_not_a_certificate(key_dir: Path) -> None:
    with pytest.raises(CommandError, match="not a readable PEM certificate"):
        _import("--cert", str(FIXTURES / "client-rsa2048.csr"), "--key", str(FIXTURES / "ca-rsa2048.key"))

    _assert_nothing_written()


def test_it_refuses_a_missing_file(key_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(CommandError, match="cannot read"):
        _import("--cert", str(tmp_path / "nope.crt"), "--key", str(FIXTURES / "ca-rsa2048.key"))

    _assert_nothing_written()


def test_it_refuses_a_second_ca(key_dir: Path) -> None:
    _import(*_fixture_args())

    with pytest.raises(CommandError, match="already exists"):
        _import(*_fixture_args("ca-p384"))

    assert CertificateAuthority.objects.count() == 1
    assert AuditEvent.objects.count() == 1
    assert len(list(Path(settings.CA_KEY_DIR).iterdir())) == 1


def test_it_refuses_the_legacy_ca_without_allow_legacy(key_dir: Path) -> None:
    with pytest.raises(CommandError) as refused:
        _import(*_fixture_args("ca-legacy-rsa1024"))

    message = str(refused.value)
    assert "--allow-legacy" in message
    assert "RSA key of 1024 bits" in message
    assert "SHA1" in message
    _assert_nothing_written()


def test_it_imports_the_legacy_ca_with_allow_legacy_and_warns(key_dir: Path, client: Any, admin: Any) -> None:
    out, err = _import(*_fixture_args("ca-legacy-rsa1024"), "--allow-legacy")

    ca = CertificateAuthority.objects.get()
    assert ca.is_legacy
    assert ca.key_type == "rsa-1024"
    assert any("1024 bits" in reason for reason in ca.legacy_reasons)
    assert any("SHA1" in reason for reason in ca.legacy_reasons)
    assert "Imported CA" in out
    assert "WARNING: this CA is marked LEGACY" in err
    assert "1024 bits" in err
    assert AuditEvent.objects.get(action="ca.imported").data["legacy_reasons"] == ca.legacy_reasons

    login(client, admin)
    page = client.get("/").content.decode()
    assert "Legacy CA." in page
    assert "RSA key of 1024 bits" in page


def test_it_shows_no_legacy_banner_for_a_sound_ca(key_dir: Path, client: Any, owner: Any) -> None:
    _import(*_fixture_args())

    login(client, owner)
    response = client.get("/")

    assert response.status_code == 200
    assert "Legacy CA." not in response.content.decode()
