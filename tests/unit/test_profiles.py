"""profiles: serials, validity, CA names and the CA certificate profile (docs/security.md T11, RFC 5280 pitfalls)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from hypothesis import given, settings
from hypothesis import strategies as st

from pki import der
from pki.errors import IssuanceRefused, PkiError
from pki.keys import load_private_key
from pki.profiles import (
    BACKDATE,
    MAX_CA_DAYS,
    MAX_LEAF_DAYS,
    MIN_CA_DAYS,
    CaSubject,
    build_ca_certificate,
    leaf_validity,
    serial_from_random,
)
from tests.conftest import fixture_bytes
from tests.pkitools import openssl_verify, pkilint_errors

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
CA_NOT_AFTER = datetime(2035, 12, 30, tzinfo=UTC)

# --- serials --------------------------------------------------------------------------------------


@settings(max_examples=500)
@given(st.binary(min_size=20, max_size=20))
def test_it_draws_serials_in_the_open_interval_0_to_2_pow_159(random_bytes: bytes) -> None:
    top_159_bits = int.from_bytes(random_bytes, "big") >> 1
    if top_159_bits == 0:
        with pytest.raises(ValueError, match="zero serial"):
            serial_from_random(random_bytes)
    else:
        serial = serial_from_random(random_bytes)
        assert serial == top_159_bits
        assert 0 < serial < 2**159
        assert len(der.integer(serial)) - 2 <= 20  # RFC 5280: at most 20 content octets in DER


def test_it_uses_159_bits_at_most() -> None:
    assert serial_from_random(b"\xff" * 20) == 2**159 - 1


def test_it_refuses_a_zero_serial() -> None:
    with pytest.raises(ValueError, match="zero serial; draw again"):
        serial_from_random(b"\x00" * 20)


def test_it_refuses_a_serial_whose_only_set_bit_is_shifted_out() -> None:
    with pytest.raises(ValueError, match="zero serial"):
        serial_from_random(b"\x00" * 19 + b"\x01")


def test_it_refuses_fewer_than_20_random_bytes() -> None:
    with pytest.raises(ValueError, match="needs 20 random bytes"):
        serial_from_random(b"\xff" * 19)


def test_it_uses_only_the_first_20_bytes() -> None:
    assert serial_from_random(b"\x80" + b"\x00" * 19 + b"\xff" * 8) == 2**158


# --- leaf validity --------------------------------------------------------------------------------


def test_it_backdates_not_before_by_one_hour() -> None:
    not_before, not_after = leaf_validity(NOW, 365, CA_NOT_AFTER)
    assert BACKDATE == timedelta(hours=1)
    assert not_before == datetime(2026, 6, 1, 11, 0, tzinfo=UTC)
    assert not_after == datetime(2027, 6, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize("days", [1, MAX_LEAF_DAYS])
def test_it_accepts_the_extreme_validities(days: int) -> None:
    assert leaf_validity(NOW, days, CA_NOT_AFTER)[1] == NOW + timedelta(days=days)


def test_it_caps_not_after_at_the_ca_not_after() -> None:
    ca_not_after = datetime(2026, 9, 1, tzinfo=UTC)
    assert leaf_validity(NOW, 365, ca_not_after) == (NOW - BACKDATE, ca_not_after)


@pytest.mark.parametrize("days", [0, -1, MAX_LEAF_DAYS + 1, 3650])
def test_it_refuses_validity_out_of_range(days: int) -> None:
    with pytest.raises(IssuanceRefused, match=f"between 1 and {MAX_LEAF_DAYS} days, not {days}"):
        leaf_validity(NOW, days, CA_NOT_AFTER)


@pytest.mark.parametrize("left", [timedelta(hours=-1), timedelta(0), timedelta(hours=23), timedelta(days=1)])
def test_it_refuses_when_the_ca_expires_within_a_day(left: timedelta) -> None:
    with pytest.raises(IssuanceRefused, match="renew the CA first"):
        leaf_validity(NOW, 30, NOW + left)


def test_it_issues_when_the_ca_has_a_little_over_a_day_left() -> None:
    ca_not_after = NOW + timedelta(days=1, seconds=1)
    assert leaf_validity(NOW, 30, ca_not_after) == (NOW - BACKDATE, ca_not_after)


# --- CA subject -----------------------------------------------------------------------------------


def test_it_builds_the_ca_name_from_typed_attributes_in_order() -> None:
    name = CaSubject("EuroBSDcon CA", organization="EuroBSDcon", country="nl").to_name()
    assert [(a.oid, a.value) for a in name] == [
        (NameOID.COUNTRY_NAME, "NL"),
        (NameOID.ORGANIZATION_NAME, "EuroBSDcon"),
        (NameOID.COMMON_NAME, "EuroBSDcon CA"),
    ]


def test_it_leaves_out_empty_optional_attributes() -> None:
    name = CaSubject("Only CA").to_name()
    assert [(a.oid, a.value) for a in name] == [(NameOID.COMMON_NAME, "Only CA")]


@pytest.mark.parametrize("value", ["x,O=Trusted", "x+O=Trusted", "x/O=Trusted", "CN=x, O=Trusted"])
def test_it_does_not_let_a_common_name_inject_an_rdn(value: str) -> None:
    name = CaSubject(value).to_name()
    assert len(name.rdns) == 1
    common_names = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    assert [a.value for a in common_names] == [value]
    assert name.get_attributes_for_oid(NameOID.ORGANIZATION_NAME) == []


def test_it_escapes_the_injection_attempt_when_printed() -> None:
    assert CaSubject("x,O=Trusted").to_name().rfc4514_string() == "CN=x\\,O=Trusted"


@pytest.mark.parametrize(
    ("subject", "message"),
    [
        (CaSubject("evil\nCA"), "control characters"),
        (CaSubject("evil\x00CA"), "control characters"),
        (CaSubject("CA", organization="Org\r\nX"), "control characters"),
        (CaSubject("CA\x7f"), "control characters"),
        (CaSubject(""), "1 to 64 characters"),
        (CaSubject("x" * 65), "1 to 64 characters"),
        (CaSubject("CA", organization="o" * 65), "at most 64 characters"),
        (CaSubject("CA", country="N1"), "two-letter code"),
        (CaSubject("CA", country="NLD"), "two-letter code"),
        (CaSubject("CA", country="N"), "two-letter code"),
        (CaSubject("CA", country="ÑL"), "two-letter code"),
        (CaSubject("CA", country="N\n"), "two-letter code"),
    ],
)
def test_it_refuses_a_bad_ca_subject(subject: CaSubject, message: str) -> None:
    with pytest.raises(PkiError, match=message):
        subject.to_name()


def test_it_accepts_a_64_character_common_name() -> None:
    assert CaSubject("x" * 64).to_name().get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "x" * 64


# --- CA certificate profile -----------------------------------------------------------------------


def _ca(key: ec.EllipticCurvePrivateKey | None = None, **kwargs: object) -> x509.Certificate:
    options: dict[str, object] = {
        "subject": CaSubject("Test CA", organization="Example", country="NL").to_name(),
        "serial": 0x1234,
        "not_before": datetime(2026, 1, 1, tzinfo=UTC),
        "days": 3650,
    }
    options.update(kwargs)
    return build_ca_certificate(key or ec.generate_private_key(ec.SECP384R1()), **options)  # type: ignore[arg-type]


def test_it_makes_ca_certificates_with_critical_basic_constraints_pathlen_0() -> None:
    bc = _ca().extensions.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical
    assert bc.value == x509.BasicConstraints(ca=True, path_length=0)


def test_it_gives_ca_certificates_only_key_cert_sign_and_crl_sign() -> None:
    ku = _ca().extensions.get_extension_for_class(x509.KeyUsage)
    assert ku.critical
    assert ku.value == x509.KeyUsage(
        digital_signature=False,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=True,
        crl_sign=True,
        encipher_only=False,
        decipher_only=False,
    )


def test_it_makes_the_aki_keyid_equal_the_ski() -> None:
    key = ec.generate_private_key(ec.SECP384R1())
    cert = _ca(key)
    ski = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier)
    assert not ski.critical
    assert not aki.critical
    assert ski.value.digest == x509.SubjectKeyIdentifier.from_public_key(key.public_key()).digest
    assert aki.value.key_identifier == ski.value.digest
    assert aki.value.authority_cert_issuer is None
    assert aki.value.authority_cert_serial_number is None


def test_it_makes_exactly_four_extensions() -> None:
    assert [type(e.value).__name__ for e in _ca().extensions] == [
        "BasicConstraints",
        "KeyUsage",
        "SubjectKeyIdentifier",
        "AuthorityKeyIdentifier",
    ]


def test_it_self_signs_with_the_hash_that_goes_with_the_key() -> None:
    cert = _ca()
    assert cert.issuer == cert.subject
    assert cert.signature_hash_algorithm is not None
    assert cert.signature_hash_algorithm.name == "sha384"
    cert.verify_directly_issued_by(cert)


def test_it_sets_serial_and_validity_as_asked() -> None:
    cert = _ca(serial=0xABCDEF, not_before=datetime(2030, 5, 6, 7, 8, 9, tzinfo=UTC), days=MIN_CA_DAYS)
    assert cert.serial_number == 0xABCDEF
    assert cert.not_valid_before_utc == datetime(2030, 5, 6, 7, 8, 9, tzinfo=UTC)
    assert cert.not_valid_after_utc == datetime(2030, 6, 5, 7, 8, 9, tzinfo=UTC)


@pytest.mark.parametrize("days", [MIN_CA_DAYS - 1, MAX_CA_DAYS + 1, 0])
def test_it_refuses_ca_validity_out_of_range(days: int) -> None:
    with pytest.raises(PkiError, match=f"between {MIN_CA_DAYS} and {MAX_CA_DAYS} days"):
        _ca(days=days)


def test_it_makes_an_rsa_ca_that_openssl_and_pkilint_accept() -> None:
    key = load_private_key(fixture_bytes("ca-rsa2048.key"), None)
    cert = build_ca_certificate(
        key, subject=CaSubject("RSA CA").to_name(), serial=1, not_before=datetime(2026, 1, 1, tzinfo=UTC), days=3650
    )
    assert cert.signature_hash_algorithm is not None
    assert cert.signature_hash_algorithm.name == "sha256"
    pem = cert.public_bytes(serialization.Encoding.PEM)
    openssl_verify(pem, pem, at=NOW)
    assert pkilint_errors(cert.public_bytes(serialization.Encoding.DER)) == []


def test_it_makes_an_ec_ca_that_openssl_and_pkilint_accept() -> None:
    cert = _ca()
    pem = cert.public_bytes(serialization.Encoding.PEM)
    openssl_verify(pem, pem, at=NOW)
    assert pkilint_errors(cert.public_bytes(serialization.Encoding.DER)) == []
