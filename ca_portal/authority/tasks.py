"""Celery adapters: an id in, one service call, the retry policy. No logic here."""

from __future__ import annotations

from datetime import timedelta

from celery import shared_task
from django.conf import settings
from django.db import DatabaseError


@shared_task(
    name="authority.certificate_issue",
    acks_late=True,
    reject_on_worker_lost=True,
    autoretry_for=(DatabaseError,),
    retry_backoff=True,
    retry_backoff_max=60,
    max_retries=10,
)
def certificate_issue_task(request_id: int) -> None:
    from ca_portal.authority import services

    services.certificate_issue(request_id=request_id)


@shared_task(name="authority.requests_requeue_stale", ignore_result=True)
def requests_requeue_stale_task() -> int:
    from ca_portal.authority import services

    return services.requests_requeue_stale(older_than=timedelta(seconds=settings.CA_REQUEUE_AFTER_SECONDS))
