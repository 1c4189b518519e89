"""profiles.leaf_builder + tbs_bytes + issue.sign_tbs: the peer certificate, byte for byte
(docs/security.md T6, T11, T12).

Deterministic: the clock, the serial and the keys are fixed, so the TBSCertificate is a golden file.
"""

from __future__ import annotations

import functools
import hashlib
import os
import textwrap
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, ExtensionOID, NameOID

from pki.errors import IssuanceRefused
from pki.issue import sign_tbs, signature_algorithm_der
from pki.keys import PrivateKey, PublicKey, load_private_key, public_key_der
from pki.profiles import (
    LEAF_EXTENSIONS,
    MAX_CA_DAYS,
    CaSubject,
    LeafSpec,
    build_ca_certificate,
    check_leaf,
    leaf_builder,
    tbs_bytes,
    throwaway_key_like,
)
from tests.conftest import fixture_bytes
from tests.pkitools import openssl_asn1parse, openssl_verify, pkilint_errors

GOLDEN_DIR = Path(__file__).parent.parent / "golden" / "pki"

FQDN = "client.example.com"
SERIAL = 0x0123456789ABCDEF
NOT_BEFORE = datetime(2026, 3, 1, 11, 0, tzinfo=UTC)
NOT_AFTER = datetime(2027, 3, 1, 12, 0, tzinfo=UTC)
CHECK_AT = datetime(2026, 6, 1, tzinfo=UTC)  # inside the leaf validity, for openssl -attime
CRL_URL = "https://ca.example.org/crl.der"

CAS = ("rsa2048", "p384")
LEAF_KEYS = ("client-rsa2048.csr", "client-p256.csr")


@dataclass(frozen=True)
class FixtureCa:
    cert: x509.Certificate
    key: PrivateKey


@functools.cache
def fixture_ca(name: str) -> FixtureCa:
    cert = x509.load_pem_x509_certificate(fixture_bytes(f"ca-{name}.crt"))
    key = load_private_key(fixture_bytes(f"ca-{name}.key"), None)
    return FixtureCa(cert=cert, key=key)


@functools.cache
def throwaway(family: str) -> PrivateKey:
    """One throwaway key per family for the whole module (an RSA key costs real time to make)."""
    return throwaway_key_like(fixture_ca("rsa2048" if family == "rsa" else "p384").key)


def csr_public_key(name: str) -> PublicKey:
    key = x509.load_pem_x509_csr(fixture_bytes(name)).public_key()
    assert isinstance(key, (rsa.RSAPublicKey, ec.EllipticCurvePublicKey))
    return key


def spec_for(leaf_key: str, **changes: object) -> LeafSpec:
    spec = LeafSpec(
        fqdn=FQDN,
        public_key=csr_public_key(leaf_key),
        serial=SERIAL,
        not_before=NOT_BEFORE,
        not_after=NOT_AFTER,
        crl_url=CRL_URL,
    )
    return replace(spec, **changes)  # type: ignore[arg-type]


def make_tbs(ca: FixtureCa, spec: LeafSpec) -> bytes:
    family = "rsa" if isinstance(ca.key, rsa.RSAPrivateKey) else "ec"
    return tbs_bytes(leaf_builder(spec, ca.cert), ca.cert.public_key(), throwaway(family))  # type: ignore[arg-type]


@functools.cache
def issued(ca_name: str, leaf_key: str) -> tuple[bytes, x509.Certificate]:
    """(TBS, certificate) for the fixed spec: record the TBS, then sign exactly it."""
    ca = fixture_ca(ca_name)
    tbs = make_tbs(ca, spec_for(leaf_key))
    return tbs, sign_tbs(tbs, ca.key, ca.cert)


def pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def cert_der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


# --- golden TBS (docs/conventions.md §2b) ---------------------------------------------------------------------


def golden_text(title: str, tbs: bytes) -> str:
    """A reviewable form of DER: its hash, openssl's structure dump and the bytes themselves as hex."""
    dump = "\n".join(line.rstrip() for line in openssl_asn1parse(tbs).splitlines())
    return (
        f"# {title}\n"
        "# Made by tests/unit/test_issue.py; regenerate with UPDATE_GOLDEN=1, then review `git diff`.\n"
        f"sha256 {hashlib.sha256(tbs).hexdigest()}\n"
        f"length {len(tbs)}\n"
        "\n## openssl asn1parse -inform DER -i\n"
        f"{dump}\n"
        "\n## DER, hex\n" + "\n".join(textwrap.wrap(tbs.hex(), 64)) + "\n"
    )


def assert_matches_golden(name: str, actual: str) -> None:
    path = GOLDEN_DIR / name
    if os.environ.get("UPDATE_GOLDEN") == "1":  # regenerate, then review `git diff`
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(actual, encoding="utf-8", newline="\n")
    assert actual == path.read_text(encoding="utf-8"), f"{name} changed; rerun with UPDATE_GOLDEN=1"


def test_it_matches_the_golden_tbs_for_an_rsa_leaf_under_the_rsa_ca() -> None:
    tbs, _cert = issued("rsa2048", "client-rsa2048.csr")
    assert_matches_golden("leaf-rsa.tbs.txt", golden_text("TBSCertificate: RSA-2048 leaf, RSA-2048 fixture CA", tbs))


def test_it_matches_the_golden_tbs_for_a_p256_leaf_under_the_p384_ca() -> None:
    tbs, _cert = issued("p384", "client-p256.csr")
    assert_matches_golden("leaf-ecdsa.tbs.txt", golden_text("TBSCertificate: P-256 leaf, P-384 fixture CA", tbs))


# --- record before sign ---------------------------------------------------------------------------


@pytest.mark.parametrize("ca_name", CAS)
@pytest.mark.parametrize("leaf_key", LEAF_KEYS)
def test_it_signs_exactly_the_recorded_tbs(ca_name: str, leaf_key: str) -> None:
    tbs, cert = issued(ca_name, leaf_key)
    assert cert.tbs_certificate_bytes == tbs
    cert.verify_directly_issued_by(fixture_ca(ca_name).cert)


def test_it_makes_the_same_tbs_whichever_throwaway_key_materialises_it() -> None:
    ca = fixture_ca("rsa2048")
    builder = leaf_builder(spec_for("client-rsa2048.csr"), ca.cert)
    other_rsa = load_private_key(fixture_bytes("not-a-ca.key"), None)
    ca_public = ca.cert.public_key()
    assert isinstance(ca_public, rsa.RSAPublicKey)
    assert tbs_bytes(builder, ca_public, throwaway("rsa")) == tbs_bytes(builder, ca_public, other_rsa)
    p384 = fixture_ca("p384")
    ec_builder = leaf_builder(spec_for("client-p256.csr"), p384.cert)
    p384_public = p384.cert.public_key()
    assert isinstance(p384_public, ec.EllipticCurvePublicKey)
    assert tbs_bytes(ec_builder, p384_public, throwaway("ec")) == tbs_bytes(
        ec_builder, p384_public, ec.generate_private_key(ec.SECP384R1())
    )


def test_it_reproduces_an_rsa_certificate_byte_for_byte_from_its_record() -> None:
    """RSA PKCS#1 v1.5 signatures are deterministic: a retry after a crash yields the same certificate."""
    ca = fixture_ca("rsa2048")
    tbs, cert = issued("rsa2048", "client-rsa2048.csr")
    assert cert_der(sign_tbs(tbs, ca.key, ca.cert)) == cert_der(cert)


@pytest.mark.parametrize(("family", "expected"), [("rsa", rsa.RSAPrivateKey), ("ec", ec.EllipticCurvePrivateKey)])
def test_it_makes_throwaway_keys_of_the_ca_family(family: str, expected: type) -> None:
    assert isinstance(throwaway(family), expected)


def test_it_makes_a_throwaway_key_from_a_public_key_too() -> None:
    assert isinstance(throwaway_key_like(fixture_ca("p384").cert.public_key()), ec.EllipticCurvePrivateKey)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("ca_name", "hash_name", "algorithm"),
    [
        ("rsa2048", "sha256", "300d06092a864886f70d01010b0500"),  # sha256WithRSAEncryption, NULL parameters
        ("p384", "sha384", "300a06082a8648ce3d040303"),  # ecdsa-with-SHA384, no parameters
    ],
)
def test_it_uses_the_signature_algorithm_that_goes_with_the_ca_key(
    ca_name: str, hash_name: str, algorithm: str
) -> None:
    ca = fixture_ca(ca_name)
    assert signature_algorithm_der(ca.key) == bytes.fromhex(algorithm)
    for leaf_key in LEAF_KEYS:
        tbs, cert = issued(ca_name, leaf_key)
        assert cert.signature_hash_algorithm is not None
        assert cert.signature_hash_algorithm.name == hash_name
        assert cert_der(cert)[4 + len(tbs) :].startswith(bytes.fromhex(algorithm))
        assert bytes.fromhex(algorithm) in tbs  # the TBS names the same algorithm (RFC 5280 §4.1.2.3)


def test_it_signs_p256_with_ecdsa_sha256() -> None:
    assert signature_algorithm_der(ec.generate_private_key(ec.SECP256R1())) == bytes.fromhex("300a06082a8648ce3d040302")


# --- the peer profile -----------------------------------------------------------------------------


@pytest.mark.parametrize("ca_name", CAS)
@pytest.mark.parametrize("leaf_key", LEAF_KEYS)
def test_it_builds_the_peer_certificate_from_the_profile(ca_name: str, leaf_key: str) -> None:
    ca = fixture_ca(ca_name)
    _tbs, cert = issued(ca_name, leaf_key)
    assert cert.version == x509.Version.v3
    assert cert.serial_number == SERIAL
    assert cert.not_valid_before_utc == NOT_BEFORE
    assert cert.not_valid_after_utc == NOT_AFTER
    assert cert.issuer == ca.cert.subject
    assert cert.subject == x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, FQDN)])
    assert public_key_der(cert.public_key()) == public_key_der(csr_public_key(leaf_key))  # type: ignore[arg-type]
    assert {ext.oid for ext in cert.extensions} == LEAF_EXTENSIONS
    assert len(cert.extensions) == len(LEAF_EXTENSIONS)


@pytest.mark.parametrize("ca_name", CAS)
def test_it_puts_the_fqdn_first_and_alone_in_the_subject_alt_name(ca_name: str) -> None:
    _tbs, cert = issued(ca_name, "client-rsa2048.csr")
    assert cert.extensions[0].oid == ExtensionOID.SUBJECT_ALTERNATIVE_NAME  # isakmpd reads only the first
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert not san.critical
    assert list(san.value) == [x509.DNSName(FQDN)]


@pytest.mark.parametrize("leaf_key", LEAF_KEYS)
def test_it_marks_the_leaf_as_no_ca_in_a_critical_extension(leaf_key: str) -> None:
    _tbs, cert = issued("rsa2048", leaf_key)
    bc = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical
    assert bc.value == x509.BasicConstraints(ca=False, path_length=None)


@pytest.mark.parametrize(("leaf_key", "key_encipherment"), [("client-rsa2048.csr", True), ("client-p256.csr", False)])
@pytest.mark.parametrize("ca_name", CAS)
def test_it_gives_key_encipherment_to_rsa_keys_only(ca_name: str, leaf_key: str, key_encipherment: bool) -> None:
    _tbs, cert = issued(ca_name, leaf_key)
    ku = cert.extensions.get_extension_for_class(x509.KeyUsage)
    assert ku.critical
    assert ku.value == x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=key_encipherment,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )


def test_it_gives_server_client_and_ipsec_ike_extended_key_usage() -> None:
    _tbs, cert = issued("p384", "client-p256.csr")
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
    assert not eku.critical
    assert list(eku.value) == [
        ExtendedKeyUsageOID.SERVER_AUTH,
        ExtendedKeyUsageOID.CLIENT_AUTH,
        ExtendedKeyUsageOID.IPSEC_IKE,
    ]


@pytest.mark.parametrize("ca_name", CAS)
@pytest.mark.parametrize("leaf_key", LEAF_KEYS)
def test_it_links_the_leaf_to_its_key_and_to_the_ca_key(ca_name: str, leaf_key: str) -> None:
    ca = fixture_ca(ca_name)
    _tbs, cert = issued(ca_name, leaf_key)
    ski = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert ski.digest == x509.SubjectKeyIdentifier.from_public_key(csr_public_key(leaf_key)).digest
    aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    ca_ski = ca.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert aki.key_identifier == ca_ski.digest
    assert aki.authority_cert_issuer is None
    assert aki.authority_cert_serial_number is None


def test_it_derives_the_aki_from_the_ca_key_when_the_ca_has_no_ski() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Old CA")])
    old_ca = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(datetime(2026, 1, 1, tzinfo=UTC))
        .not_valid_after(datetime(2030, 1, 1, tzinfo=UTC))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert = leaf_builder(spec_for("client-p256.csr"), old_ca).sign(key, hashes.SHA256())
    aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    assert aki.key_identifier == x509.SubjectKeyIdentifier.from_public_key(key.public_key()).digest


def test_it_points_to_the_crl() -> None:
    _tbs, cert = issued("rsa2048", "client-rsa2048.csr")
    crl_dp = cert.extensions.get_extension_for_class(x509.CRLDistributionPoints)
    assert not crl_dp.critical
    assert [list(point.full_name or []) for point in crl_dp.value] == [[x509.UniformResourceIdentifier(CRL_URL)]]


def test_it_leaves_out_the_crl_distribution_point_without_a_crl_url() -> None:
    ca = fixture_ca("p384")
    cert = sign_tbs(make_tbs(ca, spec_for("client-p256.csr", crl_url="")), ca.key, ca.cert)
    assert ExtensionOID.CRL_DISTRIBUTION_POINTS not in {ext.oid for ext in cert.extensions}


# --- outside judges -------------------------------------------------------------------------------


@pytest.mark.parametrize("ca_name", CAS)
@pytest.mark.parametrize("leaf_key", LEAF_KEYS)
def test_it_issues_certificates_that_openssl_verifies_strictly(ca_name: str, leaf_key: str) -> None:
    _tbs, cert = issued(ca_name, leaf_key)
    openssl_verify(pem(cert), pem(fixture_ca(ca_name).cert), at=CHECK_AT)


@pytest.mark.parametrize("ca_name", CAS)
@pytest.mark.parametrize("leaf_key", LEAF_KEYS)
def test_it_issues_certificates_without_pkilint_errors(ca_name: str, leaf_key: str) -> None:
    _tbs, cert = issued(ca_name, leaf_key)
    assert pkilint_errors(cert_der(cert)) == []


def test_it_is_caught_by_openssl_when_the_leaf_has_expired() -> None:
    """openssl_verify really checks: the same leaf a year after its notAfter fails."""
    _tbs, cert = issued("rsa2048", "client-rsa2048.csr")
    with pytest.raises(AssertionError, match="certificate has expired"):
        openssl_verify(pem(cert), pem(fixture_ca("rsa2048").cert), at=datetime(2028, 3, 1, tzinfo=UTC))


def test_it_is_caught_by_pkilint_when_a_ca_lacks_key_usage() -> None:
    """pkilint_errors really reports: a CA certificate without keyUsage is an RFC 5280 error."""
    ca = fixture_ca("rsa2048")
    builder = (
        x509.CertificateBuilder()
        .subject_name(ca.cert.subject)
        .issuer_name(ca.cert.subject)
        .public_key(ca.key.public_key())
        .serial_number(1)
        .not_valid_before(ca.cert.not_valid_before_utc)
        .not_valid_after(ca.cert.not_valid_after_utc)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca.key.public_key()), critical=False)
    )
    errors = pkilint_errors(cert_der(builder.sign(ca.key, hashes.SHA256())))
    assert len(errors) == 1
    assert "pkix.ca_certificate_no_ku_extension (ERROR)" in errors[0]


# --- dates from 2050 on (RFC 5280 §4.1.2.5) -------------------------------------------------------


def test_it_encodes_a_not_after_from_2050_on_as_generalized_time() -> None:
    key = ec.generate_private_key(ec.SECP384R1())
    ca_cert = build_ca_certificate(
        key,
        subject=CaSubject("Future CA").to_name(),
        serial=1,
        not_before=datetime(2045, 1, 1, tzinfo=UTC),
        days=MAX_CA_DAYS,
    )
    spec = spec_for(
        "client-p256.csr",
        not_before=datetime(2049, 12, 31, 23, 0, tzinfo=UTC),
        not_after=datetime(2051, 1, 1, 12, 0, tzinfo=UTC),
    )
    tbs = tbs_bytes(leaf_builder(spec, ca_cert), key.public_key(), throwaway("ec"))
    cert = sign_tbs(tbs, key, ca_cert)
    times = [line.split(":", 3)[-1].strip() for line in openssl_asn1parse(tbs).splitlines() if "TIME" in line]
    kinds = [line.split("prim:")[1].split()[0] for line in openssl_asn1parse(tbs).splitlines() if "TIME" in line]
    assert list(zip(kinds, times, strict=True)) == [
        ("UTCTIME", "491231230000Z"),
        ("GENERALIZEDTIME", "20510101120000Z"),
    ]
    assert b"\x18\x0f20510101120000Z" in tbs  # tag 0x18 GeneralizedTime, 15 octets
    assert b"\x17\x0d491231230000Z" in tbs  # tag 0x17 UTCTime up to 2049
    assert cert.not_valid_after_utc == datetime(2051, 1, 1, 12, 0, tzinfo=UTC)
    ca_times = openssl_asn1parse(cert_der(ca_cert))
    assert "UTCTIME           :450101000000Z" in ca_times
    assert "GENERALIZEDTIME   :20641227000000Z" in ca_times
    assert pkilint_errors(cert_der(cert)) == []
    openssl_verify(pem(cert), pem(ca_cert), at=datetime(2050, 6, 1, tzinfo=UTC))


# --- refusals -------------------------------------------------------------------------------------


def test_it_refuses_to_sign_with_a_key_that_does_not_match_the_ca_certificate() -> None:
    tbs, _cert = issued("p384", "client-p256.csr")
    with pytest.raises(IssuanceRefused, match="does not verify under the CA certificate"):
        sign_tbs(tbs, fixture_ca("p384").key, fixture_ca("rsa2048").cert)


def test_it_refuses_to_sign_for_an_impostor_ca_with_the_same_name() -> None:
    """Same subject, same kind of key, different key: only the signature check can tell."""
    real = fixture_ca("p384")
    impostor = build_ca_certificate(
        ec.generate_private_key(ec.SECP384R1()),
        subject=real.cert.subject,
        serial=real.cert.serial_number,
        not_before=real.cert.not_valid_before_utc,
        days=3650,
    )
    tbs, _cert = issued("p384", "client-p256.csr")
    with pytest.raises(IssuanceRefused, match="does not verify under the CA certificate"):
        sign_tbs(tbs, real.key, impostor)


@pytest.mark.parametrize("damage", ["first-byte", "truncated", "empty", "version"])
def test_it_refuses_a_recorded_tbs_that_is_not_a_certificate_body(damage: str) -> None:
    tbs, _cert = issued("p384", "client-p256.csr")
    damaged = {
        "first-byte": b"\x31" + tbs[1:],
        "truncated": tbs[: len(tbs) // 2],
        "empty": b"",
        "version": tbs.replace(b"\xa0\x03\x02\x01\x02", b"\xa0\x03\x02\x01\x07", 1),
    }[damage]
    ca = fixture_ca("p384")
    with pytest.raises(IssuanceRefused, match="not a readable certificate body"):
        sign_tbs(damaged, ca.key, ca.cert)


def _draft(
    *,
    ca: bool = False,
    bc_critical: bool = True,
    key_cert_sign: bool = False,
    crl_sign: bool = False,
    san: list[x509.GeneralName] | None = None,
    common_names: tuple[str, ...] = (FQDN,),
    extra: x509.ExtensionType | None = None,
) -> x509.CertificateBuilder:
    """A leaf builder written by hand, to feed check_leaf what leaf_builder never makes."""
    leaf_public = csr_public_key("client-p256.csr")
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn) for cn in common_names]))
        .issuer_name(fixture_ca("p384").cert.subject)
        .public_key(leaf_public)
        .serial_number(SERIAL)
        .not_valid_before(NOT_BEFORE)
        .not_valid_after(NOT_AFTER)
        .add_extension(x509.SubjectAlternativeName(san if san is not None else [x509.DNSName(FQDN)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=bc_critical)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=key_cert_sign,
                crl_sign=crl_sign,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(leaf_public), critical=False)
    )
    if extra is not None:
        builder = builder.add_extension(extra, critical=True)
    return builder


def test_it_passes_the_hand_written_draft_when_nothing_is_wrong() -> None:
    check_leaf(_draft().sign(throwaway("ec"), hashes.SHA384()))


@pytest.mark.parametrize(
    ("options", "reason"),
    [
        ({"ca": True}, "must not be able to sign"),
        ({"bc_critical": False}, "must not be able to sign"),
        ({"key_cert_sign": True}, "must not be able to sign"),
        ({"crl_sign": True}, "must not be able to sign"),
        ({"san": [x509.DNSName(FQDN), x509.DNSName("evil.example.com")]}, "exactly the FQDN"),
        ({"san": [x509.DNSName("evil.example.com")]}, "exactly the FQDN"),
        ({"san": [x509.UniformResourceIdentifier(f"https://{FQDN}")]}, "exactly the FQDN"),
        ({"common_names": (FQDN, FQDN)}, "exactly the FQDN"),
        ({"common_names": ()}, "exactly the FQDN"),
        (
            {"extra": x509.NameConstraints(permitted_subtrees=[x509.DNSName("example.com")], excluded_subtrees=None)},
            r"unexpected extensions \['2.5.29.30'\]",
        ),
    ],
)
def test_it_refuses_a_draft_outside_the_peer_profile(options: dict[str, object], reason: str) -> None:
    builder = _draft(**options)  # type: ignore[arg-type]
    with pytest.raises(IssuanceRefused, match=reason):
        check_leaf(builder.sign(throwaway("ec"), hashes.SHA384()))
    p384_public = fixture_ca("p384").cert.public_key()
    assert isinstance(p384_public, ec.EllipticCurvePublicKey)
    with pytest.raises(IssuanceRefused, match=reason):  # and tbs_bytes runs the check before recording
        tbs_bytes(builder, p384_public, throwaway("ec"))


def test_it_accepts_the_largest_159_bit_serial() -> None:
    ca = fixture_ca("p384")
    cert = sign_tbs(make_tbs(ca, spec_for("client-p256.csr", serial=2**159 - 1)), ca.key, ca.cert)
    assert cert.serial_number == 2**159 - 1
    assert pkilint_errors(cert_der(cert)) == []
