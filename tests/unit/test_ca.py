"""ca: checks on a CA certificate and key pair (init, and import of an existing openssl CA)."""

from __future__ import annotations

import base64
import subprocess
from datetime import UTC, datetime

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from pki.ca import assess_ca, certificate_pem, fingerprint_sha256, load_certificate
from pki.errors import CaRejected
from pki.keys import PrivateKey, load_private_key
from tests.conftest import FIXTURES, fixture_bytes

NOW = datetime(2030, 1, 1, tzinfo=UTC)


def _pair(cert_name: str, key_name: str) -> tuple[x509.Certificate, PrivateKey]:
    return load_certificate(fixture_bytes(cert_name)), load_private_key(fixture_bytes(key_name), None)


def _ec_ca(*, ca: bool = True, key_usage: x509.KeyUsage | None = None) -> tuple[x509.Certificate, PrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Hand-made CA")])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(datetime(2026, 1, 1, tzinfo=UTC))
        .not_valid_after(datetime(2036, 1, 1, tzinfo=UTC))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if key_usage is not None:
        builder = builder.add_extension(key_usage, critical=True)
    return builder.sign(key, hashes.SHA256()), key


def _key_usage(*, key_cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=key_cert_sign,
        crl_sign=key_cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


@pytest.mark.parametrize(("name", "key_type"), [("rsa2048", "rsa-2048"), ("p384", "ecdsa-p384")])
def test_it_accepts_the_fixture_cas_without_legacy_reasons(name: str, key_type: str) -> None:
    assessment = assess_ca(*_pair(f"ca-{name}.crt", f"ca-{name}.key"), now=NOW)
    assert assessment.key_type == key_type
    assert assessment.legacy_reasons == ()


def test_it_lists_what_makes_the_openssl_made_rsa1024_sha1_ca_legacy() -> None:
    assessment = assess_ca(*_pair("ca-legacy-rsa1024.crt", "ca-legacy-rsa1024.key"), now=NOW)
    assert assessment.key_type == "rsa-1024"
    assert assessment.legacy_reasons == (
        "RSA key of 1024 bits (at least 2048 are needed today)",
        "certificate signed with SHA1",
    )


def test_it_lists_an_unusual_curve_as_legacy() -> None:
    key = ec.generate_private_key(ec.SECP256K1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "k1 CA")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(datetime(2026, 1, 1, tzinfo=UTC))
        .not_valid_after(datetime(2036, 1, 1, tzinfo=UTC))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    assert assess_ca(cert, key, now=NOW).legacy_reasons == ("elliptic curve secp256k1",)


def test_it_refuses_a_certificate_that_is_not_a_ca() -> None:
    with pytest.raises(CaRejected, match=r"not a CA certificate \(basicConstraints CA:FALSE\)"):
        assess_ca(*_pair("not-a-ca.crt", "not-a-ca.key"), now=NOW)


def test_it_refuses_a_certificate_without_basic_constraints() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "No BC")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(datetime(2026, 1, 1, tzinfo=UTC))
        .not_valid_after(datetime(2036, 1, 1, tzinfo=UTC))
        .sign(key, hashes.SHA256())
    )
    with pytest.raises(CaRejected, match="no basicConstraints extension, so it is not a CA"):
        assess_ca(cert, key, now=NOW)


def test_it_refuses_a_ca_whose_key_usage_forbids_signing_certificates() -> None:
    with pytest.raises(CaRejected, match="keyCertSign"):
        assess_ca(*_ec_ca(key_usage=_key_usage(key_cert_sign=False)), now=NOW)


def test_it_accepts_a_ca_whose_key_usage_allows_signing_certificates() -> None:
    assert assess_ca(*_ec_ca(key_usage=_key_usage(key_cert_sign=True)), now=NOW).legacy_reasons == ()


@pytest.mark.parametrize(
    ("cert_name", "key_name"),
    [
        ("ca-rsa2048.crt", "not-a-ca.key"),
        ("ca-rsa2048.crt", "ca-p384.key"),
        ("ca-p384.crt", "ca-rsa2048.key"),
        ("not-a-ca.crt", "ca-rsa2048.key"),
    ],
)
def test_it_refuses_a_key_that_does_not_belong_to_the_certificate(cert_name: str, key_name: str) -> None:
    with pytest.raises(CaRejected, match="the private key does not belong to the certificate"):
        assess_ca(*_pair(cert_name, key_name), now=NOW)


def test_it_refuses_an_expired_ca() -> None:
    with pytest.raises(CaRejected, match="the CA certificate expired on 2035-12-30"):
        assess_ca(*_pair("ca-rsa2048.crt", "ca-rsa2048.key"), now=datetime(2040, 1, 1, tzinfo=UTC))


def test_it_refuses_a_ca_at_the_moment_it_expires() -> None:
    cert, key = _pair("ca-p384.crt", "ca-p384.key")
    with pytest.raises(CaRejected, match="expired"):
        assess_ca(cert, key, now=cert.not_valid_after_utc)


@pytest.mark.parametrize("name", ["ca-rsa2048.crt", "ca-p384.crt", "ca-legacy-rsa1024.crt", "not-a-ca.crt"])
def test_it_computes_the_fingerprint_that_openssl_prints(name: str) -> None:
    result = subprocess.run(
        ["openssl", "x509", "-noout", "-fingerprint", "-sha256", "-in", str(FIXTURES / name)],
        capture_output=True,
        text=True,
        check=True,
    )
    openssl_fingerprint = result.stdout.strip().split("=", 1)[1].replace(":", "").lower()
    assert fingerprint_sha256(load_certificate(fixture_bytes(name))) == openssl_fingerprint
    assert len(openssl_fingerprint) == 64


def test_it_round_trips_the_certificate_pem() -> None:
    cert = load_certificate(fixture_bytes("ca-p384.crt"))
    assert certificate_pem(cert).encode("ascii") == fixture_bytes("ca-p384.crt")


@pytest.mark.parametrize("data", [b"", b"garbage", fixture_bytes("ca-rsa2048.key"), fixture_bytes("client-p256.csr")])
def test_it_refuses_a_file_that_is_not_a_pem_certificate(data: bytes) -> None:
    with pytest.raises(CaRejected, match="not a readable PEM certificate"):
        load_certificate(data)


def test_it_refuses_a_certificate_with_an_unknown_version() -> None:
    """cryptography raises InvalidVersion, which is not a ValueError, for a version other than v1/v3."""
    der = load_certificate(fixture_bytes("ca-p384.crt")).public_bytes(serialization.Encoding.DER)
    damaged = der.replace(b"\xa0\x03\x02\x01\x02", b"\xa0\x03\x02\x01\x05", 1)
    assert damaged != der
    pem = b"-----BEGIN CERTIFICATE-----\n" + base64.encodebytes(damaged) + b"-----END CERTIFICATE-----\n"
    with pytest.raises(CaRejected, match="not a readable PEM certificate"):
        load_certificate(pem)
