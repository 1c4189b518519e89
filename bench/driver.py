"""Runs inside a stack's environment (see devtools/stack.py) for bench/issuance.py.

python bench/driver.py submit N PREFIX   -> JSON {"first_id", "last_id", "elapsed"}: N requests through
                                            certificate_request_create (CSR vetting, row, audit event,
                                            enqueue on commit); "elapsed" times only that loop
python bench/driver.py window LO HI      -> JSON: counts and DB-side timestamps of requests LO..HI
                                            (first intent recorded, last certificate stored)
python bench/driver.py wakeups-reset     -> clears the debounced-wakeup flags (after the bench purged the
                                            queues, a flag whose message was purged would hold back the
                                            next run's wakeup for WAKE_STALE_AFTER_SECONDS)
python bench/driver.py interleaved N     -> JSON: N issuances through the signer's drain in this process,
                                            one batch of 100 at a time, each followed by 100 raw-ceiling
                                            certificates; total time of each side and the ratio
python bench/driver.py profile N         -> text: N issuances through the signer's drain (batches of
                                            100) in this process (signing enabled): per-phase
                                            breakdown in ms per certificate and a cProfile top
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


# --- interleaved with the ceiling -----------------------------------------------------------------


def interleaved(count: int) -> dict[str, Any]:
    """The signer's path and the raw ceiling in turns of 100 certificates, in one process.

    On a machine shared with other work, a ceiling measured a minute before or after a portal run
    can see a different load; taking turns of ~0.1 s exposes both sides to the same load, so their
    ratio is steadier. What it leaves out: Celery, the worker's boot, the broker.
    """
    from authority import keystore, services
    from bench.issuance import raw_issuer

    keystore.enable_signing()
    one = raw_issuer()
    submit(20, "warm", enqueue=False)
    services.certificates_issue_pending()  # key load, throwaway key generation, connection set-up
    for i in range(50):
        one(i)
    batch = submit(count, "turns", enqueue=False)
    ids = list(range(batch["first_id"], batch["last_id"] + 1))
    raw_s = portal_s = 0.0
    raw_n = portal_n = 0
    turns = []
    for start in range(0, len(ids), services.BATCH):
        size = min(services.BATCH, len(ids) - start)
        started = time.perf_counter()
        portal = _drain(ids[start : start + size])
        portal_turn = time.perf_counter() - started
        started = time.perf_counter()
        for i in range(size):
            one(i)
        raw_turn = time.perf_counter() - started
        portal_s, portal_n, raw_s, raw_n = portal_s + portal_turn, portal_n + portal, raw_s + raw_turn, raw_n + size
        turns.append((raw_turn / size) / (portal_turn / portal))
    turns.sort()
    return {
        "n": portal_n,
        "portal_certs_per_s": portal_n / portal_s,
        "raw_certs_per_s": raw_n / raw_s,
        "ratio": (portal_n / portal_s) / (raw_n / raw_s),
        "ratio_median_turn": turns[len(turns) // 2],
        "ratio_turns_min_max": [turns[0], turns[-1]],
    }


# --- profile ---------------------------------------------------------------------------------

_phase_time: dict[str, float] = defaultdict(float)
_phase_calls: dict[str, int] = defaultdict(int)


def _timed(name: str, func: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap ``func`` so that its inclusive wall time is added to phase ``name``."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return func(*args, **kwargs)
        finally:
            _phase_time[name] += time.perf_counter() - started
            _phase_calls[name] += 1

    return wrapper


class _QueryTimer:
    """A Django execute_wrapper: wall time and count of every SQL statement (COMMIT is timed apart)."""

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
            words = sql.split(None, 3)
            kind = " ".join(words[:3] if words[0].upper() in ("INSERT", "UPDATE") else words[:1]).upper()
            if kind == "SELECT" and "FOR UPDATE" in sql.upper():
                kind = "SELECT ... FOR UPDATE"
            entry = self.by_kind[kind]
            entry[0] += 1
            entry[1] += spent


PHASES = {  # issuance function -> phase name, in the order the signer runs them
    "lock_waiting": "Tx A: lock waiting requests (SELECT FOR UPDATE)",
    "issuers": "Tx A: CA row, certificate, keys (per batch)",
    "draft": "Tx A: draft (profile, throwaway signature, check_leaf)",
    "intents_record": "Tx A: store intents, mark signing",
    "lock_signing": "Tx B: lock requests + read intents",
    "sign": "Tx B: sign stored TBS (RSA sign, parse, verify)",
    "certificates_store": "Tx B: store certificates, mark issued",
}


def _instrument() -> None:
    """Time the phases of the signer's drain by wrapping the functions it calls (bench only)."""
    from authority import issuance, services

    for attr, name in PHASES.items():
        setattr(issuance, attr, _timed(name, getattr(issuance, attr)))
    services.audit_append_many = _timed("audit_append_many (Tx A and Tx B)", services.audit_append_many)  # type: ignore[attr-defined]
    connection._commit = _timed("COMMIT (Tx A and Tx B)", connection._commit)  # type: ignore[attr-defined]


def _drain(ids: list[int]) -> int:
    """Issue exactly these (consecutive, pending) requests the way the signer's task does: batches of 100."""
    from authority import services

    done = 0
    for start in range(0, len(ids), services.BATCH):
        done += services._issue_batch(request_ids=None, limit=min(services.BATCH, len(ids) - start))
    return done


def profile(count: int) -> str:
    """The signer's drain (``certificates_issue_pending``'s batches), in this process, no Celery."""
    from celery import current_app

    from authority import keystore, services

    keystore.enable_signing()
    submit(20, "warm", enqueue=False)
    services.certificates_issue_pending()  # key load, throwaway key generation, connection set-up
    batch = submit(count, "prof", enqueue=False)
    ids = list(range(batch["first_id"], batch["last_id"] + 1))
    out = io.StringIO()

    # 1. Plain wall and CPU time per certificate, no instrumentation at all.
    half = ids[: count // 2]
    started, cpu = time.perf_counter(), time.process_time()
    done = _drain(half)
    wall_ms = (time.perf_counter() - started) / done * 1000
    cpu_ms = (time.process_time() - cpu) / done * 1000
    print(
        f"signer drain, in one process, no Celery, uninstrumented: {wall_ms:.3f} ms/cert wall "
        f"({1000 / wall_ms:.0f} certs/s), {cpu_ms:.3f} ms/cert CPU of this process, over {done} certificates",
        file=out,
    )

    # 2. The same with phase timers and a SQL timer.
    _instrument()
    queries = _QueryTimer()
    rest = ids[count // 2 :]
    quarter = rest[: len(rest) // 2]
    started = time.perf_counter()
    with connection.execute_wrapper(queries):
        n = _drain(quarter)
    total = time.perf_counter() - started
    print(f"instrumented: {total / n * 1000:.3f} ms/cert over {n} certs", file=out)
    print(f"  {'phase (inclusive wall time)':56} {'ms/cert':>8} {'calls/cert':>10}", file=out)
    for name in [*PHASES.values(), "audit_append_many (Tx A and Tx B)", "COMMIT (Tx A and Tx B)"]:
        print(f"  {name:56} {_phase_time[name] / n * 1000:8.3f} {_phase_calls[name] / n:10.2f}", file=out)
    accounted = sum(_phase_time.values())
    print(f"  {'the rest (failpoints, events, transactions, loop)':56} {(total - accounted) / n * 1000:8.3f}", file=out)
    label = "SQL execute (all statements, without COMMIT)"
    print(f"  {label:56} {queries.seconds / n * 1000:8.3f} {queries.count / n:10.2f}", file=out)
    for kind, (calls, seconds) in sorted(queries.by_kind.items(), key=lambda kv: -kv[1][1]):
        print(f"      {kind:52} {seconds / n * 1000:8.3f} {calls / n:10.2f}", file=out)

    # 3. cProfile over the last quarter.
    last = rest[len(rest) // 2 :]
    prof = cProfile.Profile()
    prof.enable()
    _drain(last)
    prof.disable()
    stream = io.StringIO()
    stats = pstats.Stats(prof, stream=stream)
    stats.sort_stats("cumulative").print_stats(30)
    stats.sort_stats("tottime").print_stats(20)
    print(f"\ncProfile over {len(last)} certificates (cumulative, then tottime):", file=out)
    print(stream.getvalue(), file=out)

    # 4. Celery's own cost to publish one message (what a wakeup costs).
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
    elif command == "wakeups-reset":
        from authority.models import TaskWakeup

        print(json.dumps({"reset": TaskWakeup.objects.update(pending=False)}))
    elif command == "interleaved":
        print(json.dumps(interleaved(int(sys.argv[2]))))
    elif command == "profile":
        print(profile(int(sys.argv[2])))
    else:
        raise SystemExit(f"unknown command {command}")
