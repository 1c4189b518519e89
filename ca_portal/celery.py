"""The Celery app object. ``ca_portal/__init__.py`` imports it, so every process of the site (gunicorn,
manage.py, the workers) has it as the current app; the apps send through ``core.tasks.send_by_name``
and never import this module (docs/conventions.md §3)."""

from __future__ import annotations

import os
from typing import Any

from celery import Celery
from celery.signals import celeryd_init

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ca_portal.settings")

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
        from authority import keystore

        keystore.enable_signing()
