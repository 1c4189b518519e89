"""Debounced queueing of no-argument sweeper tasks (the signer's drain, the bundles sweeper).

``wake(name)`` queues the task only when its ``TaskWakeup`` row is not pending (a conditional
UPDATE), so a burst of causes (a signer batch of a hundred issuances, a revocation and a CRL)
costs one message. The task calls ``wake_done(name)`` before it looks for work, so whatever is
committed after that queues the next run. A flag whose message was lost is taken again after
WAKE_STALE_AFTER_SECONDS, and beat runs the sweepers anyway.
"""

from __future__ import annotations

from datetime import timedelta

from django.db.models import Q
from django.utils import timezone

from authority.models import TaskWakeup
from core.tasks import send_by_name

WAKE_STALE_AFTER_SECONDS = 60  # a flag older than this is taken again: its message was lost


def wake(name: str, *, force: bool = False) -> bool:
    """Queue a run of the task ``name`` unless one is queued already (or ``force``). Call it after commit.

    Returns False when the broker is down; the flag is reset so that the next caller tries again.
    """
    now = timezone.now()
    stale = now - timedelta(seconds=WAKE_STALE_AFTER_SECONDS)
    rows = TaskWakeup.objects.filter(name=name)
    if not force:
        rows = rows.filter(Q(pending=False) | Q(requested_at__lt=stale) | Q(requested_at__isnull=True))
    claimed = rows.update(pending=True, requested_at=now)
    if not claimed:
        _, claimed = TaskWakeup.objects.get_or_create(name=name, defaults={"pending": True, "requested_at": now})
    if not claimed:
        return True  # a run is queued already and will see what the caller committed
    if send_by_name(name):
        return True
    TaskWakeup.objects.filter(name=name).update(pending=False)
    return False


def wake_done(name: str) -> None:
    """Called by a woken task before it looks for work: later changes queue the next run."""
    TaskWakeup.objects.filter(name=name, pending=True).update(pending=False)
