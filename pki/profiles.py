"""Certificate profiles: the CA (OpenBSD's x509v3_CA) and the IPsec peer (x509v3_FQDN plus what
modern peers need). Every extension of an issued certificate comes from here, never from a CSR.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, ExtensionOID, NameOID

from pki.errors import IssuanceRefused, PkiError
from pki.keys import PrivateKey, PublicKey, signature_hash

# notBefore is backdated so that a peer whose clock runs slow still accepts a fresh certificate.
BACKDATE = timedelta(hours=1)
DEFAULT_LEAF_DAYS = 365
MAX_LEAF_DAYS = 825
MIN_CA_DAYS = 30
MAX_CA_DAYS = 7300
SERIAL_BITS = 159

LEAF_EXTENSIONS = frozenset(
    {
        ExtensionOID.SUBJECT_ALTERNATIVE_NAME,
        ExtensionOID.BASIC_CONSTRAINTS,
        ExtensionOID.KEY_USAGE,
        ExtensionOID.EXTENDED_KEY_USAGE,
        ExtensionOID.SUBJECT_KEY_IDENTIFIER,
        ExtensionOID.AUTHORITY_KEY_IDENTIFIER,
        ExtensionOID.CRL_DISTRIBUTION_POINTS,
    }
)
LEAF_EKUS = (ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.IPSEC_IKE)


def serial_from_random(random_bytes: bytes) -> int:
    """A positive serial of at most 159 bits (RFC 5280: ≤ 20 octets; BR: ≥ 64 CSPRNG bits).

    The caller passes 20 bytes from ``os.urandom``; a zero result (probability 2**-159) is refused
    so the caller draws again.
    """
    if len(random_bytes) < 20:
        raise ValueError("serial_from_random needs 20 random bytes")
    serial = int.from_bytes(random_bytes[:20], "big") >> (160 - SERIAL_BITS)
    if serial == 0:
        raise ValueError("drew a zero serial; draw again")
    return serial


@dataclass(frozen=True)
class CaSubject:
    common_name: str
    organization: str = ""
    country: str = ""

    def to_name(self) -> x509.Name:
        """Built from typed attributes, never by parsing "CN=...,O=..." (that would let a value inject an RDN)."""
        if not self.common_name or len(self.common_name) > 64:
            raise PkiError("the CA common name must be 1 to 64 characters")
        if any(ord(ch) < 32 or ord(ch) == 127 for ch in self.common_name + self.organization):
            raise PkiError("the CA name must not contain control characters")
        attrs = []
        if self.country:
            if len(self.country) != 2 or not self.country.isascii() or not self.country.isalpha():
                raise PkiError("the country must be a two-letter code such as NL")
            attrs.append(x509.NameAttribute(NameOID.COUNTRY_NAME, self.country.upper()))
        if self.organization:
            if len(self.organization) > 64:
                raise PkiError("the organization must be at most 64 characters")
            attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, self.organization))
        attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, self.common_name))
        return x509.Name(attrs)


def build_ca_certificate(
    key: PrivateKey, *, subject: x509.Name, serial: int, not_before: datetime, days: int
) -> x509.Certificate:
    """Self-signed CA: critical basicConstraints CA:TRUE pathlen 0, critical keyUsage keyCertSign + cRLSign, SKI/AKI."""
    if not MIN_CA_DAYS <= days <= MAX_CA_DAYS:
        raise PkiError(f"the CA validity must be between {MIN_CA_DAYS} and {MAX_CA_DAYS} days")
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(serial)
        .not_valid_before(not_before)
        .not_valid_after(not_before + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(cert_sign=True), critical=True)
        .add_extension(ski, critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False)
    )
    return builder.sign(key, signature_hash(key))


@dataclass(frozen=True)
class LeafSpec:
    """Everything that goes into a peer certificate; the public key is the only part taken from a CSR."""

    fqdn: str
    public_key: PublicKey
    serial: int
    not_before: datetime
    not_after: datetime
    crl_url: str


def leaf_validity(now: datetime, days: int, ca_not_after: datetime) -> tuple[datetime, datetime]:
    """(notBefore, notAfter): backdated by BACKDATE, ``days`` long, never past the CA's notAfter."""
    if not 1 <= days <= MAX_LEAF_DAYS:
        raise IssuanceRefused(f"the validity must be between 1 and {MAX_LEAF_DAYS} days, not {days}")
    if ca_not_after <= now + timedelta(days=1):
        raise IssuanceRefused(f"the CA certificate expires on {ca_not_after:%Y-%m-%d %H:%M} UTC; renew the CA first")
    return now - BACKDATE, min(now + timedelta(days=days), ca_not_after)


def leaf_builder(spec: LeafSpec, ca_cert: x509.Certificate) -> x509.CertificateBuilder:
    """The complete to-be-signed certificate for a peer; signing it with any key of the CA's kind
    gives the same TBS bytes, which is what lets us record them before the real signature."""
    try:
        ca_ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        aki = x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski)
    except x509.ExtensionNotFound:
        aki = x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_cert.public_key())  # type: ignore[arg-type]
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, spec.fqdn)]))
        .issuer_name(ca_cert.subject)
        .public_key(spec.public_key)
        .serial_number(spec.serial)
        .not_valid_before(spec.not_before)
        .not_valid_after(spec.not_after)
        # isakmpd reads only the first GeneralName: the FQDN is the first and only one.
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(spec.fqdn)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(key_encipherment=isinstance(spec.public_key, rsa.RSAPublicKey)), critical=True)
        .add_extension(x509.ExtendedKeyUsage(list(LEAF_EKUS)), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(spec.public_key), critical=False)
        .add_extension(aki, critical=False)
    )
    if spec.crl_url:
        point = x509.DistributionPoint(
            full_name=[x509.UniformResourceIdentifier(spec.crl_url)], relative_name=None, reasons=None, crl_issuer=None
        )
        builder = builder.add_extension(x509.CRLDistributionPoints([point]), critical=False)
    return builder


def throwaway_key_like(ca_key: PrivateKey | PublicKey) -> PrivateKey:
    """A key whose signatures carry the same AlgorithmIdentifier as the CA's, used to materialise the TBS.

    RSA: any size gives sha256WithRSAEncryption, so a cheap 1024-bit key does. ECDSA: the hash
    decides the identifier (ecdsa-with-SHA256/384), so a P-256 key is enough for both curves.
    """
    if isinstance(ca_key, (rsa.RSAPrivateKey, rsa.RSAPublicKey)):
        # Never signs anything that leaves the process: its signature is discarded.
        return rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505
    return ec.generate_private_key(ec.SECP256R1())


def tbs_bytes(builder: x509.CertificateBuilder, ca_public_key: PublicKey, throwaway: PrivateKey) -> bytes:
    """The DER TBSCertificate the CA will sign, and a structural check of it before anything is recorded."""
    draft = builder.sign(throwaway, signature_hash(ca_public_key))
    check_leaf(draft)
    return draft.tbs_certificate_bytes


def check_leaf(cert: x509.Certificate) -> None:
    """Pre-issuance self-check (cf. Boulder's lint of the precertificate): the draft must have exactly
    the profile's extensions, CA:FALSE, no signing key usages and a single DNS SAN equal to the CN."""
    oids = {ext.oid for ext in cert.extensions}
    if not oids <= LEAF_EXTENSIONS:
        raise IssuanceRefused(
            f"internal error: unexpected extensions {sorted(o.dotted_string for o in oids - LEAF_EXTENSIONS)}"
        )
    bc = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    san = list(cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value)
    cn = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if bc.value.ca or not bc.critical or ku.key_cert_sign or ku.crl_sign:
        raise IssuanceRefused("internal error: a peer certificate must not be able to sign")
    if len(san) != 1 or not isinstance(san[0], x509.DNSName) or len(cn) != 1 or san[0].value != cn[0].value:
        raise IssuanceRefused("internal error: the subjectAltName must be exactly the FQDN")
    if not 0 < cert.serial_number < 2**SERIAL_BITS:
        raise IssuanceRefused("internal error: serial out of range")


def _key_usage(*, cert_sign: bool = False, key_encipherment: bool = False) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=not cert_sign,
        content_commitment=False,
        key_encipherment=key_encipherment,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )
