"""Checks on a CA certificate and key, for init and for importing an existing openssl CA."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from pki.errors import CaRejected
from pki.keys import PrivateKey, describe_key, public_key_der

WEAK_HASHES = {"md5", "sha1", "md2", "md4"}


@dataclass(frozen=True)
class CaAssessment:
    key_type: str
    legacy_reasons: tuple[str, ...]


def load_certificate(pem: bytes) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(pem)
    except (ValueError, x509.InvalidVersion) as exc:  # InvalidVersion is not a ValueError
        raise CaRejected("the certificate file is not a readable PEM certificate") from exc


def assess_ca(cert: x509.Certificate, key: PrivateKey, *, now: datetime) -> CaAssessment:
    """Refuse a pair that cannot work; list what makes a usable pair weak (legacy)."""
    if public_key_der(cert.public_key()) != public_key_der(key.public_key()):  # type: ignore[arg-type]
        raise CaRejected("the private key does not belong to the certificate")
    try:
        bc = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound as exc:
        raise CaRejected("the certificate has no basicConstraints extension, so it is not a CA") from exc
    if not bc.ca:
        raise CaRejected("the certificate is not a CA certificate (basicConstraints CA:FALSE)")
    try:
        ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
        if not ku.key_cert_sign:
            raise CaRejected("the certificate's keyUsage does not allow signing certificates (keyCertSign)")
    except x509.ExtensionNotFound:
        pass  # the case study's 2002-era x509v3_CA had keyUsage; older CAs without it still sign
    if cert.not_valid_after_utc <= now:
        raise CaRejected(f"the CA certificate expired on {cert.not_valid_after_utc:%Y-%m-%d}")
    reasons = []
    if isinstance(key, rsa.RSAPrivateKey) and key.key_size < 2048:
        reasons.append(f"RSA key of {key.key_size} bits (at least 2048 are needed today)")
    if isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name not in ("secp256r1", "secp384r1"):
        reasons.append(f"elliptic curve {key.curve.name}")
    try:
        algorithm = cert.signature_hash_algorithm
        hash_name = algorithm.name if algorithm is not None else "no hash"
    except Exception:  # MD5/MD2 signatures raise UnsupportedAlgorithm
        hash_name = "md5"
    if hash_name in WEAK_HASHES or hash_name == "no hash":
        reasons.append(f"certificate signed with {hash_name.upper()}")
    return CaAssessment(key_type=describe_key(key), legacy_reasons=tuple(reasons))


def fingerprint_sha256(cert: x509.Certificate) -> str:
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def certificate_pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode("ascii")
