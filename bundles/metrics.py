"""The bundles app's site metrics for /metrics: the render backlog, read at scrape time."""

from __future__ import annotations

from prometheus_client.core import GaugeMetricFamily, Metric

from bundles.selectors import stale_peer_ids
from core.metrics import PREFIX

BACKLOG_LIMIT = 100_000


def collect() -> list[Metric]:
    # The same query the render sweeper runs every 30 s; a backlog that stays up means the render
    # workers are down or cannot keep up.
    backlog = len(stale_peer_ids(limit=BACKLOG_LIMIT))
    return [
        GaugeMetricFamily(
            f"{PREFIX}render_backlog",
            "Issued peers whose newest bundle is missing or stale (waiting for the render workers)",
            value=backlog,
        )
    ]
