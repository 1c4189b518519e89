"""The only code that writes CA rows. One function per state change, each audited.

Issuance follows record-before-sign (SECURITY.md T12-T15):

1. Tx A: lock the request; unless an intent exists, build the certificate from the profile,
   materialise its TBS with a throwaway key, and commit the intent (unique serial, TBS bytes).
2. Tx B: lock the request again; unless already issued, sign the stored TBS with the CA key,
   check it, store the certificate and mark the request issued, with its audit event.

A crash anywhere leaves either no intent (step 1 runs again) or an intent without a certificate
(step 2 re-signs the same TBS, same serial). Two deliveries of one task serialise on the row
lock and the second finds the request issued.
"""

from __future__ import annotations

import hashlib
import logging
import os
import pwd
import threading
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from django.conf import settings
from django.contrib.auth.models import User
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from ca_portal.authority import keystore
from ca_portal.authority.audit import audit_record
from ca_portal.authority.failpoints import failpoint
from ca_portal.authority.models import Certificate, CertificateAuthority, CertificateRequest, IssuanceIntent
from ca_portal.pki.ca import assess_ca, certificate_pem, fingerprint_sha256, load_certificate
from ca_portal.pki.csr import vet_csr
from ca_portal.pki.errors import CaRejected, PkiError
from ca_portal.pki.issue import sign_tbs
from ca_portal.pki.keys import KeyType, PrivateKey, generate_private_key, load_private_key, load_public_key_der
from ca_portal.pki.names import validate_fqdn
from ca_portal.pki.profiles import (
    CaSubject,
    LeafSpec,
    build_ca_certificate,
    leaf_builder,
    leaf_validity,
    serial_from_random,
    tbs_bytes,
    throwaway_key_like,
)

log = logging.getLogger(__name__)

Actor = User | str | None


class AuthorityError(Exception):
    """A refused CA operation; the message is meant for the person who asked."""


def actor_name(actor: Actor) -> str:
    if actor is None:
        return "system"
    if isinstance(actor, str):
        return actor
    return f"user:{actor.get_username()}"


def cli_actor() -> str:
    """The audit name of whoever runs a management command on the CA host."""
    try:
        return f"cli:{pwd.getpwuid(os.getuid()).pw_name}"
    except KeyError:
        return f"cli:uid{os.getuid()}"


def active_ca() -> CertificateAuthority | None:
    return CertificateAuthority.objects.filter(is_active=True).first()


def _utc_now() -> datetime:
    return timezone.now().replace(microsecond=0)


# --- the CA itself ---------------------------------------------------------------------------


def ca_create(*, subject: CaSubject, key_type: KeyType, days: int, actor: Actor) -> CertificateAuthority:
    """Make a new CA key and self-signed certificate on this (CA) host and make it the active CA."""
    if active_ca() is not None:
        raise AuthorityError("a CA already exists; ca_portal runs one active CA")
    name = subject.to_name()
    keystore.ensure_passphrase_file()
    key = generate_private_key(key_type)
    cert = build_ca_certificate(
        key, subject=name, serial=_new_serial(), not_before=_utc_now() - timedelta(hours=1), days=days
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


# --- requests and issuance -------------------------------------------------------------------


def certificate_request_create(
    *,
    fqdn: str,
    kind: str,
    csr_pem: str,
    validity_days: int | None,
    requested_by: User | None,
    approved_by: User | None,
    actor: Actor,
    enqueue: bool = True,
    announce_issued: bool = False,
) -> CertificateRequest:
    """Record an approved order to sign and queue it for the signer once the row is committed.

    Raises PkiError (NameRejected, CsrRejected, ...) or AuthorityError before writing anything.
    """
    ca = active_ca()
    if ca is None:
        raise AuthorityError("there is no CA yet; an admin must run `manage.py init_ca` first")
    validate_fqdn(fqdn)
    if kind not in CertificateRequest.Kind.values:
        raise AuthorityError(f"the kind must be client or server, not {kind!r}")
    vetted = vet_csr(csr_pem, fqdn=fqdn)
    days = settings.CA_DEFAULT_VALIDITY_DAYS if validity_days is None else validity_days
    leaf_validity(timezone.now(), days, ca.not_after)  # refuse now, not later in the worker
    with transaction.atomic():
        request = CertificateRequest.objects.create(
            ca=ca,
            fqdn=fqdn,
            kind=kind,
            csr_pem=csr_pem,
            public_key_der=vetted.public_key_der,
            key_type=vetted.key_type,
            validity_days=days,
            requested_by=requested_by,
            approved_by=approved_by,
            queued_at=timezone.now(),
            announce_issued=announce_issued,
        )
        audit_record(
            "certificate.requested",
            actor=actor_name(actor),
            target=f"request:{request.pk}",
            fqdn=fqdn,
            kind=kind,
            key_type=vetted.key_type,
            validity_days=days,
            public_key_sha256=hashlib.sha256(vetted.public_key_der).hexdigest(),
        )
        if enqueue:
            transaction.on_commit(lambda: enqueue_issue(request.pk))
    return request


def enqueue_issue(request_id: int) -> bool:
    """Send the id to the signer queue. A broker that is down is not an error for the caller:
    the request row is committed and the sweeper queues it again (SECURITY.md T17)."""
    from ca_portal.authority.tasks import certificate_issue_task

    try:
        certificate_issue_task.apply_async((request_id,), retry=False)
    except Exception:  # kombu raises OperationalError and friends; none may reach the user
        log.warning("broker unavailable; request %s will be queued by the sweeper", request_id)
        return False
    return True


_throwaway: dict[str, PrivateKey] = {}
_throwaway_lock = threading.Lock()


def _throwaway_for(ca: CertificateAuthority) -> PrivateKey:
    kind = "rsa" if ca.key_type.startswith("rsa") else "ecdsa"
    with _throwaway_lock:
        if kind not in _throwaway:
            _throwaway[kind] = throwaway_key_like(ca.certificate.public_key())  # type: ignore[arg-type]
        return _throwaway[kind]


def _new_serial() -> int:
    while True:
        try:
            return serial_from_random(os.urandom(20))
        except ValueError:
            continue


def certificate_issue(*, request_id: int) -> Certificate | None:
    """Issue the certificate for a request. Safe to call any number of times, concurrently too."""
    # Step 1, Tx A: record the intent.
    with transaction.atomic():
        request = CertificateRequest.objects.select_for_update().select_related("ca").get(pk=request_id)
        if request.status == CertificateRequest.Status.ISSUED:
            return request.certificate
        if request.status == CertificateRequest.Status.FAILED:
            return None
        # Only a signer gets past this line (SignerUnavailable rolls Tx A back), so a web process
        # never even records an intent.
        ca_key = keystore.signing_key(request.ca)
        intent = IssuanceIntent.objects.filter(request=request).first()
        if intent is None:
            failpoint("before_intent", request_id)
            try:
                intent = _intent_create(request)
            except PkiError as exc:
                _request_fail(request, str(exc))
                return None
    failpoint("after_intent_commit", request_id)

    # Step 2, Tx B: sign exactly the stored TBS under the row lock, store, mark issued.
    with transaction.atomic():
        request = (
            CertificateRequest.objects.select_for_update(of=("self",))
            .select_related("ca", "intent")
            .get(pk=request_id)
        )
        if request.status == CertificateRequest.Status.ISSUED:
            return request.certificate
        intent = request.intent
        tbs = bytes(intent.tbs_der)
        if hashlib.sha256(tbs).hexdigest() != intent.tbs_sha256:
            # The recorded TBS changed after it was committed: never sign bytes nobody vetted.
            _request_fail(request, "the recorded to-be-signed certificate was altered; refusing to sign it")
            return None
        try:
            cert = sign_tbs(tbs, ca_key, request.ca.certificate)
        except PkiError as exc:
            _request_fail(request, str(exc))
            return None
        failpoint("after_sign", request_id)
        der = cert.public_bytes(serialization.Encoding.DER)
        stored = Certificate.objects.create(
            request=request,
            ca=request.ca,
            serial=intent.serial,
            fqdn=request.fqdn,
            der=der,
            fingerprint_sha256=hashlib.sha256(der).hexdigest(),
            not_before=intent.not_before,
            not_after=intent.not_after,
        )
        request.status = CertificateRequest.Status.ISSUED
        request.save(update_fields=["status"])
        audit_record(
            "certificate.issued",
            actor="signer",
            target=f"certificate:{intent.serial}",
            request=request.pk,
            fqdn=request.fqdn,
            fingerprint_sha256=stored.fingerprint_sha256,
            not_after=intent.not_after.isoformat(),
        )
        if request.announce_issued:
            transaction.on_commit(lambda: _announce_issued(request_id))
    failpoint("after_store", request_id)
    return stored


def _announce_issued(request_id: int) -> None:
    """Tell whoever listens (the enrollment app mails the owner) by task name, without importing it."""
    from ca_portal.celery import app

    try:
        app.send_task("enrollment.peer_issued_notify", args=(request_id,), retry=False)
    except Exception:
        log.warning("broker unavailable; no issuance notice for request %s", request_id)


def _intent_create(request: CertificateRequest) -> IssuanceIntent:
    ca = request.ca
    now = _utc_now()
    not_before, not_after = leaf_validity(now, request.validity_days, ca.not_after)
    public_key = load_public_key_der(bytes(request.public_key_der))
    for _attempt in range(5):
        spec = LeafSpec(
            fqdn=request.fqdn,
            public_key=public_key,
            serial=_new_serial(),
            not_before=not_before,
            not_after=not_after.replace(microsecond=0),
            crl_url=settings.CA_CRL_URL,
        )
        tbs = tbs_bytes(leaf_builder(spec, ca.certificate), ca.certificate.public_key(), _throwaway_for(ca))  # type: ignore[arg-type]
        serial_hex = format(spec.serial, "x")
        try:
            with transaction.atomic():
                intent = IssuanceIntent.objects.create(
                    request=request,
                    serial=serial_hex,
                    tbs_der=tbs,
                    tbs_sha256=hashlib.sha256(tbs).hexdigest(),
                    not_before=spec.not_before,
                    not_after=spec.not_after,
                )
        except IntegrityError:
            # Two requests drew the same 159-bit serial (or a test forced it): draw again.
            log.warning("serial collision for request %s; drawing a new serial", request.pk)
            continue
        request.status = CertificateRequest.Status.SIGNING
        request.save(update_fields=["status"])
        audit_record(
            "certificate.intent",
            actor="signer",
            target=f"request:{request.pk}",
            serial=serial_hex,
            tbs_sha256=intent.tbs_sha256,
        )
        return intent
    raise AuthorityError("could not allocate a unique serial after 5 attempts")


def _request_fail(request: CertificateRequest, reason: str) -> None:
    request.status = CertificateRequest.Status.FAILED
    request.failure_reason = reason
    request.save(update_fields=["status", "failure_reason"])
    audit_record("certificate.failed", actor="signer", target=f"request:{request.pk}", reason=reason)


def requests_requeue_stale(*, older_than: timedelta) -> int:
    """Queue again every request that has waited too long (lost message, broker down, worker killed).

    The claim is a conditional UPDATE on ``queued_at``, so two sweepers never queue one request
    twice in the same round; a duplicate delivery would be harmless anyway.
    """
    cutoff = timezone.now() - older_than
    stale = CertificateRequest.objects.filter(
        status__in=[CertificateRequest.Status.PENDING, CertificateRequest.Status.SIGNING], queued_at__lt=cutoff
    ).values_list("pk", "queued_at")[:1000]
    queued = 0
    for pk, queued_at in list(stale):
        claimed = CertificateRequest.objects.filter(pk=pk, queued_at=queued_at).update(
            queued_at=timezone.now(), attempts=F("attempts") + 1
        )
        if claimed == 1 and enqueue_issue(pk):
            queued += 1
    if queued:
        log.info("sweeper queued %s stale request(s) again", queued)
    return queued
