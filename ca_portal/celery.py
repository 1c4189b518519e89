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
