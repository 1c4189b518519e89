"""crl: the CA's v2 CRL (RFC 5280 §5), its validity window and renewal at half-life.

Outside judges as for certificates: ``openssl crl -verify`` and ``openssl verify -crl_check``,
and pkilint's RFC 5280 CRL linter (the validator set of its ``lint_crl -t CRL -p PKIX``).
"""

from __future__ import annotations

import functools
import os
import re
import subprocess
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import CRLEntryExtensionOID, ExtensionOID, NameOID
from pkilint import loader, pkix
from pkilint.pkix import crl as pkilint_crl
from pkilint.pkix import extension, name
from pkilint.pkix.crl import crl_extension
from pkilint.validation import ValidationFindingSeverity

from pki.crl import (
    CRL_NUMBER_LIMIT,
    MAX_CRL_DAYS,
    REASONS,
    RevokedEntry,
    build_crl,
    crl_validity,
    renewal_due,
)
from pki.errors import IssuanceRefused, PkiError
from pki.issue import sign_tbs
from pki.keys import PrivateKey, load_private_key
from pki.profiles import LeafSpec, leaf_builder, tbs_bytes
from tests.conftest import fixture_bytes
from tests.pkitools import openssl_asn1parse

CAS = ("rsa2048", "p384")
THIS_UPDATE = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
NEXT_UPDATE = datetime(2026, 6, 8, 12, 0, tzinfo=UTC)
CHECK_AT = datetime(2026, 6, 2, tzinfo=UTC)  # inside the CRL's and the leaves' validity
REVOKED_AT = datetime(2026, 5, 30, 9, 15, 42, tzinfo=UTC)
REVOKED_SERIAL = 0x0123456789ABCDEF
GOOD_SERIAL = 0x0FEDCBA987654321
ONE_PER_REASON = [
    RevokedEntry(serial=0x1000 + i, revoked_at=REVOKED_AT + timedelta(minutes=i), reason=reason)
    for i, reason in enumerate(REASONS)
]


@dataclass(frozen=True)
class FixtureCa:
    cert: x509.Certificate
    key: PrivateKey


@functools.cache
def fixture_ca(ca_name: str) -> FixtureCa:
    cert = x509.load_pem_x509_certificate(fixture_bytes(f"ca-{ca_name}.crt"))
    return FixtureCa(cert=cert, key=load_private_key(fixture_bytes(f"ca-{ca_name}.key"), None))


def make_crl(ca_name: str, entries: list[RevokedEntry] | None = None, **changes: Any) -> x509.CertificateRevocationList:
    ca = fixture_ca(ca_name)
    arguments: dict[str, Any] = {
        "ca_cert": ca.cert,
        "ca_key": ca.key,
        "number": 42,
        "this_update": THIS_UPDATE,
        "next_update": NEXT_UPDATE,
        "entries": ONE_PER_REASON if entries is None else entries,
    }
    arguments.update(changes)
    return build_crl(**arguments)


def crl_der(crl: x509.CertificateRevocationList) -> bytes:
    return crl.public_bytes(serialization.Encoding.DER)


def crl_pem(crl: x509.CertificateRevocationList) -> bytes:
    return crl.public_bytes(serialization.Encoding.PEM)


def cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def leaf(ca_name: str, serial: int) -> x509.Certificate:
    """A peer certificate of the fixture CA, made as the signer makes them (record the TBS, sign it)."""
    ca = fixture_ca(ca_name)
    public_key = x509.load_pem_x509_csr(fixture_bytes("client-p256.csr")).public_key()
    assert isinstance(public_key, ec.EllipticCurvePublicKey)
    spec = LeafSpec(
        fqdn="client.example.com",
        public_key=public_key,
        serial=serial,
        not_before=datetime(2026, 3, 1, 11, 0, tzinfo=UTC),
        not_after=datetime(2027, 3, 1, 12, 0, tzinfo=UTC),
        crl_url="https://ca.example.org/crl.der",
    )
    ca_public = ca.cert.public_key()
    assert isinstance(ca_public, (rsa.RSAPublicKey, ec.EllipticCurvePublicKey))
    # The CA key itself materialises the draft: its signature is thrown away like a throwaway key's.
    return sign_tbs(tbs_bytes(leaf_builder(spec, ca.cert), ca_public, ca.key), ca.key, ca.cert)


# --- outside judges -------------------------------------------------------------------------------


def _run(command: list[str], files: dict[str, bytes]) -> str:
    with tempfile.TemporaryDirectory(prefix="test-crl-") as tmp:
        for file_name, content in files.items():
            Path(tmp, file_name).write_bytes(content)
        result = subprocess.run(command, capture_output=True, text=True, check=False, cwd=tmp)
    return f"exit {result.returncode}\n{result.stdout}{result.stderr}"


def openssl_crl_verify(crl_pem_bytes: bytes, ca_pem: bytes) -> str:
    """``openssl crl -verify``: OpenSSL checks the CRL's signature under the CA certificate."""
    command = ["openssl", "crl", "-in", "crl.pem", "-CAfile", "ca.pem", "-noout", "-verify"]
    return _run(command, {"crl.pem": crl_pem_bytes, "ca.pem": ca_pem})


def openssl_verify_with_crl(leaf_pem: bytes, ca_pem: bytes, crl_pem_bytes: bytes, *, at: datetime) -> str:
    """``openssl verify -x509_strict -crl_check``: the leaf's chain, then its serial against the CRL."""
    command = ["openssl", "verify", "-x509_strict", "-crl_check", "-attime", str(int(at.timestamp()))]
    command += ["-CAfile", "ca.pem", "-CRLfile", "crl.pem", "leaf.pem"]
    return _run(command, {"leaf.pem": leaf_pem, "ca.pem": ca_pem, "crl.pem": crl_pem_bytes})


@functools.cache
def _pkix_crl_validator() -> Any:
    """The validator set of pkilint's ``lint_crl -t CRL -p PKIX`` (pkilint/bin/lint_crl.py), built once,
    plus CrlReasonCodeValidator (RFC 5280 §5.3.1, unspecified SHOULD be absent), which pkilint 0.13.3
    defines but does not wire in."""
    return pkilint_crl.create_pkix_crl_validator_container(
        [
            pkix.create_attribute_decoder(name.ATTRIBUTE_TYPE_MAPPINGS),
            pkix.create_extension_decoder(extension.EXTENSION_MAPPINGS),
        ],
        [
            pkilint_crl.create_issuer_validator_container([]),
            pkilint_crl.create_validity_validator_container([]),
            pkilint_crl.create_extensions_validator_container([]),
            crl_extension.CrlReasonCodeValidator(),
        ],
    )


def pkilint_crl_findings(der: bytes) -> dict[str, list[str]]:
    """pkilint's RFC 5280 CRL findings, ``validator @ path: finding`` strings by "errors" and "warnings"."""
    document = loader.RFC5280CertificateListDocumentLoader().load_der_document(der, "crl")
    findings: dict[str, list[str]] = {"errors": [], "warnings": []}
    for result in _pkix_crl_validator().validate(document.root):
        for description in result.finding_descriptions:
            severity = description.finding.severity
            text = f"{result.validator} @ {result.node.path}: {description}"
            if severity <= ValidationFindingSeverity.ERROR:
                findings["errors"].append(text)
            elif severity <= ValidationFindingSeverity.WARNING:
                findings["warnings"].append(text)
    return findings


@pytest.mark.parametrize("ca_name", CAS)
def test_it_makes_a_crl_that_openssl_verifies_under_the_ca(ca_name: str) -> None:
    output = openssl_crl_verify(crl_pem(make_crl(ca_name)), cert_pem(fixture_ca(ca_name).cert))
    assert output.startswith("exit 0\n")
    assert "verify OK" in output, output


def test_it_is_caught_by_openssl_when_the_crl_is_checked_under_another_ca() -> None:
    """openssl_crl_verify really checks: the P-384 CA's CRL does not verify under the RSA CA."""
    output = openssl_crl_verify(crl_pem(make_crl("p384")), cert_pem(fixture_ca("rsa2048").cert))
    assert "verify OK" not in output, output


@pytest.mark.parametrize("ca_name", CAS)
def test_it_makes_crls_without_pkilint_errors(ca_name: str) -> None:
    findings = pkilint_crl_findings(crl_der(make_crl(ca_name)))
    assert findings["errors"] == [], f"warnings: {findings['warnings']}"


def test_it_is_caught_by_pkilint_when_a_crl_lacks_its_number_and_aki() -> None:
    """pkilint_crl_findings really reports: cryptography's builder alone makes a CRL RFC 5280 refuses."""
    ca = fixture_ca("rsa2048")
    bare = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca.cert.subject)
        .last_update(THIS_UPDATE)
        .next_update(NEXT_UPDATE)
        .sign(ca.key, hashes.SHA256())
    )
    errors = pkilint_crl_findings(crl_der(bare))["errors"]
    assert any("pkix.crl_number_missing" in error for error in errors), errors
    assert any("authority_key_identifier" in error for error in errors), errors


# --- contents -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("ca_name", "hash_name"), [("rsa2048", "sha256"), ("p384", "sha384")])
def test_it_names_the_ca_and_signs_with_the_hash_the_ca_uses_for_certificates(ca_name: str, hash_name: str) -> None:
    crl = make_crl(ca_name)
    assert crl.issuer == fixture_ca(ca_name).cert.subject
    assert crl.signature_hash_algorithm is not None
    assert crl.signature_hash_algorithm.name == hash_name
    assert crl.signature_algorithm_oid == fixture_ca(ca_name).cert.signature_algorithm_oid
    assert openssl_asn1parse(crl.tbs_certlist_bytes).splitlines()[1].endswith("INTEGER           :01")  # v2


@pytest.mark.parametrize("ca_name", CAS)
def test_it_writes_the_crl_number_in_a_non_critical_extension(ca_name: str) -> None:
    number = make_crl(ca_name).extensions.get_extension_for_class(x509.CRLNumber)
    assert not number.critical
    assert number.value.crl_number == 42


@pytest.mark.parametrize("number", [0, 1, 2**63, CRL_NUMBER_LIMIT - 1])
def test_it_accepts_crl_numbers_from_0_to_2_pow_159_minus_1(number: int) -> None:
    crl = make_crl("p384", [], number=number)
    assert crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == number
    assert pkilint_crl_findings(crl_der(crl))["errors"] == []


@pytest.mark.parametrize("ca_name", CAS)
def test_it_links_the_crl_to_the_ca_key_with_the_ca_ski(ca_name: str) -> None:
    ca = fixture_ca(ca_name)
    aki = make_crl(ca_name).extensions.get_extension_for_class(x509.AuthorityKeyIdentifier)
    assert not aki.critical
    ca_ski = ca.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert aki.value.key_identifier == ca_ski.digest
    assert aki.value.authority_cert_issuer is None
    assert aki.value.authority_cert_serial_number is None


def test_it_derives_the_aki_from_the_ca_key_when_the_ca_has_no_ski() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Old CA")])
    old_ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(datetime(2026, 1, 1, tzinfo=UTC))
        .not_valid_after(datetime(2030, 1, 1, tzinfo=UTC))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    crl = build_crl(ca_cert=old_ca, ca_key=key, number=1, this_update=THIS_UPDATE, next_update=NEXT_UPDATE, entries=[])
    aki = crl.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    assert aki.key_identifier == x509.SubjectKeyIdentifier.from_public_key(key.public_key()).digest


@pytest.mark.parametrize("ca_name", CAS)
def test_it_has_exactly_the_aki_and_crl_number_extensions(ca_name: str) -> None:
    assert [ext.oid for ext in make_crl(ca_name).extensions] == [
        ExtensionOID.AUTHORITY_KEY_IDENTIFIER,
        ExtensionOID.CRL_NUMBER,
    ]


def test_it_writes_this_update_and_next_update_as_given() -> None:
    crl = make_crl("rsa2048")
    assert crl.last_update_utc == THIS_UPDATE
    assert crl.next_update_utc == NEXT_UPDATE


def test_it_converts_other_time_zones_to_utc_and_drops_fractions_of_a_second() -> None:
    plus_two = timezone(timedelta(hours=2))
    revoked_at = datetime(2026, 5, 30, 11, 15, 42, 999_999, tzinfo=plus_two)
    crl = make_crl(
        "p384",
        [RevokedEntry(serial=7, revoked_at=revoked_at, reason="superseded")],
        this_update=datetime(2026, 6, 1, 14, 0, 0, 500_000, tzinfo=plus_two),
        next_update=datetime(2026, 6, 8, 14, 0, 0, 1, tzinfo=plus_two),
    )
    assert crl.last_update_utc == THIS_UPDATE
    assert crl.next_update_utc == NEXT_UPDATE
    entry = crl.get_revoked_certificate_by_serial_number(7)
    assert entry is not None
    assert entry.revocation_date_utc == REVOKED_AT


@pytest.mark.parametrize("reason", [reason for reason in REASONS if reason != "unspecified"])
@pytest.mark.parametrize("ca_name", CAS)
def test_it_round_trips_the_reason_code(ca_name: str, reason: str) -> None:
    crl = x509.load_der_x509_crl(crl_der(make_crl(ca_name)))
    serial = next(entry.serial for entry in ONE_PER_REASON if entry.reason == reason)
    revoked = crl.get_revoked_certificate_by_serial_number(serial)
    assert revoked is not None
    code = revoked.extensions.get_extension_for_class(x509.CRLReason)
    assert not code.critical
    assert code.value.reason == REASONS[reason]
    assert (
        code.value.reason.name
        == {
            "keyCompromise": "key_compromise",
            "affiliationChanged": "affiliation_changed",
            "superseded": "superseded",
            "cessationOfOperation": "cessation_of_operation",
            "privilegeWithdrawn": "privilege_withdrawn",
        }[reason]
    )


def test_it_leaves_out_the_reason_code_for_unspecified() -> None:
    """RFC 5280 §5.3.1: the reasonCode unspecified SHOULD be absent (pkilint warns when it is not, below)."""
    crl = make_crl("rsa2048", [RevokedEntry(serial=99, revoked_at=REVOKED_AT, reason="unspecified")])
    revoked = crl.get_revoked_certificate_by_serial_number(99)
    assert revoked is not None
    assert len(revoked.extensions) == 0
    assert pkilint_crl_findings(crl_der(crl)) == {"errors": [], "warnings": []}


def test_it_is_warned_by_pkilint_when_an_entry_gives_the_unspecified_reason_code() -> None:
    """pkilint_crl_findings really looks at entries: cryptography writes an unspecified reasonCode if asked."""
    ca = fixture_ca("p384")
    entry = (
        x509.RevokedCertificateBuilder()
        .serial_number(99)
        .revocation_date(REVOKED_AT)
        .add_extension(x509.CRLReason(x509.ReasonFlags.unspecified), critical=False)
        .build()
    )
    raw = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca.cert.subject)
        .last_update(THIS_UPDATE)
        .next_update(NEXT_UPDATE)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()), critical=False)
        .add_extension(x509.CRLNumber(1), critical=False)
        .add_revoked_certificate(entry)
        .sign(ca.key, hashes.SHA384())
    )
    findings = pkilint_crl_findings(crl_der(raw))
    assert findings["errors"] == []
    assert len(findings["warnings"]) == 1
    assert "pkix.crl_unspecified_crl_entry_reason_code" in findings["warnings"][0]


def test_it_keeps_the_revocation_date_and_no_invalidity_date() -> None:
    crl = make_crl("p384")
    assert len(crl) == len(REASONS)
    for entry in ONE_PER_REASON:
        revoked = crl.get_revoked_certificate_by_serial_number(entry.serial)
        assert revoked is not None
        assert revoked.revocation_date_utc == entry.revoked_at
        assert {ext.oid for ext in revoked.extensions} <= {CRLEntryExtensionOID.CRL_REASON}


def test_it_lists_entries_in_serial_order_whatever_order_they_come_in() -> None:
    crl = make_crl("rsa2048", list(reversed(ONE_PER_REASON)))
    assert [revoked.serial_number for revoked in crl] == sorted(entry.serial for entry in ONE_PER_REASON)
    # RSA PKCS#1 v1.5 is deterministic: the same revocations give byte-for-byte the same CRL.
    assert crl_der(crl) == crl_der(make_crl("rsa2048"))


def test_it_accepts_the_largest_159_bit_serial() -> None:
    crl = make_crl("p384", [RevokedEntry(serial=2**159 - 1, revoked_at=REVOKED_AT, reason="keyCompromise")])
    assert crl.get_revoked_certificate_by_serial_number(2**159 - 1) is not None
    assert pkilint_crl_findings(crl_der(crl))["errors"] == []


def test_it_encodes_times_from_2050_on_as_generalized_time() -> None:
    crl = make_crl(
        "p384",
        [RevokedEntry(serial=5, revoked_at=datetime(2049, 12, 31, 23, 0, tzinfo=UTC), reason="superseded")],
        this_update=datetime(2049, 12, 31, 23, 30, tzinfo=UTC),
        next_update=datetime(2050, 1, 7, 23, 30, tzinfo=UTC),
    )
    tbs = crl.tbs_certlist_bytes
    assert b"\x17\x0d491231233000Z" in tbs  # thisUpdate: UTCTime up to 2049
    assert b"\x18\x0f20500107233000Z" in tbs  # nextUpdate: GeneralizedTime from 2050
    assert b"\x17\x0d491231230000Z" in tbs  # revocationDate
    assert pkilint_crl_findings(crl_der(crl))["errors"] == []


# --- an empty CRL ---------------------------------------------------------------------------------


@pytest.mark.parametrize("ca_name", CAS)
def test_it_makes_a_valid_empty_crl(ca_name: str) -> None:
    """RFC 5280 §5.1.2.6: with no revoked certificate the revokedCertificates list is absent, not empty."""
    crl = make_crl(ca_name, [])
    assert len(crl) == 0
    dump = openssl_asn1parse(crl.tbs_certlist_bytes)
    top_level = re.findall(r"d=1 .*?(?:prim|cons):\s+(\S+)", dump)
    # version, signature, issuer, thisUpdate, nextUpdate, then straight the [0] crlExtensions
    assert top_level == ["INTEGER", "SEQUENCE", "SEQUENCE", "UTCTIME", "UTCTIME", "cont"], dump
    output = openssl_crl_verify(crl_pem(crl), cert_pem(fixture_ca(ca_name).cert))
    assert "verify OK" in output, output
    assert pkilint_crl_findings(crl_der(crl))["errors"] == []
    accepted = openssl_verify_with_crl(
        cert_pem(leaf(ca_name, GOOD_SERIAL)), cert_pem(fixture_ca(ca_name).cert), crl_pem(crl), at=CHECK_AT
    )
    assert accepted.startswith("exit 0\n"), accepted


# --- openssl verify -crl_check --------------------------------------------------------------------


@pytest.mark.parametrize("ca_name", CAS)
def test_it_makes_openssl_refuse_a_revoked_leaf(ca_name: str) -> None:
    ca = fixture_ca(ca_name)
    crl = make_crl(ca_name, [*ONE_PER_REASON, RevokedEntry(REVOKED_SERIAL, REVOKED_AT, "keyCompromise")])
    output = openssl_verify_with_crl(
        cert_pem(leaf(ca_name, REVOKED_SERIAL)), cert_pem(ca.cert), crl_pem(crl), at=CHECK_AT
    )
    assert not output.startswith("exit 0\n"), output
    assert "certificate revoked" in output, output


@pytest.mark.parametrize("ca_name", CAS)
def test_it_makes_openssl_accept_a_leaf_that_is_not_revoked(ca_name: str) -> None:
    ca = fixture_ca(ca_name)
    crl = make_crl(ca_name, [*ONE_PER_REASON, RevokedEntry(REVOKED_SERIAL, REVOKED_AT, "keyCompromise")])
    output = openssl_verify_with_crl(cert_pem(leaf(ca_name, GOOD_SERIAL)), cert_pem(ca.cert), crl_pem(crl), at=CHECK_AT)
    assert output.startswith("exit 0\n"), output
    assert output.strip().endswith("leaf.pem: OK"), output


def test_it_makes_openssl_refuse_every_leaf_once_the_crl_has_expired() -> None:
    """Why renewal matters: after nextUpdate, a peer that checks CRLs refuses good certificates too."""
    ca = fixture_ca("p384")
    output = openssl_verify_with_crl(
        cert_pem(leaf("p384", GOOD_SERIAL)),
        cert_pem(ca.cert),
        crl_pem(make_crl("p384")),
        at=NEXT_UPDATE + timedelta(hours=1),
    )
    assert "CRL has expired" in output, output


# --- refusals -------------------------------------------------------------------------------------


@pytest.mark.parametrize("field", ["this_update", "next_update"])
def test_it_refuses_naive_update_times(field: str) -> None:
    naive = {"this_update": THIS_UPDATE, "next_update": NEXT_UPDATE}[field].replace(tzinfo=None)
    with pytest.raises(IssuanceRefused, match="has no time zone"):
        make_crl("p384", **{field: naive})


def test_it_refuses_a_naive_revocation_date() -> None:
    entry = RevokedEntry(serial=0x2A, revoked_at=REVOKED_AT.replace(tzinfo=None), reason="superseded")
    with pytest.raises(IssuanceRefused, match="revocation date of serial 0x2a has no time zone"):
        make_crl("p384", [entry])


@pytest.mark.parametrize(
    "next_update",
    [THIS_UPDATE, THIS_UPDATE - timedelta(seconds=1), THIS_UPDATE + timedelta(microseconds=999_999)],
    ids=["equal", "before", "same-second"],
)
def test_it_refuses_a_next_update_that_is_not_after_this_update(next_update: datetime) -> None:
    with pytest.raises(IssuanceRefused, match=r"nextUpdate .* must be after thisUpdate"):
        make_crl("rsa2048", next_update=next_update)


def test_it_refuses_dates_before_1950() -> None:
    with pytest.raises(IssuanceRefused, match="1950"):
        make_crl("p384", this_update=datetime(1949, 12, 31, tzinfo=UTC))
    with pytest.raises(IssuanceRefused, match="before 1950"):
        make_crl("p384", [RevokedEntry(3, datetime(1949, 1, 1, tzinfo=UTC), "superseded")])


@pytest.mark.parametrize("number", [-1, CRL_NUMBER_LIMIT, 2**160])
def test_it_refuses_a_crl_number_out_of_range(number: int) -> None:
    assert CRL_NUMBER_LIMIT == 2**159
    with pytest.raises(IssuanceRefused, match="CRL number must be at least 0 and below 2\\*\\*159"):
        make_crl("p384", number=number)


@pytest.mark.parametrize("serial", [0, -5, 2**159])
def test_it_refuses_a_serial_no_certificate_can_have(serial: int) -> None:
    with pytest.raises(IssuanceRefused, match="is outside 1 to 2\\*\\*159 - 1"):
        make_crl("p384", [RevokedEntry(serial, REVOKED_AT, "superseded")])


def test_it_refuses_a_serial_listed_twice() -> None:
    with pytest.raises(IssuanceRefused, match="serial 0x1000 is listed twice"):
        make_crl("p384", [*ONE_PER_REASON, RevokedEntry(0x1000, REVOKED_AT, "keyCompromise")])


@pytest.mark.parametrize("reason", ["certificateHold", "removeFromCRL", "cACompromise", "key_compromise", ""])
def test_it_refuses_a_reason_this_ca_does_not_give(reason: str) -> None:
    with pytest.raises(IssuanceRefused, match="unknown revocation reason"):
        make_crl("p384", [RevokedEntry(0x2A, REVOKED_AT, reason)])


def test_it_refuses_to_publish_when_the_key_does_not_match_the_ca_certificate() -> None:
    """The fault guard: the CRL's signature is checked under the CA certificate before it leaves."""
    impostor_key = ec.generate_private_key(ec.SECP384R1())
    with pytest.raises(IssuanceRefused, match="does not verify under the CA certificate"):
        make_crl("p384", ca_key=impostor_key)
    with pytest.raises(IssuanceRefused, match="does not verify under the CA certificate"):
        make_crl("p384", ca_key=fixture_ca("rsa2048").key)


def test_it_refuses_with_messages_a_person_can_read() -> None:
    assert issubclass(IssuanceRefused, PkiError)
    with pytest.raises(PkiError) as caught:
        make_crl("p384", [RevokedEntry(0x2A, REVOKED_AT, "onHold")])
    assert str(caught.value).startswith("unknown revocation reason 'onHold' for serial 0x2a; use one of: unspecified")


# --- validity and renewal -------------------------------------------------------------------------

CA_NOT_AFTER = datetime(2035, 12, 30, tzinfo=UTC)


def test_it_starts_the_crl_now_to_the_second_and_ends_it_days_later() -> None:
    this_update, next_update = crl_validity(datetime(2026, 6, 1, 12, 0, 7, 654_321, tzinfo=UTC), 7, CA_NOT_AFTER)
    assert this_update == datetime(2026, 6, 1, 12, 0, 7, tzinfo=UTC)
    assert next_update == datetime(2026, 6, 8, 12, 0, 7, tzinfo=UTC)


def test_it_never_lets_the_crl_outlive_the_ca() -> None:
    ca_not_after = datetime(2026, 6, 3, tzinfo=UTC)
    assert crl_validity(THIS_UPDATE, 7, ca_not_after) == (THIS_UPDATE, ca_not_after)


def test_it_refuses_a_crl_window_once_the_ca_has_expired() -> None:
    with pytest.raises(IssuanceRefused, match="the CA certificate expired on 2026-06-01 12:00 UTC"):
        crl_validity(THIS_UPDATE, 7, THIS_UPDATE)


@pytest.mark.parametrize("days", [0, -1, MAX_CRL_DAYS + 1])
def test_it_refuses_a_crl_validity_outside_1_to_365_days(days: int) -> None:
    with pytest.raises(IssuanceRefused, match=f"between 1 and {MAX_CRL_DAYS} days"):
        crl_validity(THIS_UPDATE, days, CA_NOT_AFTER)


def test_it_refuses_naive_datetimes_for_the_window() -> None:
    with pytest.raises(IssuanceRefused, match="now has no time zone"):
        crl_validity(THIS_UPDATE.replace(tzinfo=None), 7, CA_NOT_AFTER)
    with pytest.raises(IssuanceRefused, match="notAfter has no time zone"):
        crl_validity(THIS_UPDATE, 7, CA_NOT_AFTER.replace(tzinfo=None))


def test_it_makes_a_window_build_crl_accepts() -> None:
    ca = fixture_ca("rsa2048")
    this_update, next_update = crl_validity(datetime.now(UTC), 7, ca.cert.not_valid_after_utc)
    crl = make_crl("rsa2048", [], this_update=this_update, next_update=next_update)
    assert (crl.last_update_utc, crl.next_update_utc) == (this_update, next_update)


@pytest.mark.parametrize(
    ("now", "due"),
    [
        (THIS_UPDATE, False),
        (THIS_UPDATE + timedelta(days=3, hours=11, minutes=59, seconds=59), False),
        (THIS_UPDATE + timedelta(days=3, hours=12), True),  # the half-life itself
        (THIS_UPDATE + timedelta(days=5), True),
        (NEXT_UPDATE + timedelta(days=30), True),
        (THIS_UPDATE - timedelta(hours=1), False),  # a clock that went back
    ],
)
def test_it_renews_at_half_life(now: datetime, due: bool) -> None:
    assert renewal_due(THIS_UPDATE, NEXT_UPDATE, now) is due


# --- speed ----------------------------------------------------------------------------------------


def _many_entries(count: int) -> list[RevokedEntry]:
    reasons = list(REASONS)
    return [
        RevokedEntry(
            serial=(0x5A5A << 140) + i * 0x9E3779B97F4A7C15,
            revoked_at=REVOKED_AT - timedelta(seconds=i),
            reason=reasons[i % len(reasons)],
        )
        for i in range(count)
    ]


def _timed_build(ca_name: str, count: int) -> tuple[float, x509.CertificateRevocationList]:
    """The CPU seconds this process spent building and encoding the CRL: unlike the wall clock, they
    do not grow when the suite runs in parallel (pytest-xdist) or beside other work on the machine."""
    entries = _many_entries(count)
    started = time.process_time()
    crl = make_crl(ca_name, entries)
    crl_der(crl)
    return time.process_time() - started, crl


@pytest.mark.parametrize("ca_name", CAS)
def test_it_builds_a_crl_of_10_000_entries_quickly(ca_name: str) -> None:
    seconds, crl = _timed_build(ca_name, 10_000)
    assert len(crl) == 10_000
    assert seconds < 2.0, f"10,000 entries took {seconds:.2f} s of CPU"


@pytest.mark.skipif(os.environ.get("CA_PORTAL_SLOW_TESTS") != "1", reason="set CA_PORTAL_SLOW_TESTS=1")
@pytest.mark.parametrize("ca_name", CAS)
def test_it_builds_a_crl_of_100_000_entries_in_under_10_seconds(ca_name: str) -> None:
    seconds, crl = _timed_build(ca_name, 100_000)
    assert len(crl) == 100_000
    assert seconds < 10.0, f"100,000 entries took {seconds:.2f} s of CPU"
    ca = fixture_ca(ca_name)
    output = openssl_crl_verify(crl_pem(crl), cert_pem(ca.cert))
    assert "verify OK" in output, output
    print(f"\n100,000 entries, {ca_name} CA: {seconds:.2f} s of CPU, {len(crl_der(crl)):,} bytes")
