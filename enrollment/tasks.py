"""Celery adapters: ids in, one service call, the retry policy. No logic here."""

from __future__ import annotations

from datetime import timedelta

from celery import shared_task
from django.conf import settings
from django.db import DatabaseError

from enrollment import task_names


@shared_task(
    name=task_names.PEER_KEY_GENERATE,
    acks_late=True,
    reject_on_worker_lost=True,
    autoretry_for=(DatabaseError,),
    retry_backoff=True,
    max_retries=10,
)
def peer_key_generate_task(peer_id: int) -> None:
    from enrollment import services

    services.peer_key_generate(peer_id=peer_id)


@shared_task(name=task_names.PEER_NOTIFY, autoretry_for=(OSError,), retry_backoff=True, max_retries=5)
def peer_notify_task(peer_id: int, event: str) -> None:
    from enrollment import services

    services.peer_notify(peer_id=peer_id, event=event)


@shared_task(name=task_names.PEERS_ISSUED_NOTIFY, autoretry_for=(OSError,), retry_backoff=True, max_retries=5)
def peers_issued_notify_task(request_ids: list[int]) -> None:
    from enrollment import services

    services.peers_issued_notify(request_ids=[int(i) for i in request_ids])


@shared_task(name=task_names.PORTAL_KEYS_REQUEUE_STALE)
def portal_keys_requeue_stale_task() -> int:
    from enrollment import services

    return services.portal_keys_requeue_stale(older_than=timedelta(seconds=settings.CA_REQUEUE_AFTER_SECONDS))


@shared_task(name=task_names.RENEWALS_SUPERSEDE)  # hourly by beat; safe to run twice
def renewals_supersede_task() -> int:
    from enrollment import services

    return services.renewals_supersede()


@shared_task(name=task_names.RENEWAL_REMINDERS_SEND)  # hourly by beat; a failed run is the next run's work
def renewal_reminders_send_task() -> int:
    from enrollment import services

    return services.renewal_reminders_send()
