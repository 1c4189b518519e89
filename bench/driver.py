"""Runs inside a stack's environment (see devtools/stack.py) for bench/issuance.py.

python bench/driver.py submit N PREFIX   -> JSON {"first_id", "last_id", "elapsed"}: N requests through
                                            certificate_request_create (CSR vetting, row, audit event,
                                            enqueue on commit); "elapsed" times only that loop
python bench/driver.py window LO HI      -> JSON: counts and DB-side timestamps of requests LO..HI
                                            (first intent recorded, last certificate stored)
python bench/driver.py profile N         -> text: N issuances run in this process (signing enabled),
                                            per-phase breakdown in ms per certificate and a cProfile top
"""

from __future__ import annotations

import cProfile
import functools
import io
import json
import os
import pstats
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ca_portal.settings")

import django  # noqa: E402

django.setup()

from django.db import connection  # noqa: E402
from django.db.models import Max, Min  # noqa: E402

from authority.models import Certificate, CertificateRequest, IssuanceIntent  # noqa: E402
from authority.services import certificate_request_create  # noqa: E402

CSR = (ROOT / "tests" / "fixtures" / "pki" / "client-nocn.csr").read_text()


def submit(count: int, prefix: str, *, enqueue: bool = True) -> dict[str, Any]:
    ids = []
    started = time.perf_counter()
    for i in range(count):
        request = certificate_request_create(
            fqdn=f"{prefix}{i}.example.com",
            kind="client",
            csr_pem=CSR,
            validity_days=30,
            requested_by=None,
            approved_by=None,
            actor="bench",
            enqueue=enqueue,
        )
        ids.append(request.pk)
    elapsed = time.perf_counter() - started
    return {"first_id": min(ids), "last_id": max(ids), "count": len(ids), "elapsed": elapsed}


def window(lo: int, hi: int) -> dict[str, Any]:
    requests = CertificateRequest.objects.filter(pk__gte=lo, pk__lte=hi)
    intents = IssuanceIntent.objects.filter(request_id__gte=lo, request_id__lte=hi)
    certs = Certificate.objects.filter(request_id__gte=lo, request_id__lte=hi)
    first_intent = intents.aggregate(t=Min("created_at"))["t"]
    span = certs.aggregate(first=Min("issued_at"), last=Max("issued_at"))
    return {
        "requests": requests.count(),
        "issued": requests.filter(status=CertificateRequest.Status.ISSUED).count(),
        "failed": requests.filter(status=CertificateRequest.Status.FAILED).count(),
        "intents": intents.count(),
        "certificates": certs.count(),
        "first_intent_at": first_intent.timestamp() if first_intent else None,
        "first_issued_at": span["first"].timestamp() if span["first"] else None,
        "last_issued_at": span["last"].timestamp() if span["last"] else None,
    }


# --- profile ---------------------------------------------------------------------------------

_phase_time: dict[str, float] = defaultdict(float)
_phase_calls: dict[str, int] = defaultdict(int)
_depth: list[str] = []


def _timed(name: str, func: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap ``func`` so that its inclusive wall time is added to phase ``name`` (outermost call only)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if name in _depth:  # re-entrant (audit_record inside audit_record never happens, but be safe)
            return func(*args, **kwargs)
        _depth.append(name)
        started = time.perf_counter()
        try:
            return func(*args, **kwargs)
        finally:
            _phase_time[name] += time.perf_counter() - started
            _phase_calls[name] += 1
            _depth.pop()

    return wrapper


class _QueryTimer:
    """A Django execute_wrapper: wall time and count of every SQL statement, COMMIT included."""

    def __init__(self) -> None:
        self.count = 0
        self.seconds = 0.0
        self.by_kind: dict[str, list[float]] = defaultdict(lambda: [0, 0.0])

    def __call__(self, execute: Callable[..., Any], sql: str, params: Any, many: bool, context: Any) -> Any:
        started = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            spent = time.perf_counter() - started
            self.count += 1
            self.seconds += spent
            kind = sql.lstrip().split(None, 1)[0].upper()
            if kind == "SELECT" and "FOR UPDATE" in sql.upper():
                kind = "SELECT FOR UPDATE"
            entry = self.by_kind[kind]
            entry[0] += 1
            entry[1] += spent


class _TimedAtomic:
    """Stands in for ``services.transaction``: times each outermost atomic block, COMMIT included,
    naming it by its order within one certificate_issue call (Tx A, then Tx B)."""

    NAMES = ("Tx A (lock, intent, audit, COMMIT)", "Tx B (lock, sign, store, audit, COMMIT)")

    def __init__(self, real: Any):
        self._real = real
        self.depth = 0
        self.index = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)

    def atomic(self, *args: Any, **kwargs: Any) -> Any:
        import contextlib

        outer = self

        @contextlib.contextmanager
        def block() -> Any:
            outermost = outer.depth == 0
            outer.depth += 1
            started = time.perf_counter()
            try:
                with outer._real.atomic(*args, **kwargs):
                    yield
            finally:
                outer.depth -= 1
                if outermost:
                    name = outer.NAMES[min(outer.index, 1)]
                    _phase_time[name] += time.perf_counter() - started
                    _phase_calls[name] += 1
                    outer.index += 1

        return block()


def _instrument() -> _TimedAtomic:
    """Time the phases of certificate_issue by wrapping the functions it calls (bench only)."""
    from django.db import transaction

    from authority import audit, keystore, services
    from pki import issue, profiles

    timed_tx = _TimedAtomic(transaction)
    services.transaction = timed_tx  # type: ignore[assignment]
    real_issue = services.certificate_issue

    def certificate_issue(**kwargs: Any) -> Any:
        timed_tx.index = 0
        return real_issue(**kwargs)

    services.certificate_issue = _timed("certificate_issue (total)", certificate_issue)  # type: ignore[assignment]
    services.audit_record = _timed("  audit_record x2 (intent in A, issued in B)", audit.audit_record)  # type: ignore[assignment]
    services.leaf_builder = _timed("  A: leaf_builder", profiles.leaf_builder)  # type: ignore[assignment]
    services.tbs_bytes = _timed("  A: tbs_bytes (throwaway RSA-1024 sign + check_leaf)", profiles.tbs_bytes)  # type: ignore[assignment]
    services.load_public_key_der = _timed("  A: load_public_key_der", services.load_public_key_der)  # type: ignore[assignment]
    services.sign_tbs = _timed("  B: sign_tbs (RSA-2048 sign + parse + verify)", issue.sign_tbs)  # type: ignore[assignment]
    services.keystore.signing_key = _timed("  pre: signing_key (cached)", keystore.signing_key)  # type: ignore[assignment]
    real_commit = connection._commit

    connection._commit = _timed("  COMMIT (2 per certificate)", real_commit)  # type: ignore[method-assign]
    return timed_tx


def profile(count: int) -> str:
    from celery import current_app

    from authority import keystore, services

    keystore.enable_signing()
    batch = submit(count + 20, "prof", enqueue=False)
    ids = list(range(batch["first_id"], batch["last_id"] + 1))
    warm, ids = ids[:20], ids[20:]
    for pk in warm:  # key load, throwaway key generation, connection set-up
        services.certificate_issue(request_id=pk)

    out = io.StringIO()
    # 1. Plain wall time per certificate, no instrumentation at all.
    half = ids[: count // 2]
    chunks = [half[i::3] for i in range(3)]
    plain = []
    for chunk in chunks:
        started = time.perf_counter()
        for pk in chunk:
            services.certificate_issue(request_id=pk)
        plain.append((time.perf_counter() - started) / len(chunk) * 1000)
    print(
        f"service only, in one process, no Celery, uninstrumented: {', '.join(f'{p:.2f}' for p in plain)} ms/cert"
        f" in 3 chunks (best {1000 / min(plain):.0f} certs/s)",
        file=out,
    )

    # 2. The same with phase timers and a SQL timer.
    _instrument()
    queries = _QueryTimer()
    rest = ids[count // 2 :]
    started = time.perf_counter()
    with connection.execute_wrapper(queries):
        for pk in rest[: len(rest) // 2]:
            services.certificate_issue(request_id=pk)
    n = len(rest) // 2
    total = time.perf_counter() - started
    print(f"instrumented: {total / n * 1000:.3f} ms/cert over {n} certs", file=out)
    total_ms = _phase_time["certificate_issue (total)"] / n * 1000
    a_ms = _phase_time[_TimedAtomic.NAMES[0]] / n * 1000
    b_ms = _phase_time[_TimedAtomic.NAMES[1]] / n * 1000
    _phase_time["pre: get request + ca, signing_key (outside Tx)"] = (total_ms - a_ms - b_ms) * n / 1000
    _phase_calls["pre: get request + ca, signing_key (outside Tx)"] = n
    print(f"  {'phase (inclusive wall time)':56} {'ms/cert':>8} {'calls/cert':>10}", file=out)
    for name, seconds in sorted(_phase_time.items(), key=lambda kv: (kv[0].startswith("  "), -kv[1])):
        print(f"  {name:56} {seconds / n * 1000:8.3f} {_phase_calls[name] / n:10.1f}", file=out)
    label = "  SQL execute (all statements, without COMMIT)"
    print(f"  {label:56} {queries.seconds / n * 1000:8.3f} {queries.count / n:10.1f}", file=out)
    for kind, (calls, seconds) in sorted(queries.by_kind.items(), key=lambda kv: -kv[1][1]):
        print(f"      {kind:52} {seconds / n * 1000:8.3f} {calls / n:10.1f}", file=out)

    # 3. cProfile over the last quarter.
    last = rest[len(rest) // 2 :]
    prof = cProfile.Profile()
    prof.enable()
    for pk in last:
        services.certificate_issue(request_id=pk)
    prof.disable()
    stream = io.StringIO()
    stats = pstats.Stats(prof, stream=stream)
    stats.sort_stats("cumulative").print_stats(35)
    stats.sort_stats("tottime").print_stats(25)
    print(f"\ncProfile over {len(last)} certificates (cumulative, then tottime):", file=out)
    print(stream.getvalue(), file=out)

    # 4. Celery's own cost to publish one message (what on_commit does per request at submission).
    from authority.tasks import certificates_issue_pending_task

    started = time.perf_counter()
    for _ in range(200):
        certificates_issue_pending_task.apply_async(retry=False)
    publish = (time.perf_counter() - started) / 200
    print(f"Celery apply_async (publish one id to {current_app.conf.broker_url.split(':')[0]}): "
          f"{publish * 1000:.3f} ms", file=out)  # fmt: skip
    return out.getvalue()


if __name__ == "__main__":
    command = sys.argv[1]
    if command == "submit":
        print(json.dumps(submit(int(sys.argv[2]), sys.argv[3])))
    elif command == "window":
        print(json.dumps(window(int(sys.argv[2]), int(sys.argv[3]))))
    elif command == "profile":
        print(profile(int(sys.argv[2])))
    else:
        raise SystemExit(f"unknown command {command}")
