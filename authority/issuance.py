"""The signer's work inside the record-before-sign steps that ``authority.services`` runs.

``services._issue_batch`` owns the order (transactions, row locks, failpoints); this module does
what happens inside them for a batch of requests, and does it cheaply: rows are read as tuples,
the CA certificate is parsed once per batch, intents, certificates and audit events are written
with one INSERT statement each (``authority.inserts``), and the statuses with one UPDATE.

- Tx A: ``lock_waiting`` -> ``issuers`` (loads the CA key: only a signer gets further) ->
  ``draft`` per request (serial + TBS from the profile, materialised with a throwaway key) ->
  ``intents_record`` (a collision redraws the serial) -> ``requests_fail`` for refused ones.
- Tx B: ``lock_signing`` -> ``sign`` per request (exactly the stored TBS, checked) ->
  ``certificates_store``.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from django.conf import settings
from django.utils import timezone

from authority import keystore
from authority.audit import Event
from authority.common import AuthorityError, new_serial, utc_now
from authority.inserts import insert_rows
from authority.models import Certificate, CertificateAuthority, CertificateRequest, IssuanceIntent
from pki.errors import IssuanceRefused
from pki.issue import sign_tbs
from pki.keys import PrivateKey, PublicKey, load_public_key_der
from pki.profiles import LeafSpec, leaf_builder, leaf_validity, tbs_bytes, throwaway_key_like

log = logging.getLogger(__name__)

Status = CertificateRequest.Status
WAITING = (Status.PENDING, Status.SIGNING)
SERIAL_ATTEMPTS = 5  # draws per request before giving up (a 159-bit serial collides ~never)


# --- Tx A: record the intents ------------------------------------------------------------------


class Waiting(NamedTuple):
    """A pending (or signing) request, locked for this batch."""

    pk: int
    ca_id: int
    fqdn: str
    public_key_der: bytes
    validity_days: int
    has_intent: bool  # recorded before a crash: that serial and TBS are the ones to sign


def lock_waiting(request_ids: list[int] | None, limit: int) -> list[Waiting]:
    """Lock the requests to move forward: the given ones, waiting for their locks, or else up to
    ``limit`` of the oldest, skipping those another signer holds (SKIP LOCKED)."""
    rows = CertificateRequest.objects.select_for_update(skip_locked=request_ids is None).filter(status__in=WAITING)
    if request_ids is not None:
        rows = rows.filter(pk__in=request_ids)
    columns = ("pk", "ca_id", "fqdn", "public_key_der", "validity_days")
    found = list(rows.order_by("pk").values_list(*columns)[:limit])
    # A separate lookup by request id (its unique index), not a join: joined, PostgreSQL may scan
    # every intent ever recorded to find the few of this batch.
    recorded = set(
        IssuanceIntent.objects.filter(request_id__in=[row[0] for row in found]).values_list("request_id", flat=True)
    )
    return [Waiting(pk, ca, fqdn, bytes(key), days, pk in recorded) for pk, ca, fqdn, key, days in found]


@dataclass(frozen=True)
class Issuer:
    """A CA as this batch uses it: its row (read in this batch), certificate, keys."""

    ca: CertificateAuthority
    certificate: x509.Certificate
    public_key: PublicKey
    key: PrivateKey  # the CA key; raises SignerUnavailable outside a signer process
    throwaway: PrivateKey  # materialises TBS bytes; its signatures are discarded


def issuers(ca_ids: Iterable[int]) -> dict[int, Issuer]:
    """The CAs of a batch, each certificate parsed once; raises SignerUnavailable before any write."""
    found = {}
    for ca in CertificateAuthority.objects.filter(pk__in=set(ca_ids)):
        certificate = ca.certificate
        public_key: PublicKey = certificate.public_key()  # type: ignore[assignment]
        found[ca.pk] = Issuer(ca, certificate, public_key, keystore.signing_key(ca), _throwaway_for(ca, public_key))
    return found


_throwaway: dict[str, PrivateKey] = {}
_throwaway_lock = threading.Lock()


def _throwaway_for(ca: CertificateAuthority, public_key: PublicKey) -> PrivateKey:
    kind = "rsa" if ca.key_type.startswith("rsa") else "ecdsa"
    with _throwaway_lock:
        if kind not in _throwaway:
            _throwaway[kind] = throwaway_key_like(public_key)
        return _throwaway[kind]


@dataclass(frozen=True)
class Draft:
    """An intent not yet stored: a fresh serial and the complete TBS from the profile."""

    request_id: int
    serial: str
    tbs_der: bytes
    tbs_sha256: str
    not_before: datetime
    not_after: datetime


def draft(request: Waiting, issuer: Issuer, now: datetime) -> Draft:
    """Build the request's certificate from the profile and materialise its TBS (raises PkiError).
    ``now`` (whole seconds, UTC) starts the validity, backdated by the profile."""
    not_before, not_after = leaf_validity(now, request.validity_days, issuer.ca.not_after)
    spec = LeafSpec(
        fqdn=request.fqdn,
        public_key=load_public_key_der(request.public_key_der),
        serial=new_serial(),
        not_before=not_before,
        not_after=not_after.replace(microsecond=0),
        crl_url=settings.CA_CRL_URL,
    )
    tbs = tbs_bytes(leaf_builder(spec, issuer.certificate), issuer.public_key, issuer.throwaway)
    return Draft(
        request_id=request.pk,
        serial=format(spec.serial, "x"),
        tbs_der=tbs,
        tbs_sha256=hashlib.sha256(tbs).hexdigest(),
        not_before=spec.not_before,
        not_after=spec.not_after,
    )


_INTENT_COLUMNS = ("request_id", "serial", "tbs_der", "tbs_sha256", "not_before", "not_after", "created_at")


def _intents_insert(drafts: list[Draft]) -> int:
    """Store the drafts whose serial is free; returns how many were stored."""
    now = timezone.now()
    rows = [(d.request_id, d.serial, d.tbs_der, d.tbs_sha256, d.not_before, d.not_after, now) for d in drafts]
    return insert_rows(IssuanceIntent, _INTENT_COLUMNS, rows, skip_conflicts=True)


def intents_record(drafts: list[Draft], requests: dict[int, Waiting], by_ca: dict[int, Issuer]) -> list[Draft]:
    """Store the drafts and mark their requests signing; returns the drafts as stored.

    One INSERT for all. A draft whose serial is taken (by an earlier certificate, or by another
    draft of the batch) is left out by it and its request draws a new serial, up to
    SERIAL_ATTEMPTS draws in all, then AuthorityError (the caller's transaction rolls back and
    the sweeper retries). The requests are locked, so the serial is the only possible conflict.
    """
    if _intents_insert(drafts) < len(drafts):
        stored = dict(
            IssuanceIntent.objects.filter(request_id__in=[d.request_id for d in drafts]).values_list(
                "request_id", "serial"
            )
        )
        drafts = [
            d if stored.get(d.request_id) == d.serial else _intent_redraw(requests[d.request_id], by_ca) for d in drafts
        ]
    CertificateRequest.objects.filter(pk__in=[d.request_id for d in drafts]).update(status=Status.SIGNING)
    return drafts


def _intent_redraw(request: Waiting, by_ca: dict[int, Issuer]) -> Draft:
    for _attempt in range(SERIAL_ATTEMPTS - 1):  # the first draw collided already
        # Two requests drew the same 159-bit serial (or a test forced it): draw again.
        log.warning("serial collision for request %s; drawing a new serial", request.pk)
        candidate = draft(request, by_ca[request.ca_id], utc_now())
        if _intents_insert([candidate]):
            return candidate
    log.warning("serial collision for request %s; giving up", request.pk)
    raise AuthorityError(f"could not allocate a unique serial after {SERIAL_ATTEMPTS} attempts")


def intent_event(intent: Draft) -> Event:
    data: dict[str, object] = {"serial": intent.serial, "tbs_sha256": intent.tbs_sha256}
    return ("certificate.intent", "signer", f"request:{intent.request_id}", data)


def requests_fail(failures: list[tuple[int, str]]) -> list[Event]:
    """Mark refused requests failed (rare: one UPDATE each); returns their audit events."""
    for pk, reason in failures:
        CertificateRequest.objects.filter(pk=pk).update(status=Status.FAILED, failure_reason=reason)
    return [("certificate.failed", "signer", f"request:{pk}", {"reason": reason}) for pk, reason in failures]


# --- Tx B: sign and store ----------------------------------------------------------------------


class Signing(NamedTuple):
    """A request with a recorded intent, locked for signing."""

    pk: int
    ca_id: int
    fqdn: str
    announce_issued: bool
    serial: str
    tbs_der: bytes
    tbs_sha256: str
    not_before: datetime
    not_after: datetime


def lock_signing(request_ids: list[int], *, skip_locked: bool) -> list[Signing]:
    """Lock those of the requests that are still to be signed, with their recorded intents."""
    rows = (
        CertificateRequest.objects.select_for_update(of=("self",), skip_locked=skip_locked)
        .filter(pk__in=request_ids, status=Status.SIGNING, intent__isnull=False)
        .order_by("pk")
        .values_list(
            "pk",
            "ca_id",
            "fqdn",
            "announce_issued",
            "intent__serial",
            "intent__tbs_der",
            "intent__tbs_sha256",
            "intent__not_before",
            "intent__not_after",
        )
    )
    return [
        Signing(pk, ca, fqdn, ann, serial, bytes(tbs), sha, nb, na)
        for pk, ca, fqdn, ann, serial, tbs, sha, nb, na in rows
    ]


@dataclass(frozen=True)
class Signed:
    """A certificate made from a recorded intent, not yet stored."""

    request: Signing
    der: bytes
    fingerprint_sha256: str


def sign(request: Signing, issuer: Issuer) -> Signed:
    """Sign exactly the stored TBS with the CA key and check the result (raises PkiError)."""
    tbs = request.tbs_der
    if hashlib.sha256(tbs).hexdigest() != request.tbs_sha256:
        # The recorded TBS changed after it was committed: never sign bytes nobody vetted.
        raise IssuanceRefused("the recorded to-be-signed certificate was altered; refusing to sign it")
    der = sign_tbs(tbs, issuer.key, issuer.certificate).public_bytes(serialization.Encoding.DER)
    return Signed(request, der, hashlib.sha256(der).hexdigest())


_CERTIFICATE_COLUMNS = (
    "request_id",
    "ca_id",
    "serial",
    "fqdn",
    "der",
    "fingerprint_sha256",
    "not_before",
    "not_after",
    "issued_at",
)


def certificates_store(signed: list[Signed]) -> None:
    """Store the certificates and mark their requests issued."""
    rows = []
    for cert in signed:
        r = cert.request
        rows.append(
            (
                r.pk,
                r.ca_id,
                r.serial,
                r.fqdn,
                cert.der,
                cert.fingerprint_sha256,
                r.not_before,
                r.not_after,
                timezone.now(),
            )
        )
    insert_rows(Certificate, _CERTIFICATE_COLUMNS, rows)
    CertificateRequest.objects.filter(pk__in=[cert.request.pk for cert in signed]).update(status=Status.ISSUED)


def issued_event(cert: Signed) -> Event:
    r = cert.request
    data: dict[str, object] = {
        "request": r.pk,
        "fqdn": r.fqdn,
        "fingerprint_sha256": cert.fingerprint_sha256,
        "not_after": r.not_after.isoformat(),
    }
    return ("certificate.issued", "signer", f"certificate:{r.serial}", data)
