"""The CA itself: make one on this (CA) host, or adopt an existing openssl CA. Each step audited.

Call these through ``authority.services`` (``services.ca_create``, ``services.ca_import``).
"""

from __future__ import annotations

from datetime import timedelta

from cryptography import x509
from django.db import transaction
from django.utils import timezone

from authority import keystore
from authority.audit import audit_record
from authority.common import Actor, AuthorityError, active_ca, actor_name, new_serial, utc_now
from authority.models import CertificateAuthority
from pki.ca import assess_ca, certificate_pem, fingerprint_sha256, load_certificate
from pki.errors import CaRejected
from pki.keys import KeyType, PrivateKey, generate_private_key, load_private_key
from pki.profiles import CaSubject, build_ca_certificate


def ca_create(*, subject: CaSubject, key_type: KeyType, days: int, actor: Actor) -> CertificateAuthority:
    """Make a new CA key and self-signed certificate on this (CA) host and make it the active CA."""
    if active_ca() is not None:
        raise AuthorityError("a CA already exists; ca_portal runs one active CA")
    name = subject.to_name()
    keystore.ensure_passphrase_file()
    key = generate_private_key(key_type)
    cert = build_ca_certificate(
        key, subject=name, serial=new_serial(), not_before=utc_now() - timedelta(hours=1), days=days
    )
    return _ca_store(cert, key, imported=False, legacy_reasons=(), actor=actor, action="ca.created")


def ca_import(
    *, cert_pem: bytes, key_pem: bytes, key_passphrase: bytes | None, allow_legacy: bool, actor: Actor
) -> CertificateAuthority:
    """Adopt an existing openssl CA (as made in the case study); the key is re-encrypted under our passphrase."""
    if active_ca() is not None:
        raise AuthorityError("a CA already exists; ca_portal runs one active CA")
    cert = load_certificate(cert_pem)
    key = load_private_key(key_pem, key_passphrase)
    assessment = assess_ca(cert, key, now=timezone.now())
    if assessment.legacy_reasons and not allow_legacy:
        raise CaRejected(
            "this CA is too weak for today: "
            + "; ".join(assessment.legacy_reasons)
            + ". Make a new CA with init_ca, or pass --allow-legacy to import it anyway (it will be marked legacy)."
        )
    keystore.ensure_passphrase_file()
    return _ca_store(
        cert, key, imported=True, legacy_reasons=assessment.legacy_reasons, actor=actor, action="ca.imported"
    )


def _ca_store(
    cert: x509.Certificate,
    key: PrivateKey,
    *,
    imported: bool,
    legacy_reasons: tuple[str, ...],
    actor: Actor,
    action: str,
) -> CertificateAuthority:
    fingerprint = fingerprint_sha256(cert)
    key_file = f"ca-{fingerprint[:16]}.key"
    keystore.store_key(key, key_file)
    cn = cert.subject.get_attributes_for_oid(x509.oid.NameOID.COMMON_NAME)
    with transaction.atomic():
        ca = CertificateAuthority.objects.create(
            common_name=str(cn[0].value) if cn else cert.subject.rfc4514_string()[:64],
            certificate_pem=certificate_pem(cert),
            fingerprint_sha256=fingerprint,
            key_type=assess_ca(cert, key, now=cert.not_valid_before_utc).key_type,
            key_file=key_file,
            not_before=cert.not_valid_before_utc,
            not_after=cert.not_valid_after_utc,
            imported=imported,
            legacy_reasons=list(legacy_reasons),
        )
        audit_record(
            action,
            actor=actor_name(actor),
            target=f"ca:{ca.pk}",
            subject=cert.subject.rfc4514_string(),
            fingerprint_sha256=fingerprint,
            key_type=ca.key_type,
            legacy_reasons=list(legacy_reasons),
        )
    return ca
