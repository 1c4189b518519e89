"""Operations endpoints: /readyz and /metrics. The site composes what each app exposes.

- /readyz (no login): the plumbing's checks (``core.health``: database, broker) and the authority's
  (``authority.health``: signer heartbeat, CRL life, waiting requests), each named with ok/detail;
  200 when all pass, 503 otherwise. For a monitor or an orchestrator that must know whether the
  portal can do its work; /healthz only says that the process answers.
- /metrics (token or allowed address, see ``core.metrics.metrics_access``): the process counters,
  then the site metrics of ``authority.metrics`` and ``bundles.metrics``.
"""

from __future__ import annotations

from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from authority import health as authority_health
from authority import metrics as authority_metrics
from bundles import metrics as bundles_metrics
from core import health, metrics

METRIC_SOURCES: tuple[tuple[str, metrics.Source], ...] = (
    ("authority", authority_metrics.collect),
    ("bundles", bundles_metrics.collect),
)


def readiness_checks() -> list[tuple[str, health.CheckFunction]]:
    return [("database", health.database_check), ("broker", health.broker_check), *authority_health.checks()]


@require_GET
@never_cache
def readyz(request: HttpRequest) -> JsonResponse:
    results = health.run_checks(readiness_checks())
    ready = all(check.ok for check in results)
    body = {
        "status": "ready" if ready else "not ready",
        "checks": {check.name: {"ok": check.ok, "detail": check.detail} for check in results},
    }
    return JsonResponse(body, status=200 if ready else 503)


@require_GET
@never_cache
def metrics_view(request: HttpRequest) -> HttpResponse:
    access = metrics.metrics_access(request)
    if access is metrics.Access.NOT_FOUND:
        raise Http404("no such page")
    if access is metrics.Access.UNAUTHORIZED:
        response = HttpResponse("a bearer token is needed\n", status=401, content_type="text/plain; charset=utf-8")
        response["WWW-Authenticate"] = 'Bearer realm="ca_portal metrics"'
        return response
    return HttpResponse(metrics.render(METRIC_SOURCES), content_type=metrics.CONTENT_TYPE)
