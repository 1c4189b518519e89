"""The dashboard's numbers and charts: certificate counts, issuance per week, expiries per month."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from django.db.models import Count, Q
from django.db.models.functions import TruncMonth, TruncWeek
from django.utils import timezone

from audit.charts import Chart, bar_chart
from audit.selectors import start_of
from authority.models import AuditCheck, Certificate


@dataclass(frozen=True)
class Counts:
    issued: int
    valid: int
    revoked: int
    expired: int
    expiring_30: int


def certificate_counts(*, now: datetime | None = None) -> Counts:
    """The dashboard's numbers, each from an index range (COUNT(*) reads no table rows where it can).

    Revoked certificates are few, so "live" counts are a range count minus its revoked part.
    """
    now = now or timezone.now()
    certificates = Certificate.objects.all()
    revoked = certificates.filter(revoked_at__isnull=False)
    soon = Q(not_after__gt=now, not_after__lte=now + timedelta(days=30))
    issued = certificates.count()
    revoked_count = revoked.count()
    expired = certificates.filter(not_after__lte=now).count() - revoked.filter(not_after__lte=now).count()
    expiring = certificates.filter(soon).count() - revoked.filter(soon).count()
    return Counts(
        issued=issued,
        valid=issued - revoked_count - expired,
        revoked=revoked_count,
        expired=expired,
        expiring_30=expiring,
    )


def latest_audit_check() -> AuditCheck | None:
    """The newest scheduled (or manual) verification of the audit chain, whatever its result."""
    return AuditCheck.objects.order_by("-checked_at", "-pk").first()


def _as_date(value: date | datetime) -> date:
    return value.astimezone(UTC).date() if isinstance(value, datetime) else value


def issuance_per_week(*, weeks: int = 26, now: datetime | None = None) -> list[tuple[date, int]]:
    """Certificates issued per ISO week (Monday first), the last ``weeks`` weeks including this one."""
    today = (now or timezone.now()).astimezone(UTC).date()
    first = today - timedelta(days=today.weekday()) - timedelta(weeks=weeks - 1)
    rows = (
        Certificate.objects.filter(issued_at__gte=start_of(first))
        .annotate(week=TruncWeek("issued_at", tzinfo=UTC))
        .values("week")
        .annotate(n=Count("*"))
        .values_list("week", "n")
    )
    counts = {_as_date(week): n for week, n in rows}
    return [(first + timedelta(weeks=i), counts.get(first + timedelta(weeks=i), 0)) for i in range(weeks)]


def _add_months(day: date, months: int) -> date:
    index = day.year * 12 + day.month - 1 + months
    return date(index // 12, index % 12 + 1, 1)


def expiries_per_month(*, months: int = 12, now: datetime | None = None) -> list[tuple[date, int]]:
    """Certificates (not revoked) whose notAfter falls in each month: this month (including those
    that expired earlier this month) and the next ones."""
    now = now or timezone.now()
    first = now.astimezone(UTC).date().replace(day=1)
    end = _add_months(first, months)
    in_range = Certificate.objects.filter(not_after__gte=start_of(first), not_after__lt=start_of(end))
    counts: dict[date, int] = {}
    # All of them by month (an index range), less the revoked ones (few) by month.
    for queryset, sign in ((in_range, 1), (in_range.filter(revoked_at__isnull=False), -1)):
        rows = (
            queryset.annotate(month=TruncMonth("not_after", tzinfo=UTC))
            .values("month")
            .annotate(n=Count("*"))
            .values_list("month", "n")
        )
        for month, n in rows:
            counts[_as_date(month)] = counts.get(_as_date(month), 0) + sign * n
    return [(_add_months(first, i), counts.get(_add_months(first, i), 0)) for i in range(months)]


def dashboard_charts(*, now: datetime | None = None) -> tuple[Chart, Chart]:
    weekly = issuance_per_week(now=now)
    monthly = expiries_per_month(now=now)
    issued = bar_chart(
        "Certificates issued per week",
        [(f"{week:%d %b}", f"week of {week:%Y-%m-%d}", n) for week, n in weekly],
        label_every=4,
    )
    expiring = bar_chart(
        "Certificates expiring per month", [(f"{month:%b %y}", f"{month:%B %Y}", n) for month, n in monthly]
    )
    return issued, expiring
