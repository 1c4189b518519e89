"""The Celery app. Imported from AuthorityConfig.ready(), never from ca_portal/__init__.py, so that
importing the pure ``ca_portal.pki`` package does not pull in Django (STYLE.md §3)."""

from __future__ import annotations

import logging
import os
from typing import Any

from celery import Celery
from celery.signals import celeryd_init

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ca_portal.settings")

log = logging.getLogger(__name__)

app = Celery("ca_portal")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@celeryd_init.connect
def _enable_signing_in_signer_workers(sender: Any = None, conf: Any = None, options: Any = None, **_: Any) -> None:
    """Only a worker that consumes the ``signer`` queue may read the CA key passphrase.

    This runs in the worker's main process before the pool forks, so every pool child inherits
    the permission; gunicorn and render-only workers never get it.
    """
    queues = (options or {}).get("queues") or []
    if isinstance(queues, str):
        queues = queues.split(",")
    if "signer" in [q.strip() for q in queues]:
        from ca_portal.authority import keystore

        keystore.enable_signing()


def send_by_name(name: str, *args: object) -> bool:
    """Queue a task by name with ids or strings only (never key material). Call it after commit.

    A broker that is down is logged, not raised: the rows are committed, and the beat sweeper of
    that work (requeue_stale, bundles_render_stale, crl_renew_if_due) queues it later (T17).
    """
    try:
        app.send_task(name, args=args, retry=False)
    except Exception:  # kombu's OperationalError and friends: never a 500 for the user
        log.warning("broker unavailable; %s will be queued by its sweeper", name)
        return False
    return True


WAKE_STALE_AFTER_SECONDS = 60  # a flag older than this is taken again: its message was lost


def wake_by_name(name: str) -> bool:
    """Queue a run of a no-argument sweeper task unless one is queued already. Call it after commit.

    A burst of callers costs one message: only the caller whose conditional UPDATE flips the
    task's ``TaskWakeup`` row to pending sends it. The task calls ``wake_done`` before it looks
    for work, so whatever is committed after that queues the next run. A flag whose message was
    lost is taken again after WAKE_STALE_AFTER_SECONDS, and beat runs the sweepers anyway.
    Returns False when the broker is down (the flag is reset so that the next caller tries again).
    """
    from datetime import timedelta

    from django.db.models import Q
    from django.utils import timezone

    from ca_portal.authority.models import TaskWakeup

    now = timezone.now()
    stale = now - timedelta(seconds=WAKE_STALE_AFTER_SECONDS)
    claimed = (
        TaskWakeup.objects.filter(name=name)
        .filter(Q(pending=False) | Q(requested_at__lt=stale) | Q(requested_at__isnull=True))
        .update(pending=True, requested_at=now)
    )
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
    from ca_portal.authority.models import TaskWakeup

    TaskWakeup.objects.filter(name=name, pending=True).update(pending=False)
