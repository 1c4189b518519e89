"""Fixtures for the operations endpoints: a metrics token, a signer heartbeat, a fresh CRL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

TOKEN = "s3cret-metrics-token-0123456789abcdef"


@pytest.fixture
def metrics_token(settings: Any, tmp_path: Path) -> str:
    path = tmp_path / "metrics-token"
    path.write_text(TOKEN + "\n", encoding="ascii")
    settings.METRICS_TOKEN_FILE = path
    settings.METRICS_ALLOWED_ADDRESSES = []
    return TOKEN


@pytest.fixture
def heartbeat(ca: Any) -> Any:
    """A signer that beat just now and could use the CA key."""
    from authority.heartbeat import signer_heartbeat_record

    return signer_heartbeat_record(worker="celery@signer-1")


@pytest.fixture
def fresh_crl(ca: Any) -> Any:
    from authority.revocation import crl_publish

    return crl_publish(trigger="manual")


@pytest.fixture
def no_log_handlers_leak() -> Iterator[None]:
    """gunicorn's loggers are process-wide: put their handlers back after a test builds a Logger."""
    import logging

    saved = {name: list(logging.getLogger(name).handlers) for name in ("gunicorn.error", "gunicorn.access")}
    yield
    for name, handlers in saved.items():
        log = logging.getLogger(name)
        for handler in [h for h in log.handlers if h not in handlers]:
            log.removeHandler(handler)


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a scrape by (name, sorted labels), parsed the way Prometheus parses it."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def families(text: str) -> dict[str, str]:
    """Family name -> type."""
    return {family.name: family.type for family in text_string_to_metric_families(text)}
