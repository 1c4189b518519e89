"""The only code that writes CA rows. One function per state change, each audited.

Issuance follows record-before-sign (docs/security.md T12-T15):

1. Tx A: lock the request; unless an intent exists, build the certificate from the profile,
   materialise its TBS with a throwaway key, and commit the intent (unique serial, TBS bytes).
2. Tx B: lock the request again; unless already issued, sign the stored TBS with the CA key,
   check it, store the certificate and mark the request issued, with its audit event.

A crash anywhere leaves either no intent (step 1 runs again) or an intent without a certificate
(step 2 re-signs the same TBS, same serial). Two deliveries of one task serialise on the row
lock and the second finds the request issued.
"""

from __future__ import annotations

import functools
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
from django.db import IntegrityError, connection, transaction
from django.db.models import F
from django.utils import timezone

from authority import keystore, signals, task_names
from authority.audit import audit_record, audit_record_many
from authority.failpoints import failpoint
from authority.models import (
    Certificate,
    CertificateAuthority,
    CertificateRequest,
    IssuanceIntent,
)
from authority.wakeups import wake, wake_done
from core.errors import ServiceError
from pki.ca import assess_ca, certificate_pem, fingerprint_sha256, load_certificate
from pki.csr import vet_csr
from pki.errors import CaRejected, IssuanceRefused, PkiError
from pki.issue import sign_tbs
from pki.keys import KeyType, PrivateKey, generate_private_key, load_private_key, load_public_key_der
from pki.names import validate_fqdn
from pki.profiles import (
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


class AuthorityError(ServiceError):
    """A refused CA operation (409 unless it says otherwise); the message is meant for the person who asked."""

    default_status = 409


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
    # No savepoint: inside peer_approve's transaction a failure here fails the approval anyway.
    with transaction.atomic(savepoint=False):
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
            transaction.on_commit(signer_wakeup)
    return request


def signer_wakeup(*, force: bool = False) -> bool:
    """Queue a drain of the pending requests unless one is queued already (or ``force``).

    Called after the request rows are committed. A broker that is down is not an error for the
    caller: the rows are committed and the sweeper wakes the signer later (T17 in docs/security.md).
    """
    return wake(task_names.CERTIFICATES_ISSUE_PENDING, force=force)


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
    # Step 1, Tx A: record the intent. Lock only the request row (of=self): locking the joined CA
    # row too would make every issuance wait on one row, and a transaction holding it while it
    # waits for the audit chain head deadlocks with one that holds the head and, at COMMIT,
    # checks its foreign key to that CA row (PostgreSQL's deferred FK check takes KEY SHARE).
    with transaction.atomic():
        request = CertificateRequest.objects.select_for_update(of=("self",)).select_related("ca").get(pk=request_id)
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
            CertificateRequest.objects.select_for_update(of=("self",)).select_related("ca", "intent").get(pk=request_id)
        )
        if request.status == CertificateRequest.Status.ISSUED:
            return request.certificate
        try:
            stored = _certificate_sign(request, request.intent, ca_key)
        except PkiError as exc:
            _request_fail(request, str(exc))
            return None
        failpoint("after_sign", request_id)
        stored.save()
        request.status = CertificateRequest.Status.ISSUED
        request.save(update_fields=["status"])
        audit_record_many([_issued_event(request, stored)])
        if request.announce_issued:
            transaction.on_commit(lambda: _announce_issued([request_id]))
    failpoint("after_store", request_id)
    return stored


def _announce_issued(request_ids: list[int]) -> None:
    """Tell the apps above (mail to the owners, new bundles): one signal per signer batch, ids only."""
    signals.certificates_issued.send(sender=None, request_ids=request_ids)


def _intent_draft(request: CertificateRequest) -> IssuanceIntent:
    """The unsaved intent for a request: a fresh serial and the complete TBS from the profile."""
    ca = request.ca
    not_before, not_after = leaf_validity(_utc_now(), request.validity_days, ca.not_after)
    spec = LeafSpec(
        fqdn=request.fqdn,
        public_key=load_public_key_der(bytes(request.public_key_der)),
        serial=_new_serial(),
        not_before=not_before,
        not_after=not_after.replace(microsecond=0),
        crl_url=settings.CA_CRL_URL,
    )
    ca_public_key = ca.certificate.public_key()
    tbs = tbs_bytes(leaf_builder(spec, ca.certificate), ca_public_key, _throwaway_for(ca))  # type: ignore[arg-type]
    return IssuanceIntent(
        request=request,
        serial=format(spec.serial, "x"),
        tbs_der=tbs,
        tbs_sha256=hashlib.sha256(tbs).hexdigest(),
        not_before=spec.not_before,
        not_after=spec.not_after,
    )


def _intent_event(intent: IssuanceIntent) -> tuple[str, str, str, dict[str, object]]:
    return (
        "certificate.intent",
        "signer",
        f"request:{intent.request_id}",
        {"serial": intent.serial, "tbs_sha256": intent.tbs_sha256},
    )


def _intent_create(request: CertificateRequest) -> IssuanceIntent:
    for _attempt in range(5):
        intent = _intent_draft(request)
        try:
            with transaction.atomic():
                intent.save()
        except IntegrityError:
            # Two requests drew the same 159-bit serial (or a test forced it): draw again.
            log.warning("serial collision for request %s; drawing a new serial", request.pk)
            continue
        request.status = CertificateRequest.Status.SIGNING
        request.save(update_fields=["status"])
        audit_record_many([_intent_event(intent)])
        return intent
    raise AuthorityError("could not allocate a unique serial after 5 attempts")


def _certificate_sign(request: CertificateRequest, intent: IssuanceIntent, ca_key: PrivateKey) -> Certificate:
    """Sign exactly the stored TBS and return the unsaved certificate row (raises PkiError)."""
    tbs = bytes(intent.tbs_der)
    if hashlib.sha256(tbs).hexdigest() != intent.tbs_sha256:
        # The recorded TBS changed after it was committed: never sign bytes nobody vetted.
        raise IssuanceRefused("the recorded to-be-signed certificate was altered; refusing to sign it")
    der = sign_tbs(tbs, ca_key, request.ca.certificate).public_bytes(serialization.Encoding.DER)
    return Certificate(
        request=request,
        ca=request.ca,
        serial=intent.serial,
        fqdn=request.fqdn,
        der=der,
        fingerprint_sha256=hashlib.sha256(der).hexdigest(),
        not_before=intent.not_before,
        not_after=intent.not_after,
    )


def _issued_event(request: CertificateRequest, cert: Certificate) -> tuple[str, str, str, dict[str, object]]:
    return (
        "certificate.issued",
        "signer",
        f"certificate:{cert.serial}",
        {
            "request": request.pk,
            "fqdn": request.fqdn,
            "fingerprint_sha256": cert.fingerprint_sha256,
            "not_after": cert.not_after.isoformat(),
        },
    )


def _request_fail(request: CertificateRequest, reason: str) -> None:
    request.status = CertificateRequest.Status.FAILED
    request.failure_reason = reason
    request.save(update_fields=["status", "failure_reason"])
    audit_record("certificate.failed", actor="signer", target=f"request:{request.pk}", reason=reason)


def certificates_issue_pending(*, batch: int = 100, max_batches: int = 1000) -> int:
    """Signer side: issue every pending request, in batches, with the same record-before-sign steps.

    Each batch is one Tx A (lock up to ``batch`` requests with SKIP LOCKED so parallel drains
    share the work, record all their intents) and one Tx B (sign each stored TBS, store the
    certificates). A request that fails its checks is marked failed and the others go on.
    Safe to run twice and concurrently. Returns the number of requests it moved forward.
    """
    wake_done(task_names.CERTIFICATES_ISSUE_PENDING)  # before looking: later requests wake us again
    if connection.features.has_select_for_update_skip_locked:
        backlog = CertificateRequest.objects.filter(status=CertificateRequest.Status.PENDING).count()
        if backlog > batch:
            signer_wakeup(force=True)  # a long queue: let another signer process take batches too
    done = 0
    for _ in range(max_batches):
        moved = _issue_batch(batch)
        done += moved
        if moved < batch:
            break
    return done


def _issue_batch(batch: int) -> int:
    waiting = [CertificateRequest.Status.PENDING, CertificateRequest.Status.SIGNING]
    # Tx A: record the intents of the batch's pending requests.
    with transaction.atomic():
        requests = list(
            CertificateRequest.objects.select_for_update(of=("self",), skip_locked=True)
            .select_related("ca")
            .filter(status__in=waiting)
            .order_by("pk")[:batch]
        )
        if not requests:
            return 0
        keys = {req.ca_id: keystore.signing_key(req.ca) for req in requests}  # only a signer gets past here
        drafts, failed, events = [], [], []
        have_intent = set(IssuanceIntent.objects.filter(request__in=requests).values_list("request_id", flat=True))
        for req in requests:
            if req.pk in have_intent:
                continue
            failpoint("before_intent", req.pk)
            try:
                drafts.append(_intent_draft(req))
            except PkiError as exc:
                failed.append((req, str(exc)))
        try:
            with transaction.atomic():
                IssuanceIntent.objects.bulk_create(drafts)
        except IntegrityError:  # a serial collision somewhere in the batch: record them one by one
            for draft in drafts:
                _intent_create(draft.request)
        else:
            CertificateRequest.objects.filter(pk__in=[d.request_id for d in drafts]).update(
                status=CertificateRequest.Status.SIGNING
            )
            events = [_intent_event(d) for d in drafts]
        for req, reason in failed:
            req.status, req.failure_reason = CertificateRequest.Status.FAILED, reason
            req.save(update_fields=["status", "failure_reason"])
            events.append(("certificate.failed", "signer", f"request:{req.pk}", {"reason": reason}))
        if events:
            audit_record_many(events)
    ids = [req.pk for req in requests]
    for request_id in ids:
        failpoint("after_intent_commit", request_id)

    # Tx B: sign each stored TBS, store the certificates, mark the requests issued.
    with transaction.atomic():
        signing = list(
            CertificateRequest.objects.select_for_update(of=("self",), skip_locked=True)
            .select_related("ca", "intent")
            .filter(pk__in=ids, status=CertificateRequest.Status.SIGNING)
            .order_by("pk")
        )
        certs, issued, events = [], [], []
        for req in signing:
            try:
                cert = _certificate_sign(req, req.intent, keys[req.ca_id])
            except PkiError as exc:
                req.status, req.failure_reason = CertificateRequest.Status.FAILED, str(exc)
                req.save(update_fields=["status", "failure_reason"])
                events.append(("certificate.failed", "signer", f"request:{req.pk}", {"reason": str(exc)}))
                continue
            failpoint("after_sign", req.pk)
            certs.append(cert)
            issued.append(req)
            events.append(_issued_event(req, cert))
        Certificate.objects.bulk_create(certs)
        CertificateRequest.objects.filter(pk__in=[r.pk for r in issued]).update(status=CertificateRequest.Status.ISSUED)
        if events:
            audit_record_many(events)
        announced = [req.pk for req in issued if req.announce_issued]
        if announced:
            transaction.on_commit(functools.partial(_announce_issued, announced))
    for request_id in ids:
        failpoint("after_store", request_id)
    return len(requests)


def requests_requeue_stale(*, older_than: timedelta) -> int:
    """Wake the signer for requests that have waited too long (lost message, broker down, worker killed).

    The claim is a conditional UPDATE on ``queued_at``, so two sweepers never count one request
    twice in the same round; a duplicate drain would be harmless anyway.
    """
    cutoff = timezone.now() - older_than
    stale = CertificateRequest.objects.filter(
        status__in=[CertificateRequest.Status.PENDING, CertificateRequest.Status.SIGNING], queued_at__lt=cutoff
    ).values_list("pk", "queued_at")[:1000]
    claimed = 0
    for pk, queued_at in list(stale):
        claimed += CertificateRequest.objects.filter(pk=pk, queued_at=queued_at).update(
            queued_at=timezone.now(), attempts=F("attempts") + 1
        )
    if claimed and signer_wakeup(force=True):
        log.info("sweeper queued %s stale request(s) again", claimed)
        return claimed
    return 0
