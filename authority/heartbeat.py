"""The signer's heartbeat: the one writer of ``SignerHeartbeat`` rows, and what readers make of them.

Beat sends ``authority.signer_heartbeat`` to the signer queue every HEARTBEAT_EVERY seconds; the
signer worker that takes it records its node name and the time. /readyz and /metrics read the
newest row, so a web host knows whether some signer is alive even when it runs on another host.
A beat also says whether that worker could use the active CA's key (``key_ok``): a signer that
takes messages but cannot read its passphrase issues nothing, and should not look healthy.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.utils import timezone

from authority import keystore
from authority.models import SignerHeartbeat
from authority.services import active_ca
from pki.errors import PkiError

log = logging.getLogger(__name__)

HEARTBEAT_EVERY = 30.0  # seconds between beats (the beat schedule in settings uses this)
HEARTBEAT_MAX_AGE = timedelta(minutes=2)  # four beats missed: no signer is taking its queue
FORGET_AFTER = timedelta(days=7)  # rows of workers that stopped beating this long ago go


def signer_heartbeat_record(*, worker: str, now: datetime | None = None) -> SignerHeartbeat:
    """Record that the signer worker ``worker`` is alive, and whether it can use the CA key. Safe to call twice.

    Call it only in a signer: the key check loads the key the way issuance does (once per process,
    cached), so a worker without the signing permission records ``key_ok=False``.
    """
    moment = now or timezone.now()
    key_ok: bool | None = None
    ca = active_ca()
    if ca is not None:
        try:
            keystore.signing_key(ca)
            key_ok = True
        except (keystore.SignerUnavailable, PkiError) as exc:
            log.error("signer %s cannot use the CA key: %s", worker, exc)
            key_ok = False
    beat, _ = SignerHeartbeat.objects.update_or_create(
        worker=worker[:200], defaults={"seen_at": moment, "key_ok": key_ok}
    )
    SignerHeartbeat.objects.filter(seen_at__lt=moment - FORGET_AFTER).delete()
    return beat


@dataclass(frozen=True)
class SignerState:
    """The newest beat: how old it is, and whether that worker could use the CA key."""

    age: timedelta | None  # None: no signer has ever beaten
    key_ok: bool | None

    @property
    def alive(self) -> bool:
        return self.age is not None and self.age < HEARTBEAT_MAX_AGE


def signer_state(*, now: datetime | None = None) -> SignerState:
    newest = SignerHeartbeat.objects.order_by("-seen_at").first()
    if newest is None:
        return SignerState(age=None, key_ok=None)
    moment = now or timezone.now()
    return SignerState(age=max(moment - newest.seen_at, timedelta(0)), key_ok=newest.key_ok)
