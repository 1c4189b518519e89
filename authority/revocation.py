"""Revocation and the CRL: the only code that revokes certificates or makes CRLs. Each step audited.

- ``certificate_revoke`` is one conditional UPDATE (a certificate is revoked once, whoever races),
  then, after commit, wakes the signer to publish a new CRL and the bundles sweeper (the gateway's
  KeyNote remote_id list and every bundle's ``crls/ca.crl`` change).
- ``crl_publish`` runs only where the CA key is (the signer): it locks the CA row so CRL numbers
  are strictly increasing, lists every revoked certificate that has not expired, signs, checks the
  signature, stores the CRL and records ``crl.published``.
- ``crl_renew_if_due`` is the beat job: a new CRL every ``CRL_RENEW_HOURS`` (default 24; at half-life
  at the latest) of one valid ``CRL_VALIDITY_DAYS`` (default 30), so peers that fetch it never hold an
  expired CRL (the second most common VPN outage); see ``authority.crl_policy``.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography.hazmat.primitives import serialization
from django.conf import settings
from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from authority import keystore, signals, task_names
from authority.audit import audit_record
from authority.models import Certificate, CertificateAuthority, Crl, RevocationReason
from authority.services import Actor, AuthorityError, active_ca, actor_name
from core.tasks import send_by_name
from pki.ca import load_certificate
from pki.crl import RevokedEntry, build_crl, crl_validity, renewal_due

log = logging.getLogger(__name__)

REASONS = {choice.value for choice in RevocationReason}
MAX_COMMENT = 500


class RevocationError(AuthorityError):
    """A refused revocation; ``status`` is the HTTP status (404, 409, 400)."""

    default_status = 400
    default_field = "reason"


def certificate_revoke(
    *, certificate_id: int, reason: str, actor: Actor, comment: str = "", peer_id: int | None = None
) -> Certificate:
    """Revoke one certificate for an RFC 5280 reason. Refuses a second revocation (409)."""
    if reason not in REASONS:
        raise RevocationError(f"unknown reason {reason[:40]!r}; use one of: {', '.join(sorted(REASONS))}")
    if len(comment) > MAX_COMMENT:
        raise RevocationError(f"the comment is longer than {MAX_COMMENT} characters", field="comment")
    now = timezone.now().replace(microsecond=0)
    with transaction.atomic():
        won = Certificate.objects.filter(pk=certificate_id, revoked_at__isnull=True).update(
            revoked_at=now, revocation_reason=reason, revoked_by=actor_name(actor), revocation_comment=comment
        )
        certificate = Certificate.objects.filter(pk=certificate_id).first()
        if certificate is None:
            raise RevocationError("no such certificate", status=404, field="__all__")
        if not won:
            raise RevocationError(
                f"already revoked on {certificate.revoked_at:%Y-%m-%d %H:%M} UTC", status=409, field="__all__"
            )
        audit_record(
            "certificate.revoked",
            actor=actor_name(actor),
            target=f"certificate:{certificate.serial}",
            fqdn=certificate.fqdn,
            reason=reason,
            comment=comment,
            peer=peer_id,
        )
        transaction.on_commit(functools.partial(_after_revocation, certificate.pk))
    return certificate


def _after_revocation(certificate_id: int) -> None:
    send_by_name(task_names.CRL_PUBLISH, "revocation")
    signals.certificates_revoked.send(sender=None, certificate_ids=[certificate_id])


def revoked_entries(ca: CertificateAuthority, now: datetime) -> list[RevokedEntry]:
    """Every revoked certificate of the CA that has not expired (RFC 5280 lets expired ones drop off)."""
    rows = (
        Certificate.objects.filter(ca=ca, revoked_at__isnull=False, not_after__gt=now)
        .order_by("revoked_at", "pk")
        .values_list("serial", "revoked_at", "revocation_reason")
    )
    return [
        RevokedEntry(serial=int(serial, 16), revoked_at=at, reason=reason)
        for serial, at, reason in rows.iterator(chunk_size=5000)
        if at is not None  # always true here (filtered above); tells the type checker
    ]


def crl_publish(*, trigger: str = "manual", now: datetime | None = None) -> Crl:
    """Make, sign and store the next CRL of the active CA. Signer only (needs the CA key)."""
    with transaction.atomic():
        ca = CertificateAuthority.objects.select_for_update().filter(is_active=True).first()
        if ca is None:
            raise AuthorityError("there is no CA")
        key = keystore.signing_key(ca)  # SignerUnavailable outside the signer
        moment = (now or timezone.now()).replace(microsecond=0)
        this_update, next_update = crl_validity(moment, settings.CRL_VALIDITY_DAYS, ca.not_after)
        number = (Crl.objects.filter(ca=ca).aggregate(n=Max("number"))["n"] or 0) + 1
        entries = revoked_entries(ca, moment)
        crl = build_crl(
            ca_cert=load_certificate(ca.certificate_pem.encode()),
            ca_key=key,
            number=number,
            this_update=this_update,
            next_update=next_update,
            entries=entries,
        )
        stored = Crl.objects.create(
            ca=ca,
            number=number,
            this_update=this_update,
            next_update=next_update,
            der=crl.public_bytes(serialization.Encoding.DER),
            entries=len(entries),
            trigger=trigger,
        )
        audit_record(
            "crl.published",
            actor="signer",
            target=f"crl:{number}",
            number=number,
            entries=len(entries),
            this_update=this_update.isoformat(),
            next_update=next_update.isoformat(),
            trigger=trigger,
        )
        transaction.on_commit(functools.partial(_crl_changed, stored.pk))
    return stored


def _crl_changed(crl_id: int) -> None:
    signals.crl_published.send(sender=None, crl_id=crl_id)  # every bundle ships the new CRL


def current_crl(ca: CertificateAuthority | None = None) -> Crl | None:
    ca = ca or active_ca()
    if ca is None:
        return None
    return Crl.objects.filter(ca=ca).order_by("-number").first()


def crl_renew_if_due(*, now: datetime | None = None) -> Crl | None:
    """The schedule: a first CRL as soon as a CA exists, then a new one every CRL_RENEW_HOURS (at
    half-life at the latest; authority/crl_policy.py explains the choice)."""
    ca = active_ca()
    if ca is None:
        return None
    moment = now or timezone.now()
    latest = current_crl(ca)
    every = timedelta(hours=settings.CRL_RENEW_HOURS)
    if latest is not None and not renewal_due(latest.this_update, latest.next_update, moment, every=every):
        return None
    return crl_publish(trigger="schedule", now=moment)


@dataclass(frozen=True)
class CrlHealth:
    """What the admin dashboard says about the CRL."""

    crl: Crl | None
    warning: str

    @property
    def ok(self) -> bool:
        return not self.warning


def crl_health(*, now: datetime | None = None) -> CrlHealth:
    ca = active_ca()
    if ca is None:
        return CrlHealth(None, "")
    moment = now or timezone.now()
    latest = current_crl(ca)
    if latest is None:
        return CrlHealth(None, "No CRL has been published yet: is the signer worker (with its beat) running?")
    left = latest.next_update - moment
    if left <= timedelta(0):
        return CrlHealth(
            latest,
            f"The CRL expired at {latest.next_update:%Y-%m-%d %H:%M} UTC: peers that check it now refuse every "
            "certificate.",
        )
    validity = latest.next_update - latest.this_update
    overdue = min(2 * timedelta(hours=settings.CRL_RENEW_HOURS), validity * 3 / 4)
    if left < validity / 4 or moment - latest.this_update > overdue:
        return CrlHealth(
            latest,
            f"The CRL expires at {latest.next_update:%Y-%m-%d %H:%M} UTC and was not renewed on schedule: "
            "check the signer worker and its beat.",
        )
    return CrlHealth(latest, "")
