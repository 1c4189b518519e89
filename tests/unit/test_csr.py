"""csr.vet_csr: key policy, what a CSR may ask for, and hostile bytes (docs/security.md T6-T9)."""

from __future__ import annotations

import base64
import ipaddress
import re
import textwrap

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pki import der
from pki.csr import MAX_CSR_BYTES, vet_csr
from pki.errors import CsrRejected
from pki.keys import public_key_der
from tests.conftest import fixture_bytes

FQDN = "client.example.com"


def _pem(der: bytes, label: str = "CERTIFICATE REQUEST") -> bytes:
    body = "\n".join(textwrap.wrap(base64.b64encode(der).decode("ascii"), 64))
    return f"-----BEGIN {label}-----\n{body}\n-----END {label}-----\n".encode("ascii")


# One EC key for CSRs crafted in this module: ECDSA keys cost nothing to make, unlike RSA.
_KEY = ec.generate_private_key(ec.SECP256R1())


def _crafted(*extensions: tuple[x509.ExtensionType, bool], subject: x509.Name | None = None) -> bytes:
    """A correctly self-signed CSR with the given extensions (what a hostile tool could send)."""
    name = subject if subject is not None else x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, FQDN)])
    builder = x509.CertificateSigningRequestBuilder().subject_name(name)
    for extension, critical in extensions:
        builder = builder.add_extension(extension, critical=critical)
    return builder.sign(_KEY, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


def _key_usage(**flags: bool) -> x509.KeyUsage:
    names = ("digital_signature", "content_commitment", "key_encipherment", "data_encipherment", "key_agreement")
    names += ("key_cert_sign", "crl_sign", "encipher_only", "decipher_only")
    return x509.KeyUsage(**{n: flags.get(n, False) for n in names})


def _good_der() -> bytes:
    return x509.load_pem_x509_csr(fixture_bytes("client-rsa2048.csr")).public_bytes(serialization.Encoding.DER)


@pytest.mark.parametrize(
    ("name", "key_type"),
    [("client-rsa2048.csr", "rsa-2048"), ("client-p256.csr", "ecdsa-p256"), ("client-nocn.csr", "rsa-2048")],
)
def test_it_accepts_good_client_csrs(name: str, key_type: str) -> None:
    pem = fixture_bytes(name)
    vetted = vet_csr(pem, fqdn=FQDN)
    assert vetted.key_type == key_type
    expected = x509.load_pem_x509_csr(pem).public_key()
    assert vetted.public_key_der == public_key_der(expected)  # type: ignore[arg-type]
    assert public_key_der(vetted.public_key) == vetted.public_key_der


def test_it_accepts_text_as_well_as_bytes() -> None:
    assert vet_csr(fixture_bytes("client-p256.csr").decode("ascii"), fqdn=FQDN).key_type == "ecdsa-p256"


def test_it_accepts_crlf_line_ends_and_the_old_new_certificate_request_label() -> None:
    pem = fixture_bytes("client-rsa2048.csr").replace(b"CERTIFICATE REQUEST", b"NEW CERTIFICATE REQUEST")
    assert vet_csr(pem.replace(b"\n", b"\r\n"), fqdn=FQDN).key_type == "rsa-2048"


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("weak-rsa1024.csr", "the RSA key has 1024 bits; at least 2048 are required"),
        ("weak-e3.csr", "the RSA public exponent is 3; only 65537 is accepted"),
        ("weak-fermat.csr", "two primes are so close that the key can be factored"),
        ("weak-p224.csr", "the elliptic curve secp224r1 is not accepted; use P-256 or P-384"),
        ("weak-secp256k1.csr", "the elliptic curve secp256k1 is not accepted"),
        ("ed25519.csr", "Ed25519PublicKey keys are not accepted; use RSA"),
        ("asks-ca-true.csr", r"asks to be a CA \(CA:TRUE\)"),
        ("asks-extra-san.csr", "asks for names other than client.example.com: DNS:evil.example.com"),
        ("asks-any-eku.csr", "asks for any extended key usage"),
        ("bad-signature.csr", "signature does not verify"),
        ("other-cn.csr", "is for 'other.example.com', not for 'client.example.com'"),
    ],
)
def test_it_refuses_weak_or_hostile_csrs_with_the_reason(name: str, reason: str) -> None:
    with pytest.raises(CsrRejected, match=reason):
        vet_csr(fixture_bytes(name), fqdn=FQDN)


def test_it_accepts_a_csr_that_asks_only_for_what_the_profile_gives() -> None:
    pem = _crafted(
        (x509.SubjectAlternativeName([x509.DNSName(FQDN)]), False),
        (x509.BasicConstraints(ca=False, path_length=None), True),
        (_key_usage(digital_signature=True), True),
        (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.IPSEC_IKE]), False),
    )
    assert vet_csr(pem, fqdn=FQDN).key_type == "ecdsa-p256"


@pytest.mark.parametrize(
    ("extension", "critical", "reason"),
    [
        (_key_usage(digital_signature=True, key_cert_sign=True), True, "certificate or CRL signing"),
        (_key_usage(crl_sign=True), False, "certificate or CRL signing"),
        (
            x509.NameConstraints(permitted_subtrees=[x509.DNSName("example.com")], excluded_subtrees=None),
            True,
            "name constraints",
        ),
        (
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE]),
            False,
            "any extended key usage",
        ),
        (x509.SubjectAlternativeName([x509.DNSName("other.example.com")]), False, "DNS:other.example.com"),
        (x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("10.0.0.1"))]), False, "IP:10.0.0.1"),
        (x509.SubjectAlternativeName([x509.RFC822Name("root@example.com")]), False, "email:root@example.com"),
        (x509.SubjectAlternativeName([x509.UniformResourceIdentifier("https://evil.example")]), False, "URI:"),
        (
            x509.SubjectAlternativeName(
                [x509.OtherName(x509.ObjectIdentifier("1.3.6.1.4.1.311.20.2.3"), b"\x0c\x01a")]
            ),
            False,
            "OtherName",
        ),
        (
            x509.UnrecognizedExtension(x509.ObjectIdentifier("1.3.6.1.4.1.99999.1"), b"\x05\x00"),
            True,
            "unknown critical",
        ),
        (x509.OCSPNoCheck(), True, r"unknown critical extension \(1.3.6.1.5.5.7.48.1.5\)"),
    ],
)
def test_it_refuses_a_csr_that_asks_for_more_than_a_peer_certificate(
    extension: x509.ExtensionType, critical: bool, reason: str
) -> None:
    with pytest.raises(CsrRejected, match=reason):
        vet_csr(_crafted((extension, critical)), fqdn=FQDN)


def test_it_ignores_an_unknown_non_critical_extension() -> None:
    unknown = x509.UnrecognizedExtension(x509.ObjectIdentifier("1.3.6.1.4.1.99999.1"), b"\x05\x00")
    assert vet_csr(_crafted((unknown, False)), fqdn=FQDN).key_type == "ecdsa-p256"


def test_it_refuses_two_common_names() -> None:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, FQDN), x509.NameAttribute(NameOID.COMMON_NAME, FQDN)])
    with pytest.raises(CsrRejected, match="more than one common name"):
        vet_csr(_crafted(subject=subject), fqdn=FQDN)


def test_it_refuses_a_good_csr_for_another_peer() -> None:
    with pytest.raises(CsrRejected, match=re.escape("not for 'other.example.com'")):
        vet_csr(fixture_bytes("client-rsa2048.csr"), fqdn="other.example.com")


def test_it_refuses_garbage_text() -> None:
    with pytest.raises(CsrRejected, match="not a PEM certificate request"):
        vet_csr(b"hello, I would like a certificate please", fqdn=FQDN)


def test_it_refuses_empty_input() -> None:
    with pytest.raises(CsrRejected, match="not a PEM certificate request"):
        vet_csr(b"", fqdn=FQDN)


@pytest.mark.parametrize("name", ["client-rsa2048.key", "ca-p384.key"])
def test_it_refuses_a_private_key_and_says_so(name: str) -> None:
    with pytest.raises(CsrRejected, match="this is a private key, not a certificate request"):
        vet_csr(fixture_bytes(name), fqdn=FQDN)


def test_it_refuses_a_certificate_instead_of_a_csr() -> None:
    with pytest.raises(CsrRejected, match="this is a PEM CERTIFICATE, not a CERTIFICATE REQUEST"):
        vet_csr(fixture_bytes("ca-rsa2048.crt"), fqdn=FQDN)


def test_it_refuses_two_pem_blocks() -> None:
    pem = fixture_bytes("client-rsa2048.csr") + fixture_bytes("client-p256.csr")
    with pytest.raises(CsrRejected, match="more than one PEM block"):
        vet_csr(pem, fqdn=FQDN)


def test_it_refuses_a_csr_smuggled_next_to_a_private_key() -> None:
    pem = fixture_bytes("client-rsa2048.key") + fixture_bytes("client-rsa2048.csr")
    with pytest.raises(CsrRejected, match="more than one PEM block"):
        vet_csr(pem, fqdn=FQDN)


@pytest.mark.parametrize("extra", [b"trailing garbage\n", b"\x00", b"-----"])
def test_it_refuses_trailing_garbage(extra: bytes) -> None:
    with pytest.raises(CsrRejected, match="extra text before or after"):
        vet_csr(fixture_bytes("client-rsa2048.csr") + extra, fqdn=FQDN)


def test_it_refuses_leading_garbage() -> None:
    with pytest.raises(CsrRejected, match="extra text before or after"):
        vet_csr(b"Subject: CN=client.example.com\n" + fixture_bytes("client-rsa2048.csr"), fqdn=FQDN)


def test_it_refuses_a_9_kib_input_before_parsing_it() -> None:
    pem = fixture_bytes("client-rsa2048.csr") + b" " * (9 * 1024)
    with pytest.raises(CsrRejected, match=f"is {len(pem)} bytes; at most {MAX_CSR_BYTES} are accepted"):
        vet_csr(pem, fqdn=FQDN)


def test_it_refuses_a_truncated_pem() -> None:
    lines = fixture_bytes("client-rsa2048.csr").splitlines()
    body = b"".join(lines[1:-1])
    half = body[: len(body) // 2]
    with pytest.raises(CsrRejected, match="damaged and cannot be read"):
        vet_csr(lines[0] + b"\n" + half + b"\n" + lines[-1] + b"\n", fqdn=FQDN)


def test_it_refuses_a_pem_cut_off_before_its_end_line() -> None:
    pem = fixture_bytes("client-rsa2048.csr")
    with pytest.raises(CsrRejected, match="not a PEM certificate request"):
        vet_csr(pem[: len(pem) // 2], fqdn=FQDN)


def test_it_refuses_der_with_trailing_bytes_inside_the_pem() -> None:
    with pytest.raises(CsrRejected, match="damaged"):
        vet_csr(_pem(_good_der() + b"\x00\x00"), fqdn=FQDN)


def test_it_refuses_a_huge_length_field() -> None:
    der = b"\x30\x84\xff\xff\xff\xff" + _good_der()[4:]
    with pytest.raises(CsrRejected, match="damaged"):
        vet_csr(_pem(der), fqdn=FQDN)


def test_it_refuses_indefinite_length_ber() -> None:
    inner = _good_der()[4:]  # the RSA CSR's outer SEQUENCE has a two-byte long-form length
    with pytest.raises(CsrRejected, match="damaged"):
        vet_csr(_pem(b"\x30\x80" + inner + b"\x00\x00"), fqdn=FQDN)


def test_it_refuses_deep_nesting() -> None:
    der = b""
    for _ in range(500):
        der = b"\x30" + (bytes([len(der)]) if len(der) < 128 else b"\x82" + len(der).to_bytes(2, "big")) + der
    with pytest.raises(CsrRejected, match="damaged"):
        vet_csr(_pem(der), fqdn=FQDN)


def _only_csr_rejected(data: bytes | str) -> None:
    """The property of docs/security.md T9: whatever comes in, the only failure is CsrRejected."""
    try:
        vet_csr(data, fqdn=FQDN)
    except CsrRejected as exc:
        message = str(exc)
    else:
        message = "accepted"
    assert message  # a refusal always says why


FUZZ = settings(deadline=None, max_examples=300, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(st.binary(max_size=MAX_CSR_BYTES + 16))
def test_it_only_raises_csr_rejected_for_arbitrary_bytes(data: bytes) -> None:
    _only_csr_rejected(data)


@FUZZ
@given(st.text(max_size=600))
def test_it_only_raises_csr_rejected_for_arbitrary_text_in_a_pem_envelope(text: str) -> None:
    _only_csr_rejected(f"-----BEGIN CERTIFICATE REQUEST-----\n{text}\n-----END CERTIFICATE REQUEST-----\n")


@FUZZ
@given(st.binary(max_size=2048))
def test_it_only_raises_csr_rejected_for_base64_of_random_bytes(data: bytes) -> None:
    _only_csr_rejected(_pem(data))


@FUZZ
@given(st.data())
def test_it_only_raises_csr_rejected_for_mutated_real_csrs(data: st.DataObject) -> None:
    """Random bytes rarely get past the outer SEQUENCE; a few edits to a real CSR reach deeper parsers."""
    name = data.draw(st.sampled_from(["client-rsa2048.csr", "client-p256.csr", "asks-extra-san.csr"]))
    der = bytearray(x509.load_pem_x509_csr(fixture_bytes(name)).public_bytes(serialization.Encoding.DER))
    for _ in range(data.draw(st.integers(1, 4))):
        position = data.draw(st.integers(0, len(der) - 1))
        action = data.draw(st.sampled_from(["set", "insert", "delete", "truncate"]))
        if action == "set":
            der[position] = data.draw(st.integers(0, 255))
        elif action == "insert":
            der[position:position] = data.draw(st.binary(min_size=1, max_size=4))
        elif action == "delete":
            del der[position]
        else:
            del der[position:]
        if not der:
            break
    _only_csr_rejected(_pem(bytes(der)))


def _signed_request(info: bytes) -> bytes:
    """CertificationRequest { info, ecdsa-with-SHA256, signature over info by _KEY }."""
    signature = _KEY.sign(info, ec.ECDSA(hashes.SHA256()))
    return der.sequence(info, der.sequence(der.oid("1.2.840.10045.4.3.2")), der.tlv(0x03, b"\x00" + signature))


_RICH_INFO = x509.load_pem_x509_csr(
    _crafted(
        (x509.SubjectAlternativeName([x509.DNSName(FQDN), x509.DNSName("b.example.com")]), False),
        (x509.BasicConstraints(ca=False, path_length=None), True),
        (_key_usage(digital_signature=True), True),
        (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), False),
    )
).tbs_certrequest_bytes


def test_it_accepts_a_request_assembled_by_hand_then_refuses_its_extra_name() -> None:
    """The harness of the next test is sound: an untouched, re-signed body reaches the name check."""
    with pytest.raises(CsrRejected, match=re.escape("DNS:b.example.com")):
        vet_csr(_pem(_signed_request(_RICH_INFO)), fqdn=FQDN)


def test_it_refuses_an_unknown_csr_version() -> None:
    """Found by the fuzzer below: cryptography raises InvalidVersion, which is not a ValueError."""
    info = bytearray(_RICH_INFO)
    assert info[3:6] == b"\x02\x01\x00"  # version INTEGER 0 right after the SEQUENCE header
    info[5] = 1
    with pytest.raises(CsrRejected, match="damaged and cannot be read"):
        vet_csr(_pem(_signed_request(bytes(info))), fqdn=FQDN)


def test_it_refuses_a_common_name_encoded_as_a_bit_string() -> None:
    """Found by the fuzzer below: cryptography raises TypeError for a BIT STRING attribute value."""
    info = bytearray(_RICH_INFO)
    at = info.index(b"\x06\x03\x55\x04\x03\x0c")  # OID commonName, then the UTF8String tag
    info[at + 5] = 0x03  # BIT STRING
    info[at + 7] = 0x00  # "unused bits" octet, so that the BIT STRING itself is well formed
    with pytest.raises(CsrRejected, match="subject cannot be read"):
        vet_csr(_pem(_signed_request(bytes(info))), fqdn=FQDN)


@FUZZ
@given(st.data())
def test_it_only_raises_csr_rejected_for_mutated_bodies_with_valid_signatures(data: st.DataObject) -> None:
    """Edits to the request body, signed again, get past the signature check into subject and extensions."""
    info = bytearray(_RICH_INFO)
    for _ in range(data.draw(st.integers(1, 3))):
        position = data.draw(st.integers(0, len(info) - 1))
        if data.draw(st.booleans()):
            info[position] = data.draw(st.integers(0, 255))
        else:
            info[position:position] = data.draw(st.binary(min_size=1, max_size=3))
    _only_csr_rejected(_pem(_signed_request(bytes(info))))
