"""Outside judges for certificates the portal makes: openssl and pkilint. No Django in here.

Tests of any layer (unit, service, integration) call these, so that "the certificate is right"
means the same thing everywhere: OpenSSL's strict chain check passes and pkilint's RFC 5280
certificate lint finds nothing of severity ERROR or worse.
"""

from __future__ import annotations

import functools
import subprocess
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Any

from pkilint import loader
from pkilint.pkix import certificate, extension, name
from pkilint.validation import ValidationFindingSeverity


def openssl_verify(cert_pem: bytes, ca_pem: bytes, *, at: datetime | None = None) -> None:
    """Run ``openssl verify -x509_strict -CAfile ca.pem cert.pem``; raise AssertionError with openssl's output.

    ``at`` checks validity at that moment (``-attime``) instead of the wall clock, for tests that
    issue certificates with fixed dates.
    """
    with tempfile.TemporaryDirectory(prefix="pkitools-") as tmp:
        ca_path, cert_path = Path(tmp, "ca.pem"), Path(tmp, "cert.pem")
        ca_path.write_bytes(ca_pem)
        cert_path.write_bytes(cert_pem)
        command = ["openssl", "verify", "-x509_strict"]
        if at is not None:
            command += ["-attime", str(int(at.timestamp()))]
        command += ["-CAfile", str(ca_path), str(cert_path)]
        result = subprocess.run(command, capture_output=True, text=True, check=False)
    output = (result.stdout + result.stderr).replace(str(cert_path), "cert.pem")
    if result.returncode != 0 or not output.strip().endswith("cert.pem: OK"):
        raise AssertionError(f"openssl verify failed (exit {result.returncode}):\n{output}")


def openssl_asn1parse(der: bytes) -> str:
    """``openssl asn1parse -inform DER -i``: a readable dump of any DER structure."""
    result = subprocess.run(
        ["openssl", "asn1parse", "-inform", "DER", "-i"], input=der, capture_output=True, check=False
    )
    if result.returncode != 0:
        raise AssertionError(f"openssl asn1parse failed: {result.stderr.decode(errors='replace')}")
    return result.stdout.decode("ascii")


@functools.cache
def _pkix_certificate_validator() -> Any:
    """The validator set of pkilint's ``lint_pkix_cert`` (pkilint/bin/lint_pkix_cert.py), built once."""
    return certificate.create_pkix_certificate_validator_container(
        certificate.create_decoding_validators(name.ATTRIBUTE_TYPE_MAPPINGS, extension.EXTENSION_MAPPINGS),
        [
            certificate.create_issuer_validator_container([]),
            certificate.create_validity_validator_container(),
            certificate.create_subject_validator_container([]),
            certificate.create_extensions_validator_container([]),
            certificate.create_spki_validator_container([]),
        ],
    )


def pkilint_errors(cert_der: bytes) -> list[str]:
    """pkilint's RFC 5280 findings of severity ERROR or FATAL, as ``validator @ path: finding`` strings."""
    document = loader.RFC5280CertificateDocumentLoader().load_der_document(cert_der, "certificate")
    results = _pkix_certificate_validator().validate(document.root)
    return [
        f"{result.validator} @ {result.node.path}: {description}"
        for result in results
        for description in result.finding_descriptions
        if description.finding.severity <= ValidationFindingSeverity.ERROR
    ]
