"""Prometheus metrics: the process counters, who may read /metrics, and the scrape itself.

Two kinds of metric, both named ``ca_portal_*``:

- **Process counters** (HTTP requests by status, sign-in lockouts) count what this host's web
  processes did. gunicorn runs several worker processes, so prometheus_client runs in its
  multiprocess mode: settings point PROMETHEUS_MULTIPROC_DIR into the var dir before anything imports
  prometheus_client, each worker writes its counts to its own file there, and the scrape adds the
  files up. Sum them across web hosts.
- **Site metrics** (certificates, the CRL, the signer's heartbeat, the render backlog, ...) are read
  from the database when /metrics is scraped, by the functions each app exposes (``Source``). They
  are true across hosts (the signer writes its heartbeat to the database) and every web host
  reports the same values: take one, or the max, not the sum.

The metric objects are made on first use, not at import: in multiprocess mode a counter without
labels opens its file as soon as it exists, and workers and commands that never count must not
leave files behind.
"""

from __future__ import annotations

import enum
import functools
import hmac
import ipaddress
import logging
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from prometheus_client import Counter, values
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

log = logging.getLogger(__name__)

PREFIX = "ca_portal_"
CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4  # the text format every Prometheus reads
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
MIN_TOKEN_LENGTH = 16

Source = Callable[[], Iterable[Metric]]


# --- process counters ----------------------------------------------------------------------------


@dataclass(frozen=True)
class ProcessMetrics:
    http_requests: Counter
    login_lockouts: Counter


@functools.cache
def process_metrics() -> ProcessMetrics:
    """This process's counters, made once. Not in the global registry: the scrape reads them itself."""
    return ProcessMetrics(
        http_requests=Counter(
            f"{PREFIX}http_requests",
            "HTTP responses by method and status code, counted by the web processes of this host",
            ["method", "status"],
            registry=None,
        ),
        login_lockouts=Counter(
            f"{PREFIX}login_lockouts",
            "Sign-in lockouts (a user name and address locked after too many failures) on this host",
            registry=None,
        ),
    )


def multiprocess_mode() -> bool:
    """Whether prometheus_client writes values to files (PROMETHEUS_MULTIPROC_DIR was set when it was imported)."""
    return values.ValueClass is not values.MutexValue


def _safely(action: Callable[[], object], what: str) -> None:
    # Counting must never fail a request: a full disk under the metrics dir costs a count, not a 500.
    try:
        action()
    except Exception:
        log.warning("could not count %s", what, exc_info=True)


def count_requests(get_response: Callable[[HttpRequest], HttpResponse]) -> Callable[[HttpRequest], HttpResponse]:
    """Middleware, near the top of MIDDLEWARE: every response by method and status."""

    def middleware(request: HttpRequest) -> HttpResponse:
        response = get_response(request)
        method = request.method if request.method in METHODS else "other"
        counter = process_metrics().http_requests.labels(method=method, status=str(response.status_code))
        _safely(counter.inc, "a request")
        return response

    return middleware


def count_lockout(**_signal: object) -> None:
    """Receiver of django-axes' ``user_locked_out``."""
    _safely(process_metrics().login_lockouts.inc, "a lockout")


def clear_multiprocess_dir(path: Path | None = None) -> int:
    """Remove the value files of processes that are gone. Call it before the web processes start
    (``manage.py serve``), never while they run: their counts would drop. Returns how many went."""
    folder = Path(path or os.environ.get("PROMETHEUS_MULTIPROC_DIR", "") or settings.METRICS_DIR)
    removed = 0
    for file in folder.glob("*.db"):
        file.unlink(missing_ok=True)
        removed += 1
    return removed


# --- who may read /metrics -------------------------------------------------------------------------


class Access(enum.Enum):
    ALLOWED = "allowed"
    NOT_FOUND = "not found"  # /metrics is not configured, or configured for addresses only
    UNAUTHORIZED = "unauthorized"  # a token is configured and this request did not bring it


@functools.cache
def _networks(addresses: tuple[str, ...]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(address, strict=False) for address in addresses)


def _direct_address(request: HttpRequest) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The peer's address when it connected to us directly; None when a proxy forwarded the request.

    Behind the TLS proxy every request comes from the proxy's address: allowing that address would
    allow the whole internet. A forwarded request says so (X-Forwarded-For, Forwarded), so it is
    never let in by address, only by token; a scraper that connects directly is.
    """
    if "HTTP_X_FORWARDED_FOR" in request.META or "HTTP_FORWARDED" in request.META:
        return None
    try:
        address = ipaddress.ip_address(str(request.META.get("REMOTE_ADDR", "")))
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _expected_token(path: Path) -> bytes | None:
    """The token file's content, read on every scrape so that a new token needs no restart."""
    try:
        token = path.read_bytes().strip()
    except OSError as exc:
        log.error("cannot read METRICS_TOKEN_FILE: %s", exc.strerror)
        return None
    if len(token) < MIN_TOKEN_LENGTH:
        log.error("METRICS_TOKEN_FILE holds fewer than %s characters; /metrics refuses every token", MIN_TOKEN_LENGTH)
        return None
    return token


def _presented_token(request: HttpRequest) -> bytes | None:
    scheme, _, credentials = str(request.META.get("HTTP_AUTHORIZATION", "")).partition(" ")
    if scheme.lower() != "bearer" or not credentials.strip():
        return None
    return credentials.strip().encode("utf-8", "replace")


def metrics_access(request: HttpRequest) -> Access:
    """METRICS_ALLOWED_ADDRESSES let a direct scraper in; otherwise ``Authorization: Bearer <token>``
    with the content of METRICS_TOKEN_FILE, compared in constant time. Neither configured: 404."""
    token_file: Path | None = settings.METRICS_TOKEN_FILE
    networks = _networks(tuple(settings.METRICS_ALLOWED_ADDRESSES))
    if token_file is None and not networks:
        return Access.NOT_FOUND
    address = _direct_address(request)
    if address is not None and any(address in network for network in networks):
        return Access.ALLOWED
    if token_file is None:
        return Access.NOT_FOUND
    presented = _presented_token(request)
    expected = _expected_token(token_file)
    # compare_digest's time depends only on the length of what was presented, never on where it differs.
    if presented is not None and expected is not None and hmac.compare_digest(presented, expected):
        return Access.ALLOWED
    return Access.UNAUTHORIZED


# --- the scrape ----------------------------------------------------------------------------------


class Scrape:
    """Everything /metrics answers: the process counters, then each app's site metrics.

    A source that raises (the database is down) is left out and reported as
    ``ca_portal_metrics_source_up{source=...} 0``, so the counters are still scraped.
    """

    def __init__(self, sources: Sequence[tuple[str, Source]]) -> None:
        self.sources = sources

    def _process(self) -> Iterable[Metric]:
        if not multiprocess_mode():
            metrics = process_metrics()
            return [*metrics.http_requests.collect(), *metrics.login_lockouts.collect()]
        path = os.environ.get("PROMETHEUS_MULTIPROC_DIR", "")
        try:
            return list(MultiProcessCollector(None, path=path).collect())  # type: ignore[no-untyped-call]
        except (OSError, ValueError):
            log.warning("cannot read the metrics of the web processes", exc_info=True)
            return []

    def collect(self) -> Iterator[Metric]:
        yield from self._process()
        up = GaugeMetricFamily(
            f"{PREFIX}metrics_source_up", "1 when the source's site metrics could be read", labels=["source"]
        )
        for name, source in self.sources:
            try:
                metrics = list(source())
            except Exception:
                log.warning("site metrics of %s could not be read", name, exc_info=True)
                up.add_metric([name], 0)
                continue
            up.add_metric([name], 1)
            yield from metrics
        yield up


def render(sources: Sequence[tuple[str, Source]]) -> bytes:
    return generate_latest(Scrape(sources))
