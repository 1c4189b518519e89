"""Signing a recorded TBSCertificate.

Record before sign (docs/security.md T12): the to-be-signed bytes are stored first; this module then
signs exactly those bytes and assembles the certificate around them, so a retry after a crash
re-signs the stored TBS and can never produce a certificate the database does not know.
"""

from __future__ import annotations

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from pki import der
from pki.errors import IssuanceRefused
from pki.keys import PrivateKey, signature_hash

_ALGORITHMS = {
    ("rsa", "sha256"): der.sequence(der.oid("1.2.840.113549.1.1.11"), b"\x05\x00"),
    ("ecdsa", "sha256"): der.sequence(der.oid("1.2.840.10045.4.3.2")),
    ("ecdsa", "sha384"): der.sequence(der.oid("1.2.840.10045.4.3.3")),
}


def signature_algorithm_der(key: PrivateKey) -> bytes:
    family = "rsa" if isinstance(key, rsa.RSAPrivateKey) else "ecdsa"
    return _ALGORITHMS[(family, signature_hash(key).name)]


def sign_tbs(tbs_der: bytes, ca_key: PrivateKey, ca_cert: x509.Certificate) -> x509.Certificate:
    """Sign ``tbs_der`` with the CA key and return the certificate, after checking that it carries
    exactly those TBS bytes and that its signature verifies under the CA certificate (a faulty
    RSA-CRT signature would leak the key; verifying first means it never leaves the process)."""
    hash_algorithm = signature_hash(ca_key)
    if isinstance(ca_key, rsa.RSAPrivateKey):
        signature = ca_key.sign(tbs_der, padding.PKCS1v15(), hash_algorithm)
    else:
        signature = ca_key.sign(tbs_der, ec.ECDSA(hash_algorithm))
    cert_der = der.sequence(tbs_der, signature_algorithm_der(ca_key), der.tlv(0x03, b"\x00" + signature))
    try:
        cert = x509.load_der_x509_certificate(cert_der)
    except (ValueError, x509.InvalidVersion) as exc:  # a damaged record must fail the request, not crash
        raise IssuanceRefused("internal error: the recorded TBS is not a readable certificate body") from exc
    if cert.tbs_certificate_bytes != tbs_der:
        raise IssuanceRefused("internal error: the signed TBS differs from the recorded one")
    try:
        cert.verify_directly_issued_by(ca_cert)
    except (ValueError, TypeError, Exception) as exc:
        raise IssuanceRefused("internal error: the new signature does not verify under the CA certificate") from exc
    return cert
