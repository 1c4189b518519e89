"""The audit log page: newest first and keyset pages, its filters (and their errors), and the verify
action."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from authority.audit import audit_record
from authority.models import AuditEvent, CertificateAuthority
from tests.audit.conftest import ALPHA, World, body

pytestmark = pytest.mark.django_db


def seqs(response: Any) -> list[int]:
    return [int(s) for s in re.findall(r'<tr data-seq="(\d+)">', body(response))]


def test_log_newest_first_and_paged(ca: CertificateAuthority, owner: Any, admin: Any, erin: Client) -> None:
    for i in range(60):
        audit_record("test.event", actor="user:carol", target=f"thing:{i}")
    newest = list(AuditEvent.objects.order_by("-seq").values_list("seq", flat=True))

    first = erin.get(reverse("audit:log"))

    assert seqs(first) == newest[:50]
    older = re.search(r'href="\?before=(\d+)" rel="next"', body(first))
    assert older is not None
    second = erin.get(reverse("audit:log"), {"before": older.group(1)})
    assert seqs(second) == newest[50:100]
    newer = re.search(r'href="\?after=(\d+)" rel="prev"', body(second))
    assert newer is not None
    assert seqs(erin.get(reverse("audit:log"), {"after": newer.group(1)})) == newest[:50]


@pytest.mark.parametrize(
    ("query", "actions"),
    [
        ({"action": "peer.approved"}, {"peer.approved"}),
        ({"action": "certificate.*"}, {"certificate.requested", "certificate.intent", "certificate.issued"}),
        ({"actor": "carol"}, {"peer.approved", "certificate.requested"}),
        ({"actor": "nobody"}, set()),
    ],
)
def test_log_filters(world: World, erin: Client, query: dict[str, str], actions: set[str]) -> None:
    response = erin.get(reverse("audit:log"), query)

    assert response.status_code == 200
    shown = set(AuditEvent.objects.filter(seq__in=seqs(response)).values_list("action", flat=True))
    assert shown == actions


def test_log_target_and_date_filters(world: World, erin: Client) -> None:
    target = f"certificate:{world.serial(ALPHA)}"
    today = timezone.now().date()

    response = erin.get(reverse("audit:log"), {"target": target})
    assert [AuditEvent.objects.get(seq=s).target for s in seqs(response)] == [target]
    assert f'href="{reverse("audit:certificate", args=[world.serial(ALPHA)])}" class="open"' in body(response)
    assert seqs(erin.get(reverse("audit:log"), {"date_from": str(today + timedelta(days=1))})) == []
    assert len(seqs(erin.get(reverse("audit:log"), {"date_from": str(today), "date_to": str(today)}))) > 0


@pytest.mark.parametrize(
    "query", [{"date_from": "31/12/2025"}, {"date_from": "2025-05-02", "date_to": "2025-05-01"}, {"action": "a" * 65}]
)
def test_log_bad_filters_show_an_error(world: World, erin: Client, query: dict[str, str]) -> None:
    response = erin.get(reverse("audit:log"), query)

    assert response.status_code == 200
    assert 'id="filter-errors"' in body(response)
    assert seqs(response) == []


@pytest.mark.parametrize("cursor", [{"before": "x"}, {"after": "-5"}, {"before": "99999999999999999999999999"}])
def test_log_odd_cursors_are_ignored(world: World, erin: Client, cursor: dict[str, str]) -> None:
    response = erin.get(reverse("audit:log"), cursor)

    assert response.status_code == 200


@pytest.mark.usefixtures("audit_tamperable")
def test_verify_shows_ok_then_the_first_bad_sequence_number(world: World, erin: Client) -> None:
    count = AuditEvent.objects.count()

    response = erin.post(reverse("audit:verify"))

    assert response.status_code == 200
    assert f"OK {count} events" in body(response)
    victim = AuditEvent.objects.order_by("seq")[3]
    AuditEvent.objects.filter(pk=victim.pk).update(data={**victim.data, "fqdn": "evil.example.com"})

    broken = body(erin.post(reverse("audit:verify")))

    assert "OK " not in broken
    assert f'id="first-bad-seq">#{victim.seq}<' in broken
    assert "do not match its hash" in broken


def test_verify_keeps_the_filters_of_the_page(world: World, erin: Client) -> None:
    text = body(erin.get(reverse("audit:log"), {"action": "peer.approved", "before": "9"}))

    assert 'action="/audit/log/verify/?action=peer.approved"' in text
    response = erin.post(reverse("audit:verify") + "?action=peer.approved")
    shown = set(AuditEvent.objects.filter(seq__in=seqs(response)).values_list("action", flat=True))
    assert shown == {"peer.approved"}
    assert "OK " in body(response)
