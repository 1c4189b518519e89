"""EST (RFC 7030, as clarified by RFC 8951) on the wire: what an EST client sends and gets back.

Requests carry a PKCS#10 request as base64 of its DER encoding; responses carry certificates in a
"certs-only" PKCS#7 SignedData (no signers, no content), base64 too. RFC 8951 makes base64 the
encoding whatever a Content-Transfer-Encoding header says, so that header is ignored on input.

Nothing here vets the request: ``read_csr`` only turns the body into the PEM the services vet
(``vet_csr``, exactly as for the API) and reads the two things EST needs before that: the FQDN
the request is for and its public key, by which a client's retry of the same request is known.
"""

from __future__ import annotations

import base64
import binascii
import re
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs7
from cryptography.x509.oid import NameOID

from pki.csr import MAX_CSR_BYTES
from pki.errors import CsrRejected

_WHITESPACE = re.compile(rb"[ \t\r\n]+")


@dataclass(frozen=True)
class EstCsr:
    pem: str  # the request exactly as sent, as PEM: what the services vet and store
    fqdn: str  # the first subjectAltName dNSName, else the CN (not validated here: the services do that)
    public_key_der: bytes  # SubjectPublicKeyInfo: a retry of the same request has the same one


def read_csr(body: bytes) -> EstCsr:
    """Read a simpleenroll/simplereenroll body. Raises CsrRejected with a message for the client."""
    der = _base64_der(body)
    try:
        csr = x509.load_der_x509_csr(der)
    except (ValueError, x509.InvalidVersion) as exc:  # InvalidVersion is not a ValueError
        raise CsrRejected("the body is base64, but not of a DER-encoded PKCS#10 certificate request") from exc
    try:
        key = csr.public_key()
        spki = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    except Exception as exc:  # unsupported key algorithms raise all sorts of errors
        raise CsrRejected("the certificate request holds a public key that cannot be read") from exc
    return EstCsr(pem=der_to_pem(der), fqdn=csr_fqdn(csr), public_key_der=spki)


def _base64_der(body: bytes) -> bytes:
    compact = _WHITESPACE.sub(b"", body)  # RFC 2045-style line breaks are common in EST clients
    if not compact:
        raise CsrRejected("the request body is empty; send the PKCS#10 request as base64 of its DER encoding")
    if b"-----BEGIN" in compact:
        raise CsrRejected(
            "this is PEM; EST (RFC 7030) sends base64 of the DER request, without the -----BEGIN/END----- lines"
        )
    try:
        der = base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError):
        raise CsrRejected("the request body is not base64 (RFC 7030: base64 of the DER PKCS#10 request)") from None
    if len(der) > MAX_CSR_BYTES:
        raise CsrRejected(f"the certificate request is {len(der)} bytes; at most {MAX_CSR_BYTES} are accepted")
    return der


def csr_fqdn(csr: x509.CertificateSigningRequest) -> str:
    """The host a request is for: its first subjectAltName dNSName, else its common name."""
    try:
        san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = san.get_values_for_type(x509.DNSName)
    except x509.ExtensionNotFound:
        names = []
    except (ValueError, x509.DuplicateExtension, x509.UnsupportedGeneralNameType) as exc:
        raise CsrRejected("the certificate request carries extensions that cannot be read") from exc
    if names:
        return str(names[0])
    try:
        common_names = csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    except (ValueError, TypeError) as exc:  # TypeError: e.g. a CN encoded as BIT STRING
        raise CsrRejected("the certificate request's subject cannot be read") from exc
    if len(common_names) == 1 and isinstance(common_names[0].value, str) and common_names[0].value:
        return common_names[0].value
    raise CsrRejected(
        "the certificate request names no host: put its FQDN in a subjectAltName (pki --req --san FQDN) or the CN"
    )


def der_to_pem(der: bytes) -> str:
    """The DER request as PEM, byte for byte the same request (nothing is re-encoded)."""
    body = "\n".join(textwrap.wrap(base64.b64encode(der).decode("ascii"), 64))
    return f"-----BEGIN CERTIFICATE REQUEST-----\n{body}\n-----END CERTIFICATE REQUEST-----\n"


def csr_public_key_der(pem: str) -> bytes | None:
    """The SubjectPublicKeyInfo of a stored PEM request; None if it cannot be read."""
    try:
        key = x509.load_pem_x509_csr(pem.encode("ascii")).public_key()
        return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    except Exception:  # a stored request was vetted; anything unreadable simply does not match
        return None


def certs_only(certificates: Sequence[x509.Certificate]) -> bytes:
    """A degenerate PKCS#7 SignedData holding only ``certificates`` (RFC 7030 §4.1.3, §4.2.3), as base64.

    One line, no line breaks: RFC 8951 asks for base64 as in RFC 4648 §4, and strongSwan's
    ``pki --est`` decodes the body with a decoder that does not skip line breaks.
    """
    if not certificates:
        raise ValueError("a certs-only response holds at least one certificate")
    der = pkcs7.serialize_certificates(list(certificates), serialization.Encoding.DER)
    return base64.b64encode(der)
