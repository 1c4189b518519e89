"""The signer's heartbeat: a beat task on the signer queue records that a signer is alive and can sign."""

from __future__ import annotations

import socket
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.utils import timezone

from authority import task_names
from authority.heartbeat import FORGET_AFTER, signer_heartbeat_record, signer_state
from authority.models import SignerHeartbeat


def test_beat_sends_it_to_the_signer_queue_every_30_seconds() -> None:
    entries = [
        entry for entry in settings.CELERY_BEAT_SCHEDULE.values() if entry["task"] == task_names.SIGNER_HEARTBEAT
    ]

    assert len(entries) == 1
    assert entries[0]["schedule"] == 30.0
    assert entries[0]["options"]["expires"] <= 120  # a stale beat must not look like a live signer
    assert settings.CELERY_TASK_ROUTES[task_names.SIGNER_HEARTBEAT] == {"queue": "signer"}


def test_the_task_records_the_worker_that_took_it(ca: Any) -> None:
    from authority.tasks import signer_heartbeat_task

    signer_heartbeat_task.apply()

    beat = SignerHeartbeat.objects.get()
    assert beat.worker == socket.gethostname()
    assert beat.key_ok is True
    assert (timezone.now() - beat.seen_at) < timedelta(seconds=5)


def test_a_second_beat_moves_the_same_row(ca: Any) -> None:
    first = timezone.now() - timedelta(seconds=30)
    signer_heartbeat_record(worker="celery@signer-1", now=first)
    signer_heartbeat_record(worker="celery@signer-1", now=first + timedelta(seconds=30))

    assert SignerHeartbeat.objects.count() == 1
    assert SignerHeartbeat.objects.get().seen_at == first + timedelta(seconds=30)


def test_before_there_is_a_ca_the_key_is_not_judged(db: Any) -> None:
    beat = signer_heartbeat_record(worker="celery@signer-1")

    assert beat.key_ok is None
    assert signer_state().alive


def test_a_worker_that_may_not_sign_records_it(ca: Any) -> None:
    from authority import keystore

    keystore._signing_enabled = False
    keystore.forget_keys()

    assert signer_heartbeat_record(worker="celery@render-1").key_ok is False


def test_the_newest_beat_of_any_signer_counts(ca: Any) -> None:
    now = timezone.now()
    signer_heartbeat_record(worker="celery@old", now=now - timedelta(minutes=10))
    signer_heartbeat_record(worker="celery@new", now=now - timedelta(seconds=5))

    state = signer_state(now=now)
    assert state.age == timedelta(seconds=5)
    assert state.alive


def test_workers_gone_for_a_week_are_forgotten(ca: Any) -> None:
    now = timezone.now()
    signer_heartbeat_record(worker="celery@retired", now=now - FORGET_AFTER - timedelta(seconds=1))
    signer_heartbeat_record(worker="celery@signer-1", now=now)

    assert list(SignerHeartbeat.objects.values_list("worker", flat=True)) == ["celery@signer-1"]


def test_a_clock_behind_the_signers_gives_no_negative_age(db: Any) -> None:
    now = timezone.now()
    signer_heartbeat_record(worker="celery@ahead", now=now + timedelta(seconds=3))

    assert signer_state(now=now).age == timedelta(0)
