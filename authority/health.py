"""The authority's readiness checks for /readyz: the signer is alive, the CRL is fresh, no request waits.

Each detail is safe to show to anyone (core/health.py): ages and counts, never a worker's host name.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Count, Min
from django.utils import timezone

from authority.heartbeat import HEARTBEAT_MAX_AGE, signer_state
from authority.models import CertificateRequest
from authority.revocation import current_crl
from authority.services import active_ca
from core.health import Check, CheckFunction

WAITING = (CertificateRequest.Status.PENDING, CertificateRequest.Status.SIGNING)
CRL_STALE_FRACTION = 0.75  # renewed at half-life; past three quarters the schedule has failed twice


def _seconds(delta: timedelta) -> str:
    return f"{int(delta.total_seconds())} s"


def signer_check(*, now: datetime | None = None) -> Check:
    state = signer_state(now=now)
    if state.age is None:
        return Check("signer", False, "no signer worker has ever sent a heartbeat")
    if not state.alive:
        return Check(
            "signer", False, f"last heartbeat {_seconds(state.age)} ago (more than {_seconds(HEARTBEAT_MAX_AGE)})"
        )
    if state.key_ok is False:
        return Check("signer", False, f"alive ({_seconds(state.age)} ago) but it cannot use the CA key")
    return Check("signer", True, f"last heartbeat {_seconds(state.age)} ago")


def crl_check(*, now: datetime | None = None) -> Check:
    ca = active_ca()
    if ca is None:
        return Check("crl", True, "no CA yet")
    crl = current_crl(ca)
    if crl is None:
        return Check("crl", False, "no CRL has been published yet")
    moment = now or timezone.now()
    life = crl.next_update - crl.this_update
    used = (moment - crl.this_update) / life if life > timedelta(0) else 1.0
    detail = f"CRL {crl.number}: {used:.0%} of its life used, next update in {_seconds(crl.next_update - moment)}"
    return Check("crl", used <= CRL_STALE_FRACTION, detail)


def requests_check(*, now: datetime | None = None) -> Check:
    """Nothing approved has waited for the signer longer than CA_REQUEUE_AFTER_SECONDS.

    Measured from the request's creation (its approval), not from ``queued_at``: the sweeper moves
    ``queued_at`` each time it wakes the signer again, which would hide a request stuck for hours.
    """
    waiting = CertificateRequest.objects.filter(status__in=WAITING).aggregate(n=Count("pk"), oldest=Min("created_at"))
    if not waiting["n"]:
        return Check("requests", True, "none waiting")
    moment = now or timezone.now()
    age = moment - waiting["oldest"]
    limit = timedelta(seconds=settings.CA_REQUEUE_AFTER_SECONDS)
    detail = f"{waiting['n']} waiting, the oldest for {_seconds(max(age, timedelta(0)))}"
    if age > limit:
        return Check("requests", False, f"{detail} (more than {_seconds(limit)})")
    return Check("requests", True, detail)


def checks() -> list[tuple[str, CheckFunction]]:
    """The authority's checks, named, for ``core.health.run_checks``."""
    return [("signer", signer_check), ("crl", crl_check), ("requests", requests_check)]
