"""Queueing work for the workers: by task name, with ids and strings only (never key material).

Apps never import the site's Celery app (``ca_portal.celery``): they send through the current app,
which the site makes current when it starts (``ca_portal/__init__.py``). Task names are constants
in each app's ``task_names`` module, and a test checks that every name sent is registered.
"""

from __future__ import annotations

import logging

from celery import current_app

log = logging.getLogger(__name__)


def send_by_name(name: str, *args: object) -> bool:
    """Queue a task by name. Call it after commit.

    A broker that is down is logged, not raised: the rows are committed, and the beat sweeper of
    that work (requeue_stale, bundles_render_stale, crl_renew_if_due) queues it later (T17 in
    docs/security.md).
    """
    try:
        current_app.send_task(name, args=args, retry=False)
    except Exception:  # kombu's OperationalError and friends: never a 500 for the user
        log.warning("broker unavailable; %s will be queued by its sweeper", name)
        return False
    return True
