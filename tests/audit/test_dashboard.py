"""The dashboard's numbers: counts, issuance per week, expiries per month."""

from __future__ import annotations

from datetime import date

import pytest

from audit import dashboard
from authority.models import Certificate
from tests.audit.conftest import ALPHA, DELTA, GAMMA, World, at

pytestmark = pytest.mark.django_db


def test_counts(world: World) -> None:
    counts = dashboard.certificate_counts()

    assert counts == dashboard.Counts(issued=4, valid=2, revoked=1, expired=1, expiring_30=1)


def test_issuance_per_week(world: World) -> None:
    weeks = dashboard.issuance_per_week(weeks=20, now=at(2025, 4, 16))  # a Wednesday

    assert len(weeks) == 20
    assert weeks[-1][0] == date(2025, 4, 14)  # this week's Monday
    assert all(week.weekday() == 0 for week, _n in weeks)
    counted = {week: n for week, n in weeks if n}
    assert counted == {date(2025, 1, 6): 1, date(2025, 2, 10): 1, date(2025, 3, 10): 1, date(2025, 4, 7): 1}


def test_expiries_per_month_leave_out_revoked_and_past(world: World) -> None:
    months = dashboard.expiries_per_month(months=12, now=world.now)

    assert len(months) == 12
    assert months[0][0] == world.now.date().replace(day=1)
    # alpha and delta; beta is revoked; gamma (expired yesterday) only if that is still this month
    first = world.now.date().replace(day=1)
    gamma_counts = Certificate.objects.get(fqdn=GAMMA).not_after.date() >= first
    assert sum(n for _m, n in months) == 2 + gamma_counts
    month_of = {m: n for m, n in months}
    for fqdn in (ALPHA, DELTA):
        not_after = Certificate.objects.get(fqdn=fqdn).not_after
        assert month_of[not_after.date().replace(day=1)] >= 1
