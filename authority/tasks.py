"""Celery adapters: an id in, one service call, the retry policy. No logic here."""

from __future__ import annotations

from datetime import timedelta

from celery import Task, shared_task
from django.conf import settings
from django.db import DatabaseError

from authority import task_names


@shared_task(
    name=task_names.CERTIFICATES_ISSUE_PENDING,
    acks_late=True,
    reject_on_worker_lost=True,
    autoretry_for=(DatabaseError,),
    retry_backoff=True,
    retry_backoff_max=60,
    max_retries=10,
)
def certificates_issue_pending_task() -> int:
    """The signer's drain: no arguments, since it works on whatever is pending."""
    from authority import services

    return services.certificates_issue_pending()


@shared_task(name=task_names.REQUESTS_REQUEUE_STALE, ignore_result=True)
def requests_requeue_stale_task() -> int:
    from authority import services

    return services.requests_requeue_stale(older_than=timedelta(seconds=settings.CA_REQUEUE_AFTER_SECONDS))


@shared_task(
    name=task_names.CRL_PUBLISH,
    acks_late=True,
    reject_on_worker_lost=True,
    autoretry_for=(DatabaseError,),
    retry_backoff=True,
    max_retries=10,
)
def crl_publish_task(trigger: str = "revocation") -> None:
    """A new CRL after a revocation. Runs on the signer queue: it needs the CA key."""
    from authority import revocation

    revocation.crl_publish(trigger=trigger)


@shared_task(name=task_names.CRL_RENEW_IF_DUE, ignore_result=True)
def crl_renew_if_due_task() -> None:
    from authority import revocation

    revocation.crl_renew_if_due()


@shared_task(name=task_names.AUDIT_CHECK, ignore_result=True)
def audit_check_task() -> None:
    from authority import audit_watch

    audit_watch.audit_check()


@shared_task(name=task_names.SIGNER_HEARTBEAT, bind=True, ignore_result=True)
def signer_heartbeat_task(self: Task[[], None]) -> None:
    """Beat sends this to the signer queue: the worker that takes it records that a signer is alive.
    No retry: the next beat comes in 30 s, and a late beat is worth nothing."""
    from authority import heartbeat

    heartbeat.signer_heartbeat_record(worker=str(self.request.hostname or "unknown"))


@shared_task(name=task_names.AUDIT_CHECKPOINT, ignore_result=True)
def audit_checkpoint_task() -> None:
    """Sign a checkpoint of the audit log. Runs on the signer queue: it needs the CA key. Beat sends
    it every 5 minutes, and appends wake it every 100 events; no retry, the next one comes soon."""
    from authority import checkpoints

    checkpoints.checkpoint_run()
