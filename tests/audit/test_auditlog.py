"""The audit log selectors: filters and keyset pages."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from audit import auditlog
from audit.auditlog import AuditFilters
from authority.audit import audit_record
from authority.models import AuditEvent
from enrollment.models import Peer
from tests.audit.conftest import ALPHA, World

pytestmark = pytest.mark.django_db


def _actions(filters: AuditFilters) -> list[str]:
    return list(auditlog.audit_queryset(filters).order_by("seq").values_list("action", flat=True))


def test_audit_filters(world: World) -> None:
    peer = Peer.objects.get(fqdn=ALPHA)

    assert _actions(AuditFilters(action="peer.approved")) == ["peer.approved"] * 4
    assert set(_actions(AuditFilters(action="peer.*"))) == {"peer.registered", "peer.approved"}
    assert set(_actions(AuditFilters(actor="carol"))) == {"peer.approved", "certificate.requested"}
    assert _actions(AuditFilters(actor="user:carol")) == _actions(AuditFilters(actor="carol"))
    audit_record("peer.registered", actor="est:carol", target="peer:999")  # carol, through EST
    assert _actions(AuditFilters(actor="carol")).count("peer.registered") == 1
    assert _actions(AuditFilters(target=f"peer:{peer.pk}")) == ["peer.registered", "peer.approved"]
    today = timezone.now().date()
    assert len(_actions(AuditFilters(date_from=today, date_to=today))) == AuditEvent.objects.count()
    assert _actions(AuditFilters(date_from=today + timedelta(days=1))) == []
    assert _actions(AuditFilters(date_to=today - timedelta(days=1))) == []


def test_audit_pages_are_keyset_pages_newest_first(world: World) -> None:
    total = AuditEvent.objects.count()
    assert total > 7
    newest = list(AuditEvent.objects.order_by("-seq").values_list("seq", flat=True))

    first = auditlog.audit_page(AuditFilters(), per_page=3)
    assert [e.seq for e in first.events] == newest[:3]
    assert first.newer is None
    assert first.older == newest[2]
    second = auditlog.audit_page(AuditFilters(), before=first.older, per_page=3)
    assert [e.seq for e in second.events] == newest[3:6]
    assert second.newer == newest[3]
    assert second.older == newest[5]
    back = auditlog.audit_page(AuditFilters(), after=second.newer, per_page=3)
    assert [e.seq for e in back.events] == newest[:3]
    assert back.newer is None
    assert back.older == newest[2]
    last = auditlog.audit_page(AuditFilters(), before=newest[-2], per_page=3)
    assert [e.seq for e in last.events] == newest[-1:]
    assert last.older is None


@pytest.mark.parametrize("cap", [1000, 2])  # few matches (a fenced sort) and many (a walk along the order)
@pytest.mark.parametrize("by_date", [False, True])
def test_audit_pages_cover_every_match_once_in_order(
    world: World, monkeypatch: pytest.MonkeyPatch, cap: int, by_date: bool
) -> None:
    monkeypatch.setattr(auditlog, "COUNT_CAP", cap)
    today = timezone.now().date()
    filters = AuditFilters(action="certificate.*", date_from=today if by_date else None)
    expected = list(
        AuditEvent.objects.filter(action__startswith="certificate.").order_by("-seq").values_list("seq", flat=True)
    )
    assert len(expected) > 8

    pages, before = [], None
    while True:
        page = auditlog.audit_page(filters, before=before, per_page=3)
        pages.append(page)
        if page.older is None:
            break
        before = page.older

    assert [e.seq for p in pages for e in p.events] == expected
    assert pages[0].newer is None
    back = auditlog.audit_page(filters, after=pages[1].newer, per_page=3)
    assert [e.seq for e in back.events] == [e.seq for e in pages[0].events]
