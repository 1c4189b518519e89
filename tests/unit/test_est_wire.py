"""pki/est.py: reading EST request bodies and building certs-only responses (RFC 7030, RFC 8951). No DB."""

from __future__ import annotations

import base64
import hashlib
import os
import subprocess
import textwrap
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs7
from cryptography.x509.oid import NameOID
from hypothesis import given, settings
from hypothesis import strategies as st

from pki.csr import MAX_CSR_BYTES, vet_csr
from pki.errors import CsrRejected
from pki.est import EstCsr, certs_only, csr_public_key_der, der_to_pem, read_csr
from tests.conftest import fixture_bytes
from tests.pkitools import openssl_asn1parse

GOLDEN_DIR = Path(__file__).parent.parent / "golden" / "pki"
_KEY = ec.generate_private_key(ec.SECP256R1())


def _der(pem_name: str) -> bytes:
    return x509.load_pem_x509_csr(fixture_bytes(pem_name)).public_bytes(serialization.Encoding.DER)


def _request(*names: x509.GeneralName, cn: str | None = None) -> bytes:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)] if cn else [])
    builder = x509.CertificateSigningRequestBuilder().subject_name(subject)
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(list(names)), critical=False)
    return builder.sign(_KEY, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


def _spki(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


# --- requests ------------------------------------------------------------------------------------


def test_it_turns_base64_der_into_the_same_request_as_pem() -> None:
    read = read_csr(base64.b64encode(_der("client-rsa2048.csr")))

    assert read.pem == fixture_bytes("client-rsa2048.csr").decode("ascii")  # byte for byte, nothing re-encoded
    assert read.fqdn == "client.example.com"
    assert vet_csr(read.pem, fqdn=read.fqdn).public_key_der == read.public_key_der


def test_it_takes_the_first_dns_name_before_the_cn() -> None:
    der = _request(x509.DNSName("laptop.example.org"), x509.DNSName("second.example.org"), cn="other.example.org")

    read = read_csr(base64.b64encode(der))

    assert read == EstCsr(pem=der_to_pem(der), fqdn="laptop.example.org", public_key_der=_spki(_KEY))


def test_it_falls_back_to_the_cn_when_the_alt_names_hold_no_dns_name() -> None:
    der = _request(x509.RFC822Name("alice@example.org"), cn="laptop.example.org")

    assert read_csr(base64.b64encode(der)).fqdn == "laptop.example.org"


def test_it_refuses_a_request_that_names_no_host() -> None:
    with pytest.raises(CsrRejected, match="names no host"):
        read_csr(base64.b64encode(_request()))


@pytest.mark.parametrize("separator", [b"\n", b"\r\n", b" "])
def test_it_accepts_line_breaks_in_the_base64(separator: bytes) -> None:
    text = base64.b64encode(_der("client-p256.csr"))
    wrapped = separator.join(text[i : i + 64] for i in range(0, len(text), 64)) + separator

    assert read_csr(wrapped).fqdn == "client.example.com"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "empty"),
        (b"\r\n", "empty"),
        (b"%%%%", "not base64"),
        (b"QUJ", "not base64"),  # bad padding
        ("ü".encode(), "not base64"),
        (fixture_bytes("client-rsa2048.csr"), "this is PEM"),
        (base64.b64encode(b"junk"), "not of a DER"),
        (base64.b64encode(b"\x30\x00"), "not of a DER"),
        (base64.b64encode(fixture_bytes("client-rsa2048.key")), "not of a DER"),
        (base64.b64encode(b"\x30" * (MAX_CSR_BYTES + 1)), f"at most {MAX_CSR_BYTES}"),
    ],
)
def test_it_refuses_what_is_not_a_base64_der_request(body: bytes, message: str) -> None:
    with pytest.raises(CsrRejected, match=message):
        read_csr(body)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2 * MAX_CSR_BYTES))
def test_arbitrary_bytes_are_a_request_or_refused(body: bytes) -> None:
    try:
        read_csr(body)
    except CsrRejected:
        pass


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=4096))
def test_arbitrary_base64_is_a_request_or_refused(payload: bytes) -> None:
    for body in (base64.b64encode(payload), base64.b64encode(b"\x30\x82" + len(payload).to_bytes(2, "big") + payload)):
        try:
            read_csr(body)
        except CsrRejected:
            pass


def test_it_reads_the_public_key_of_a_stored_request() -> None:
    assert (
        csr_public_key_der(fixture_bytes("client-p256.csr").decode())
        == read_csr(base64.b64encode(_der("client-p256.csr"))).public_key_der
    )
    assert csr_public_key_der("not a request") is None


# --- responses -----------------------------------------------------------------------------------


def _golden(name: str, actual: str) -> None:
    path = GOLDEN_DIR / name
    if os.environ.get("UPDATE_GOLDEN") == "1":  # regenerate, then review `git diff`
        path.write_text(actual, encoding="utf-8", newline="\n")
    assert actual == path.read_text(encoding="utf-8"), f"{name} changed; rerun with UPDATE_GOLDEN=1"


def test_the_cacerts_body_matches_the_golden_file() -> None:
    ca = x509.load_pem_x509_certificate(fixture_bytes("ca-rsa2048.crt"))

    body = certs_only([ca])

    der = base64.b64decode(body, validate=True)
    dump = "\n".join(line.rstrip() for line in openssl_asn1parse(der).splitlines())
    _golden(
        "est-cacerts-rsa2048.txt",
        "# EST cacerts body for the RSA-2048 fixture CA: base64 of a certs-only PKCS#7 SignedData.\n"
        "# Made by tests/unit/test_est_wire.py; regenerate with UPDATE_GOLDEN=1, then review `git diff`.\n"
        f"sha256 {hashlib.sha256(der).hexdigest()}\n"
        "\n## openssl asn1parse -inform DER -i\n"
        f"{dump}\n"
        "\n## body (one line on the wire)\n" + "\n".join(textwrap.wrap(body.decode("ascii"), 64)) + "\n",
    )


def test_a_certs_only_body_is_one_base64_line_that_openssl_reads() -> None:
    ca = x509.load_pem_x509_certificate(fixture_bytes("ca-rsa2048.crt"))
    other = x509.load_pem_x509_certificate(fixture_bytes("ca-p384.crt"))

    body = certs_only([ca, other])

    assert set(body) <= set(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=")  # no line breaks
    der = base64.b64decode(body, validate=True)
    assert sorted(c.subject.rfc4514_string() for c in pkcs7.load_der_pkcs7_certificates(der)) == [
        "CN=Fixture P-384 CA",
        "CN=Fixture RSA CA",
    ]  # a DER SET OF: in encoding order, not the order given
    printed = subprocess.run(
        ["openssl", "pkcs7", "-inform", "DER", "-print_certs", "-noout"], input=der, capture_output=True, check=True
    ).stdout.decode()
    assert "Fixture RSA CA" in printed


def test_a_certs_only_body_holds_a_certificate() -> None:
    with pytest.raises(ValueError, match="at least one"):
        certs_only([])
