"""The authority's site metrics for /metrics, read from the database at scrape time.

Read at scrape time rather than counted as things happen, so they are true across hosts (the signer
usually runs where no one scrapes) and survive restarts: the database is the record. Each function
below is a few aggregate queries over indexed columns; ``collect`` is the source the site registers.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from axes.models import AccessAttempt
from django.conf import settings
from django.db.models import Count, DurationField, ExpressionWrapper, F, Min, Q, Sum
from django.utils import timezone
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric

from authority.heartbeat import signer_state
from authority.models import AuditEvent, Certificate, CertificateRequest
from authority.revocation import current_crl
from authority.services import active_ca
from core.metrics import PREFIX

EXPIRING_WITHIN = timedelta(days=30)
# From approval (the request is made then) to the stored certificate. Normally well under a second;
# the long buckets are for a signer that was down or a queue that was backed up.
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)
LOGIN_FAILURE_ACTIONS = {"password": "auth.login_failed", "otp": "auth.otp_failed"}


def _certificate_metrics(now: datetime) -> Iterable[Metric]:
    live = Q(revoked_at__isnull=True)
    counts = Certificate.objects.aggregate(
        issued=Count("pk"),
        revoked=Count("pk", filter=~live),
        valid=Count("pk", filter=live & Q(not_before__lte=now, not_after__gt=now)),
        expiring=Count("pk", filter=live & Q(not_after__gt=now, not_after__lte=now + EXPIRING_WITHIN)),
    )
    yield CounterMetricFamily(f"{PREFIX}certificates_issued", "Certificates issued, ever", value=counts["issued"])
    yield CounterMetricFamily(f"{PREFIX}certificates_revoked", "Certificates revoked, ever", value=counts["revoked"])
    yield GaugeMetricFamily(
        f"{PREFIX}certificates_valid", "Certificates within their validity and not revoked", value=counts["valid"]
    )
    yield GaugeMetricFamily(
        f"{PREFIX}certificates_expiring_30d",
        "Certificates not revoked that expire within 30 days",
        value=counts["expiring"],
    )


def _issuance_latency() -> Metric:
    """Request (approval) to issued certificate, over every certificate: a cumulative histogram."""
    latency = ExpressionWrapper(F("issued_at") - F("request__created_at"), output_field=DurationField())
    buckets = {
        f"le{index}": Count("pk", filter=Q(latency__lte=timedelta(seconds=bound)))
        for index, bound in enumerate(LATENCY_BUCKETS)
    }
    row = Certificate.objects.annotate(latency=latency).aggregate(count=Count("pk"), total=Sum("latency"), **buckets)
    total = row["total"]
    seconds = total.total_seconds() if isinstance(total, timedelta) else float(total or 0) / 1_000_000
    cumulative = [(str(bound), float(row[f"le{index}"])) for index, bound in enumerate(LATENCY_BUCKETS)]
    return HistogramMetricFamily(
        f"{PREFIX}issuance_latency_seconds",
        "Time from a certificate request (its approval) to the issued certificate",
        buckets=[*cumulative, ("+Inf", float(row["count"]))],
        sum_value=max(seconds, 0.0),
    )


def _request_metrics(now: datetime) -> Iterable[Metric]:
    waiting = CertificateRequest.objects.filter(
        status__in=(CertificateRequest.Status.PENDING, CertificateRequest.Status.SIGNING)
    ).aggregate(n=Count("pk"), oldest=Min("created_at"))
    yield GaugeMetricFamily(
        f"{PREFIX}certificate_requests_waiting", "Approved requests the signer has not finished", value=waiting["n"]
    )
    oldest = 0.0 if waiting["oldest"] is None else max((now - waiting["oldest"]).total_seconds(), 0.0)
    yield GaugeMetricFamily(
        f"{PREFIX}certificate_requests_oldest_waiting_seconds",
        "How long the oldest waiting request has waited since its approval (0 when none waits)",
        value=oldest,
    )


def _ca_and_crl_metrics(now: datetime) -> Iterable[Metric]:
    ca = active_ca()
    if ca is None:
        return
    yield GaugeMetricFamily(
        f"{PREFIX}ca_expires_in_seconds",
        "Seconds until the active CA certificate expires",
        value=(ca.not_after - now).total_seconds(),
    )
    crl = current_crl(ca)
    if crl is None:
        return
    yield GaugeMetricFamily(
        f"{PREFIX}crl_age_seconds",
        "Seconds since the current CRL's thisUpdate",
        value=(now - crl.this_update).total_seconds(),
    )
    yield GaugeMetricFamily(
        f"{PREFIX}crl_next_update_seconds",
        "Seconds until the current CRL's nextUpdate (negative: peers now refuse every certificate)",
        value=(crl.next_update - now).total_seconds(),
    )


def _signer_metrics(now: datetime) -> Iterable[Metric]:
    state = signer_state(now=now)
    if state.age is None:
        return  # alert on absent(ca_portal_signer_heartbeat_age_seconds)
    yield GaugeMetricFamily(
        f"{PREFIX}signer_heartbeat_age_seconds",
        "Seconds since the newest signer heartbeat (one every 30 s while a signer takes its queue)",
        value=state.age.total_seconds(),
    )
    if state.key_ok is not None:
        yield GaugeMetricFamily(
            f"{PREFIX}signer_key_ok",
            "1 when the signer that beat last could use the CA key",
            value=1.0 if state.key_ok else 0.0,
        )


def _login_metrics(now: datetime) -> Iterable[Metric]:
    failures = CounterMetricFamily(
        f"{PREFIX}login_failures", "Failed sign-ins recorded in the audit log, by factor", labels=["factor"]
    )
    by_action = dict(
        AuditEvent.objects.filter(action__in=LOGIN_FAILURE_ACTIONS.values())
        .order_by()
        .values("action")
        .annotate(n=Count("pk"))
        .values_list("action", "n")
    )
    for factor, action in LOGIN_FAILURE_ACTIONS.items():
        failures.add_metric([factor], by_action.get(action, 0))
    yield failures
    limit, cooloff = settings.AXES_FAILURE_LIMIT, settings.AXES_COOLOFF_TIME
    if isinstance(limit, int) and isinstance(cooloff, timedelta):
        locked = AccessAttempt.objects.filter(failures_since_start__gte=limit, attempt_time__gte=now - cooloff).count()
        yield GaugeMetricFamily(
            f"{PREFIX}login_locked_out", "User name and address pairs locked out of sign-in right now", value=locked
        )


def collect(*, now: datetime | None = None) -> list[Metric]:
    moment = now or timezone.now()
    return [
        *_certificate_metrics(moment),
        _issuance_latency(),
        *_request_metrics(moment),
        *_ca_and_crl_metrics(moment),
        *_signer_metrics(moment),
        *_login_metrics(moment),
    ]
