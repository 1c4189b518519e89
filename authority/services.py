"""The only code that writes CA rows. One function per state change, each audited.

The names other apps use are all here: ``ca_create`` and ``ca_import`` (from ``ca_setup``),
``certificate_request_create``, ``certificate_issue``, ``certificates_issue_pending``,
``signer_wakeup``, ``requests_requeue_stale``, ``active_ca`` and the actor helpers.

Issuance follows record-before-sign (docs/security.md T12-T15), in one path, ``_issue_batch``, for
the signer's drain (a batch of up to 100 pending requests) and for ``certificate_issue`` (a batch
of one):

1. Tx A: lock the requests; for each without an intent, build the certificate from the profile,
   materialise its TBS with a throwaway key, and commit the intents (unique serial, TBS bytes).
2. Tx B: lock them again; for each not yet issued, sign the stored TBS with the CA key, check
   it, store the certificate and mark the request issued, with its audit event.

A crash anywhere leaves either no intent (step 1 runs again) or an intent without a certificate
(step 2 re-signs the same TBS, same serial). Two runs on one request serialise on its row lock
(a drain skips the rows another drain holds) and the second finds the request issued.
"""

from __future__ import annotations

import functools
import hashlib
import logging
from datetime import timedelta

from django.conf import settings
from django.contrib.auth.models import User
from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone

from authority import issuance, signals, task_names
from authority.audit import Event, audit_append_many, audit_record
from authority.ca_setup import ca_create, ca_import
from authority.common import Actor, AuthorityError, active_ca, actor_name, cli_actor, utc_now
from authority.failpoints import failpoint
from authority.models import Certificate, CertificateRequest
from authority.wakeups import wake, wake_done
from pki.csr import vet_csr
from pki.errors import PkiError
from pki.names import validate_fqdn
from pki.profiles import leaf_validity

__all__ = [
    "Actor",
    "AuthorityError",
    "active_ca",
    "actor_name",
    "ca_create",
    "ca_import",
    "certificate_issue",
    "certificate_request_create",
    "certificates_issue_pending",
    "cli_actor",
    "requests_requeue_stale",
    "signer_wakeup",
]

log = logging.getLogger(__name__)

BATCH = 100  # requests per Tx A / Tx B pair in the signer's drain


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


def certificate_issue(*, request_id: int) -> Certificate | None:
    """Issue the certificate for one request: the signer's path for a batch of just this request,
    waiting for its row lock rather than skipping it. Safe to call any number of times,
    concurrently too. Returns the certificate, or None if the request failed."""
    _issue_batch(request_ids=[request_id])
    certificate = Certificate.objects.filter(request_id=request_id).first()
    if certificate is None and not CertificateRequest.objects.filter(pk=request_id).exists():
        raise CertificateRequest.DoesNotExist(f"no certificate request {request_id}")
    return certificate


def certificates_issue_pending(*, batch: int = BATCH, max_batches: int = 1000) -> int:
    """Signer side: issue every pending request, in batches of ``batch``.

    Each batch is one Tx A and one Tx B (see the module's docstring); parallel drains share the
    work (SKIP LOCKED). A request that fails its checks is marked failed and the others go on.
    Safe to run twice and concurrently. Returns the number of requests it moved forward.
    """
    wake_done(task_names.CERTIFICATES_ISSUE_PENDING)  # before looking: later requests wake us again
    if connection.features.has_select_for_update_skip_locked:
        backlog = CertificateRequest.objects.filter(status=CertificateRequest.Status.PENDING).count()
        if backlog > batch:
            signer_wakeup(force=True)  # a long queue: let another signer process take batches too
    done = 0
    for _ in range(max_batches):
        moved = _issue_batch(limit=batch)
        done += moved
        if moved < batch:
            break
    return done


def _issue_batch(*, request_ids: list[int] | None = None, limit: int = BATCH) -> int:
    """Record before sign for the given requests, or for up to ``limit`` waiting ones. Returns how
    many requests it locked (0: nothing to do). The failpoints mark the steps a crash test kills."""
    # Tx A: record the intents. Lock only the request rows: locking the CA row too would make every
    # issuance wait on one row, and a transaction holding it while it waits for the audit chain
    # head deadlocks with one that holds the head and, at COMMIT, checks its foreign key to that
    # CA row (PostgreSQL's deferred FK check takes KEY SHARE).
    with transaction.atomic():
        waiting = issuance.lock_waiting(request_ids, limit)
        if not waiting:
            return 0
        # Only a signer gets past this line (SignerUnavailable rolls Tx A back), so a web process
        # never even records an intent.
        issuers = issuance.issuers(request.ca_id for request in waiting)
        drafts: list[issuance.Draft] = []
        refused: list[tuple[int, str]] = []
        now = utc_now()
        for request in waiting:
            if request.has_intent:
                continue
            failpoint("before_intent", request.pk)
            try:
                drafts.append(issuance.draft(request, issuers[request.ca_id], now))
            except PkiError as exc:
                refused.append((request.pk, str(exc)))
        if drafts:
            drafts = issuance.intents_record(drafts, {r.pk: r for r in waiting}, issuers)
        audit_append_many([issuance.intent_event(d) for d in drafts] + issuance.requests_fail(refused))
    failed = {pk for pk, _reason in refused}
    ids = [request.pk for request in waiting if request.pk not in failed]
    for request_id in ids:
        failpoint("after_intent_commit", request_id)

    # Tx B: sign exactly the stored TBS under the row locks, store, mark issued.
    with transaction.atomic():
        signing = issuance.lock_signing(ids, skip_locked=request_ids is None)
        signed: list[issuance.Signed] = []
        events: list[Event] = []
        for row in signing:
            try:
                cert = issuance.sign(row, issuers[row.ca_id])
            except PkiError as exc:
                events += issuance.requests_fail([(row.pk, str(exc))])
                continue
            failpoint("after_sign", row.pk)
            signed.append(cert)
            events.append(issuance.issued_event(cert))
        issuance.certificates_store(signed)
        audit_append_many(events)
        announced = [cert.request.pk for cert in signed if cert.request.announce_issued]
        if announced:
            transaction.on_commit(functools.partial(_announce_issued, announced))
    for request_id in ids:
        failpoint("after_store", request_id)
    return len(waiting)


def _announce_issued(request_ids: list[int]) -> None:
    """Tell the apps above (mail to the owners, new bundles): one signal per signer batch, ids only."""
    signals.certificates_issued.send(sender=None, request_ids=request_ids)


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
