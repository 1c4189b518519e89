"""CSR vetting: only the public key of a CSR is ever used, and only after it passes the key policy.

A CSR that asks for more than a peer certificate (CA:TRUE, certificate or CRL signing, name
constraints, any-purpose EKU, names other than the peer's FQDN, an unknown critical extension)
is refused outright rather than silently trimmed, so the person who made it learns that their
tooling asked for something it should not have.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from pki.errors import CsrRejected
from pki.keys import PublicKey, describe_key, public_key_der

MAX_CSR_BYTES = 8 * 1024
MIN_RSA_BITS = 2048
MAX_RSA_BITS = 8192
ALLOWED_CURVES = ("secp256r1", "secp384r1")
FERMAT_ROUNDS = 100

_PEM_BLOCK = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----\r?\n(.*?)-----END \1-----", re.DOTALL)
_CSR_LABELS = (b"CERTIFICATE REQUEST", b"NEW CERTIFICATE REQUEST")


@dataclass(frozen=True)
class VettedCsr:
    public_key: PublicKey
    public_key_der: bytes
    key_type: str


def vet_public_key(key: object) -> str:
    """Apply the key policy; return the key type (``rsa-3072``) or raise CsrRejected.

    RSA: 2048 to 8192 bits, a multiple of 8, e = 65537, primes not close enough for Fermat's
    method (BR §6.1.1.3). ECDSA: P-256 or P-384 only (isakmpd needs RSA; iked and strongSwan
    take both).
    """
    if isinstance(key, rsa.RSAPublicKey):
        numbers = key.public_numbers()
        bits = key.key_size
        if bits < MIN_RSA_BITS:
            raise CsrRejected(f"the RSA key has {bits} bits; at least {MIN_RSA_BITS} are required")
        if bits > MAX_RSA_BITS:
            raise CsrRejected(f"the RSA key has {bits} bits; at most {MAX_RSA_BITS} are accepted")
        if bits % 8:
            raise CsrRejected(f"the RSA key has {bits} bits, which is not a multiple of 8")
        if numbers.e != 65537:
            raise CsrRejected(f"the RSA public exponent is {numbers.e}; only 65537 is accepted")
        if _fermat_factorable(numbers.n):
            raise CsrRejected("the RSA key's two primes are so close that the key can be factored; make a new key")
        return f"rsa-{bits}"
    if isinstance(key, ec.EllipticCurvePublicKey):
        if key.curve.name not in ALLOWED_CURVES:
            raise CsrRejected(f"the elliptic curve {key.curve.name} is not accepted; use P-256 or P-384")
        return describe_key(key)
    raise CsrRejected(
        f"{type(key).__name__.lstrip('_')} keys are not accepted; use RSA (2048 bits or more) or ECDSA P-256/P-384"
    )


def _fermat_factorable(n: int) -> bool:
    """True when n = p*q with |p - q| small enough that Fermat's method finds them in 100 rounds."""
    a = math.isqrt(n)
    if a * a < n:
        a += 1
    for _ in range(FERMAT_ROUNDS):
        b2 = a * a - n
        b = math.isqrt(b2)
        if b * b == b2:
            return True
        a += 1
    return False


def _single_pem_block(data: bytes) -> bytes:
    blocks = list(_PEM_BLOCK.finditer(data))
    if not blocks:
        raise CsrRejected("this is not a PEM certificate request (expected -----BEGIN CERTIFICATE REQUEST-----)")
    if len(blocks) > 1:
        raise CsrRejected("the text holds more than one PEM block; paste exactly one certificate request")
    block = blocks[0]
    if block.group(1) not in _CSR_LABELS:
        label = block.group(1).decode("ascii")
        if "PRIVATE KEY" in label:
            raise CsrRejected("this is a private key, not a certificate request; never paste a private key here")
        raise CsrRejected(f"this is a PEM {label}, not a CERTIFICATE REQUEST")
    if data[: block.start()].strip() or data[block.end() :].strip():
        raise CsrRejected("there is extra text before or after the certificate request")
    return block.group(0).replace(b"NEW CERTIFICATE REQUEST", b"CERTIFICATE REQUEST") + b"\n"


def vet_csr(pem: bytes | str, *, fqdn: str) -> VettedCsr:
    """Check a PEM CSR for the peer ``fqdn`` (already validated) and return its public key.

    Raises CsrRejected with a message meant for the person who pasted the CSR.
    """
    data = pem.encode("utf-8", "replace") if isinstance(pem, str) else pem
    if len(data) > MAX_CSR_BYTES:
        raise CsrRejected(f"the certificate request is {len(data)} bytes; at most {MAX_CSR_BYTES} are accepted")
    block = _single_pem_block(data)
    try:
        csr = x509.load_pem_x509_csr(block)
    except (ValueError, x509.InvalidVersion) as exc:  # InvalidVersion is not a ValueError
        raise CsrRejected("the certificate request is damaged and cannot be read") from exc
    try:
        signature_ok = csr.is_signature_valid
    except Exception as exc:  # unsupported signature algorithms raise instead of returning False
        raise CsrRejected("the certificate request uses a signature algorithm that is not supported") from exc
    if not signature_ok:
        raise CsrRejected(
            "the certificate request's signature does not verify (it was altered or made with another key)"
        )
    try:
        key = csr.public_key()
    except Exception as exc:
        raise CsrRejected("the certificate request holds a public key that cannot be read") from exc
    key_type = vet_public_key(key)
    _check_subject(csr, fqdn)
    _check_extensions(csr, fqdn)
    assert isinstance(key, (rsa.RSAPublicKey, ec.EllipticCurvePublicKey))
    return VettedCsr(public_key=key, public_key_der=public_key_der(key), key_type=key_type)


def _check_subject(csr: x509.CertificateSigningRequest, fqdn: str) -> None:
    try:
        names = csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    except (ValueError, TypeError) as exc:  # TypeError: e.g. a CN encoded as BIT STRING
        raise CsrRejected("the certificate request's subject cannot be read") from exc
    if len(names) > 1:
        raise CsrRejected("the certificate request's subject has more than one common name")
    if names and names[0].value != fqdn:
        raise CsrRejected(f"the certificate request is for {str(names[0].value)!r}, not for {fqdn!r}")


def _check_extensions(csr: x509.CertificateSigningRequest, fqdn: str) -> None:
    try:
        extensions = list(csr.extensions)
    except (ValueError, x509.DuplicateExtension, x509.UnsupportedGeneralNameType) as exc:
        raise CsrRejected("the certificate request carries extensions that cannot be read") from exc
    for ext in extensions:
        value = ext.value
        if isinstance(value, x509.BasicConstraints):
            if value.ca:
                raise CsrRejected("the certificate request asks to be a CA (CA:TRUE); peer certificates never are")
        elif isinstance(value, x509.KeyUsage):
            if value.key_cert_sign or value.crl_sign:
                raise CsrRejected("the certificate request asks for certificate or CRL signing; peers cannot have that")
        elif isinstance(value, x509.NameConstraints):
            raise CsrRejected("the certificate request asks for name constraints, which only CAs carry")
        elif isinstance(value, x509.ExtendedKeyUsage):
            if ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE in list(value):
                raise CsrRejected("the certificate request asks for any extended key usage; that is not issued")
        elif isinstance(value, x509.SubjectAlternativeName):
            extra = [_describe_name(n) for n in value if not (isinstance(n, x509.DNSName) and n.value == fqdn)]
            if extra:
                raise CsrRejected(f"the certificate request asks for names other than {fqdn}: {', '.join(extra[:5])}")
        elif ext.critical:
            raise CsrRejected(f"the certificate request has an unknown critical extension ({ext.oid.dotted_string})")


def _describe_name(name: x509.GeneralName) -> str:
    kind = {x509.DNSName: "DNS", x509.IPAddress: "IP", x509.RFC822Name: "email", x509.UniformResourceIdentifier: "URI"}
    return f"{kind.get(type(name), type(name).__name__)}:{name.value!s}"[:80]
