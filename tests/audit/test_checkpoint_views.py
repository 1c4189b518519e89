"""The audit log page against signed checkpoints: status, verification, the auditors' download (T37)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from authority.audit import GENESIS, audit_record, event_hash
from authority.checkpoints import checkpoint_make
from authority.models import AuditEvent, AuditHead
from pki.checkpoint import checkpoint_parse
from tests.audit.conftest import World, body
from tests.conftest import login


def _head() -> int:
    return AuditHead.objects.get(pk=1).seq


def _signed_checkpoint(more_events: int = 3) -> int:
    for n in range(more_events):
        audit_record("test.event", actor="user:alice", target=f"thing:{n}", n=n)
    assert checkpoint_make() is not None
    return _head()


def test_the_page_shows_the_newest_checkpoint_and_verifies_against_it(world: World, erin: Client) -> None:
    assert "No signed checkpoint yet" in body(erin.get(reverse("audit:log")))
    signed = _signed_checkpoint()

    page = body(erin.get(reverse("audit:log")))
    verified = body(erin.post(reverse("audit:verify")))

    assert f"Newest signed checkpoint: event {signed}, signed" in page
    assert f'href="{reverse("audit:checkpoint")}"' in page
    assert f"OK {signed} events: the chain is intact and matches the signed checkpoint of event {signed}." in verified


def test_auditors_download_the_newest_checkpoint(world: World, erin: Client) -> None:
    assert erin.get(reverse("audit:checkpoint")).status_code == 404
    signed = _signed_checkpoint()

    response = erin.get(reverse("audit:checkpoint"))

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    assert f'filename="audit-checkpoint-{signed}.txt"' in response["Content-Disposition"]
    lines = [line for line in response.content.decode("ascii").splitlines() if not line.startswith("#")]
    assert len(lines) == 1
    assert checkpoint_parse(lines[0]).seq == signed


def test_roaming_users_cannot_download_a_checkpoint(world: World, owner: Any) -> None:
    client = Client()
    login(client, owner)

    assert client.get(reverse("audit:checkpoint")).status_code == 403


def _rollback(signed: int) -> None:
    AuditEvent.objects.filter(seq__gt=signed - 2).delete()
    AuditHead.objects.filter(pk=1).update(seq=signed - 2, hash=AuditEvent.objects.get(seq=signed - 2).hash)


def _wipe(signed: int) -> None:
    AuditEvent.objects.all().delete()
    AuditHead.objects.all().delete()


def _recompute(signed: int) -> None:
    prev = GENESIS
    for row in AuditEvent.objects.order_by("seq"):
        data = {**row.data, "evil": True} if row.seq == 2 else row.data
        digest = event_hash(
            prev, seq=row.seq, at=row.at, actor=row.actor, action=row.action, target=row.target, data=data
        )
        AuditEvent.objects.filter(pk=row.pk).update(data=data, prev_hash=prev, hash=digest)
        prev = digest
    AuditHead.objects.filter(pk=1).update(hash=prev)


@pytest.mark.usefixtures("audit_tamperable")
@pytest.mark.parametrize(
    ("attack", "kind", "named"),
    [
        (_rollback, "Rollback", "rollback: the log ends at"),
        (_wipe, "Wipe", "wipe: the log is empty"),
        (_recompute, "Recomputation", "recomputation: event"),
    ],
)
def test_the_page_names_each_attack(
    world: World, erin: Client, attack: Callable[[int], None], kind: str, named: str
) -> None:
    signed = _signed_checkpoint()
    attack(signed)

    text = body(erin.post(reverse("audit:verify")))

    assert "OK " not in text
    assert f'<strong id="verify-kind">{kind}</strong>' in text
    assert named in text
