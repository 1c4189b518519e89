"""Renewal reminders: mail to owners whose certificate expires soon, once per threshold."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone

from authority.models import Certificate, CertificateRequest
from enrollment.models import Peer, RenewalReminder
from enrollment.selectors import certificate_of, renewal_reminder_thresholds

log = logging.getLogger(__name__)


def renewal_reminders_send(*, now: datetime | None = None) -> int:
    """Mail owners whose certificate expires soon, once per threshold (30, 7, 1 days by default).

    Only live issued peers without a renewal under way are reminded. The reminder sent is the one for
    the smallest threshold reached; it also counts for every larger one, so a reminder that was missed
    is never sent late. Owners without an email address get none (and nothing is recorded, so a
    reminder goes out once they add one). Returns the number of mails sent.
    """
    thresholds = renewal_reminder_thresholds()
    if not thresholds:
        return 0
    moment = now or timezone.now()
    under_way = (
        Peer.objects.filter(renews=OuterRef("pk"), retired_at__isnull=True)
        .exclude(decision=Peer.Decision.REJECTED)
        .exclude(certificate_request__status=CertificateRequest.Status.FAILED)
    )
    peers = (
        Peer.objects.filter(
            decision=Peer.Decision.APPROVED,
            retired_at__isnull=True,
            certificate_request__status=CertificateRequest.Status.ISSUED,
            certificate_request__certificate__revoked_at__isnull=True,
            certificate_request__certificate__not_after__gt=moment,
            certificate_request__certificate__not_after__lte=moment + timedelta(days=thresholds[0]),
        )
        .exclude(owner__email="")
        .filter(~Exists(under_way))
        .select_related("owner", "certificate_request__certificate")
        .order_by("pk")
    )
    sent = 0
    for peer in list(peers):
        certificate = certificate_of(peer)
        if certificate is None:
            continue
        left = certificate.not_after - moment
        due = min(d for d in thresholds if left <= timedelta(days=d))
        try:
            sent += _reminder_send(peer, certificate, due=due, thresholds=thresholds, now=moment)
        except OSError as exc:  # SMTP trouble: nothing recorded, the next run tries again
            log.warning("renewal reminder for peer %s not sent: %s", peer.pk, exc)
    return sent


def _reminder_send(
    peer: Peer, certificate: Certificate, *, due: int, thresholds: tuple[int, ...], now: datetime
) -> int:
    with transaction.atomic():
        _, created = RenewalReminder.objects.get_or_create(certificate=certificate, days=due, defaults={"sent_at": now})
        if not created:
            return 0
        RenewalReminder.objects.bulk_create(
            [RenewalReminder(certificate=certificate, days=d, sent_at=now) for d in thresholds if d > due],
            ignore_conflicts=True,
        )
        link = f"{settings.SITE_URL}/peers/{peer.pk}/renew/"
        expires = f"{certificate.not_after:%Y-%m-%d %H:%M} UTC"
        body = "\n".join(
            [
                f"Hello {peer.owner.get_username()},",
                "",
                f"{peer.fqdn} expires on {expires}: renew it at {link}",
                "",
                "Renewing gives the peer a new certificate (with a new key) while the current one keeps working;",
                "the current one is revoked a few days after you download the new bundle.",
                "",
                "-- ca_portal",
            ]
        )
        # Inside the transaction: a mail that fails records nothing, and the next run sends it.
        send_mail(f"{peer.fqdn}: the certificate expires on {expires}", body, None, [peer.owner.email])
    return 1
