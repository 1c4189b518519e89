"""Operations endpoints: /readyz and /metrics. The site composes what each app exposes.

- /readyz (no login): the plumbing's checks (``core.health``: database, broker) and the authority's
  (``authority.health``: signer heartbeat, CRL life, waiting requests), each named with ok/detail;
  200 when all pass, 503 otherwise. For a monitor or an orchestrator that must know whether the
  portal can do its work; /healthz only says that the process answers.
- /metrics (token or allowed address, see ``core.metrics.metrics_access``): the process counters,
  then the site metrics of ``authority.metrics`` and ``bundles.metrics``.
"""

from __future__ import annotations

from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from authority import health as authority_health
from core import health


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
