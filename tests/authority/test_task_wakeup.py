"""authority.wakeups.wake: a burst of causes queues one run of a sweeper task, never zero."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone
from kombu.exceptions import OperationalError

from authority import wakeups
from authority.models import TaskWakeup
from authority.wakeups import wake, wake_done
from ca_portal import celery as portal_celery

pytestmark = pytest.mark.django_db

NAME = "bundles.bundles_render_stale"


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, tuple[Any, ...]]]:
    messages: list[tuple[str, tuple[Any, ...]]] = []

    def send_task(name: str, args: tuple[Any, ...] = (), **kwargs: Any) -> None:
        messages.append((name, tuple(args)))

    monkeypatch.setattr(portal_celery.app, "send_task", send_task)
    return messages


def test_a_burst_of_wakeups_sends_one_message(sent: list[tuple[str, tuple[Any, ...]]]) -> None:
    for _ in range(5):
        assert wake(NAME) is True

    assert sent == [(NAME, ())]
    assert TaskWakeup.objects.get(name=NAME).pending


def test_the_task_clears_the_flag_so_the_next_change_wakes_it_again(sent: list[tuple[str, tuple[Any, ...]]]) -> None:
    wake(NAME)
    wake_done(NAME)

    assert not TaskWakeup.objects.get(name=NAME).pending
    wake(NAME)
    wake(NAME)
    assert sent == [(NAME, ()), (NAME, ())]


def test_names_are_debounced_separately(sent: list[tuple[str, tuple[Any, ...]]]) -> None:
    wake(NAME)
    wake("authority.something_else")
    wake(NAME)

    assert sent == [(NAME, ()), ("authority.something_else", ())]


def test_a_flag_whose_message_was_lost_is_taken_again_after_a_minute(sent: list[tuple[str, tuple[Any, ...]]]) -> None:
    old = timezone.now() - timedelta(seconds=wakeups.WAKE_STALE_AFTER_SECONDS + 1)
    TaskWakeup.objects.create(name=NAME, pending=True, requested_at=old)

    assert wake(NAME) is True

    assert sent == [(NAME, ())]
    assert TaskWakeup.objects.get(name=NAME).requested_at > old


def test_a_broker_that_is_down_leaves_the_flag_clear_for_the_next_caller(monkeypatch: pytest.MonkeyPatch) -> None:
    def down(*args: Any, **kwargs: Any) -> None:
        raise OperationalError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    monkeypatch.setattr(portal_celery.app, "send_task", down)

    assert wake(NAME) is False
    assert not TaskWakeup.objects.get(name=NAME).pending

    sent: list[str] = []
    monkeypatch.setattr(portal_celery.app, "send_task", lambda name, **kw: sent.append(name))
    assert wake(NAME) is True
    assert sent == [NAME]
