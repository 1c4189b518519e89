"""Certificate issuance: the portal's real signer path against the raw `cryptography` ceiling.

    python bench/issuance.py [--n 1000] [--flavours embedded,services] [--concurrency 1,2] [--profile 400]

For the same CA (tests/fixtures/pki/ca-rsa2048.*) in the same run it measures

* the raw ceiling: in this process, the CA key loaded once, then per certificate: load the CSR
  PEM, build a leaf with the profile's extensions, sign, serialize to PEM. It is measured once
  at the start, and again right before each portal run (after the submissions, before the worker
  starts) and right after it; each run's ratio is taken against the mean of those two: on a
  shared machine whose load changes from minute to minute that is the fairer reference (the
  ratio against the ceiling at the start is printed too);
* the portal, per flavour (``embedded``: SQLite + kombu filesystem broker; ``services``:
  PostgreSQL + Redis) and per worker concurrency: N requests are submitted first through
  ``certificate_request_create`` (CSR vetting, row, audit event, message enqueued on commit)
  with no worker running; then a real ``celery worker -Q signer,render`` is started and the
  run is timed until all N are issued. certs/s = N / (last certificate stored - first intent
  recorded), both taken from the database; the wall time from spawning the worker (its boot
  included) is printed beside it;
* the peak RSS (VmHWM) of the worker's main process and of each pool child;
* per flavour, N more requests through the signer's drain in this benchmark's driver process,
  one batch of 100 at a time, each followed by 100 raw-ceiling certificates (``bench/driver.py
  interleaved``): no Celery, but both sides see the same load, which a shared machine's
  minute-to-minute swings do not give the worker runs.

Targets (the issue): ratio >= 0.5, peak RSS of a signer worker <= 150 MB, and >= 10x
django-ca 3.2's ~19 certs/s. Results go to stdout and to bench/out/issuance.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cryptography import x509  # noqa: E402
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import rsa  # noqa: E402
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID  # noqa: E402

from devtools.stack import FIXTURES, PYTHON, Stack  # noqa: E402

OUT = ROOT / "bench" / "out"
CSR_FILE = FIXTURES / "client-nocn.csr"
TARGET_RATIO = 0.5
TARGET_RSS_MB = 150.0
DJANGO_CA_CERTS_PER_S = 19.0
TARGET_VS_DJANGO_CA = 10.0
# A Redis database and PostgreSQL name prefix of its own, so it can run beside the integration
# tests (12, 13, 15) and bench/inventory.py (14).
BENCH_REDIS_DB = 11
BENCH_DB_PREFIX = "ca_portal_bench_issuance"


# --- the raw ceiling -------------------------------------------------------------------------


def raw_issuer(ca_cert_file: str = "ca-rsa2048.crt", ca_key_file: str = "ca-rsa2048.key") -> Callable[[int], bytes]:
    """The ceiling's unit of work, with the CA key loaded once: ``one(i)`` takes the CSR PEM to a
    certificate PEM for raw{i}.example.com (checked once here to verify under the CA)."""
    ca_cert = x509.load_pem_x509_certificate((FIXTURES / ca_cert_file).read_bytes())
    ca_key = serialization.load_pem_private_key((FIXTURES / ca_key_file).read_bytes(), password=None)
    assert isinstance(ca_key, rsa.RSAPrivateKey)
    csr_pem = CSR_FILE.read_bytes()
    ca_ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    aki = x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski)
    ku = x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=True,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )
    eku = x509.ExtendedKeyUsage(
        [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.IPSEC_IKE]
    )
    crl = x509.CRLDistributionPoints(
        [x509.DistributionPoint([x509.UniformResourceIdentifier("https://ca.example.org/crl.der")], None, None, None)]
    )
    now = datetime.now(UTC).replace(microsecond=0)

    def one(i: int) -> bytes:
        csr = x509.load_pem_x509_csr(csr_pem)
        public_key = csr.public_key()
        fqdn = f"raw{i}.example.com"
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, fqdn)]))
            .issuer_name(ca_cert.subject)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(hours=1))
            .not_valid_after(now + timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(fqdn)]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(ku, critical=True)
            .add_extension(eku, critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)  # type: ignore[arg-type]
            .add_extension(aki, critical=False)
            .add_extension(crl, critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        return cert.public_bytes(serialization.Encoding.PEM)

    # Sanity: what we time is a certificate that verifies under the CA.
    x509.load_pem_x509_certificate(one(0)).verify_directly_issued_by(ca_cert)
    return one


def raw_ceiling(n: int, ca_cert_file: str = "ca-rsa2048.crt", ca_key_file: str = "ca-rsa2048.key") -> dict[str, Any]:
    """Best of three passes of N certificates: CSR PEM in, certificate PEM out, CA key loaded once."""
    one = raw_issuer(ca_cert_file, ca_key_file)
    for i in range(50):
        one(i)
    passes = []
    for _pass in range(3):
        started = time.perf_counter()
        for i in range(n):
            one(i)
        passes.append(n / (time.perf_counter() - started))
    key = serialization.load_pem_private_key((FIXTURES / ca_key_file).read_bytes(), password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    return {"certs_per_s": max(passes), "passes": passes, "n": n, "ca_key": f"RSA-{key.key_size}"}


# --- the portal ------------------------------------------------------------------------------


def bench_driver(stack: Stack, *args: str) -> Any:
    result = subprocess.run(
        [PYTHON, str(ROOT / "bench" / "driver.py"), *args], env=stack.env, cwd=ROOT, capture_output=True, text=True
    )
    if result.returncode != 0:
        raise RuntimeError(f"bench/driver.py {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result.stdout


class IssuedCounter:
    """A light poll of the stack's database: one COUNT per call over a kept-open connection."""

    SQL = "SELECT count(*) FROM authority_certificaterequest WHERE status = 'issued' AND id BETWEEN {lo} AND {hi}"

    def __init__(self, stack: Stack):
        self.stack = stack
        if stack.flavour == "embedded":
            path = stack.var / "ca_portal.sqlite3"
            self.conn: Any = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)
        else:
            import psycopg

            self.conn = psycopg.connect(
                stack.env["DATABASE_URL"].replace("postgres://", "postgresql://"), autocommit=True
            )

    def issued(self, lo: int, hi: int) -> int:
        row = self.conn.execute(self.SQL.format(lo=int(lo), hi=int(hi))).fetchone()
        return int(row[0])

    def close(self) -> None:
        self.conn.close()


def _children(pid: int) -> list[int]:
    found = []
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return found
    for task in tasks:
        try:
            found += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return found


def _process_tree(pid: int) -> list[int]:
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo += _children(current)
    return tree


def _vm_hwm_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def portal_run(
    stack: Stack, n: int, concurrency: int, prefix: str, timeout: float, queues: str, raw_n: int
) -> dict[str, Any]:
    submitted = json.loads(bench_driver(stack, "submit", str(n), prefix).strip().splitlines()[-1])
    lo, hi = submitted["first_id"], submitted["last_id"]
    assert hi - lo + 1 == n, submitted
    raw_before = raw_ceiling(raw_n)  # with the one after the run: the reference under this moment's load
    load_before = os.getloadavg()[0]
    counter = IssuedCounter(stack)
    try:
        spawned = time.monotonic()
        stack.start_worker(concurrency=concurrency, queues=queues, wait=False)  # the start-up is part of the run
        assert stack.worker is not None
        deadline = spawned + timeout
        first_seen = None
        issued = 0
        while time.monotonic() < deadline:
            issued = counter.issued(lo, hi)
            if issued and first_seen is None:
                first_seen = time.monotonic()
            if issued >= n:
                break
            if not stack.worker_alive():
                raise RuntimeError(f"the worker died; see {stack.worker_log}")
            time.sleep(0.02)
        done = time.monotonic()
        pids = _process_tree(stack.worker.pid)
        rss = {pid: _vm_hwm_mb(pid) for pid in pids}
    finally:
        counter.close()
        stack.stop_worker()
        # Drop what this run left queued (issuance notices on "render") so the next run starts clean.
        subprocess.run(
            [str(Path(PYTHON).parent / "celery"), "-A", "ca_portal", "purge", "-f", "-Q", "signer,render"],
            env=stack.env, cwd=ROOT, capture_output=True, check=False,
        )  # fmt: skip
        # A wakeup flag whose message was just purged (the drain's own "long queue" wakeup, received
        # as the worker stopped) would hold back the next run's wakeup: clear the flags too.
        bench_driver(stack, "wakeups-reset")
    if issued < n:
        tail = stack.worker_log.read_text(errors="replace")[-3000:]
        raise RuntimeError(f"only {issued}/{n} issued after {timeout:.0f} s\n--- worker log tail ---\n{tail}")
    raw_after = raw_ceiling(raw_n)
    raw = {
        "certs_per_s": (raw_before["certs_per_s"] + raw_after["certs_per_s"]) / 2,
        "before": raw_before,
        "after": raw_after,
    }
    window = json.loads(bench_driver(stack, "window", str(lo), str(hi)).strip().splitlines()[-1])
    db_elapsed = window["last_issued_at"] - window["first_intent_at"]
    main_pid = pids[0]
    children_rss = [v for pid, v in rss.items() if pid != main_pid and v is not None]
    return {
        "flavour": stack.flavour,
        "concurrency": concurrency,
        "queues": queues,
        "n": n,
        "loadavg_1m_before": load_before,
        "loadavg_1m_after": os.getloadavg()[0],
        "submit_elapsed_s": submitted["elapsed"],
        "submit_per_s": n / submitted["elapsed"],
        "issue_elapsed_s": db_elapsed,
        "certs_per_s": n / db_elapsed,
        "wall_from_spawn_s": done - spawned,
        "certs_per_s_incl_boot": n / (done - spawned),
        "worker_boot_to_first_issued_s": (first_seen - spawned) if first_seen else None,
        "failed": window["failed"],
        "intents": window["intents"],
        "certificates": window["certificates"],
        "rss_main_mb": rss.get(main_pid),
        "rss_children_mb": children_rss,
        "rss_peak_signer_mb": max(children_rss) if children_rss else rss.get(main_pid),
        "raw": raw,
    }


def run_flavour(
    flavour: str, n: int, concurrencies: list[int], timeout: float, queues: str, raw_n: int
) -> tuple[list[dict[str, Any]], dict[str, Any], dict[str, Any]]:
    with tempfile.TemporaryDirectory(prefix=f"bench-{flavour}-") as tmp:
        stack = Stack(Path(tmp), flavour, redis_db=BENCH_REDIS_DB, db_prefix=BENCH_DB_PREFIX)
        stack.env.pop("CELERY_VISIBILITY_TIMEOUT", None)  # the integration tests' 5 s; production's default here
        stack.env["LOG_LEVEL"] = "WARNING"
        stack.setup()
        try:
            results = []
            for c in concurrencies:
                print(f"  {flavour}: submitting {n}, then a worker -Q {queues} -c {c} ...", flush=True)
                results.append(portal_run(stack, n, c, f"{flavour[0]}c{c}-", timeout, queues, raw_n))
            print(f"  {flavour}: {n} more through the signer's drain in one process, in turns with the ceiling ...")
            turns = json.loads(bench_driver(stack, "interleaved", str(n)).strip().splitlines()[-1])
            status = stack.driver("status")  # the integration invariants over everything issued
            invariants = {
                "ok": not status["problems"]
                and status["audit_ok"]
                and status["certificates"] == status["requests"] == status["intents"] == status["distinct_serials"]
                and status["requests_with_two_certs"] == 0,
                "certificates": status["certificates"],
                "audit_events": status["audit_events"],
                "problems": status["problems"][:5],
            }
        finally:
            stack.teardown()
    return results, invariants, turns


def run_profile(flavour: str, n: int) -> str:
    with tempfile.TemporaryDirectory(prefix=f"bench-prof-{flavour}-") as tmp:
        stack = Stack(Path(tmp), flavour, redis_db=BENCH_REDIS_DB, db_prefix=BENCH_DB_PREFIX)
        stack.setup()
        try:
            return bench_driver(stack, "profile", str(n))
        finally:
            stack.teardown()


# --- report ----------------------------------------------------------------------------------


def _yes(ok: bool) -> str:
    return "yes" if ok else "NO"


def report(raw: dict[str, Any], runs: list[dict[str, Any]]) -> str:
    lines = [
        f"raw cryptography ceiling at the start (1 process, {raw['ca_key']} CA, CSR PEM -> cert PEM): "
        f"{raw['certs_per_s']:.0f} certs/s (passes: {', '.join(f'{p:.0f}' for p in raw['passes'])})",
        "",
        f"{'flavour':9} {'c':>2} {'N':>5} {'submit/s':>8} {'portal/s':>8} {'raw/s':>6} {'ratio':>6} {'(start)':>7} "
        f"{'incl.boot/s':>11} {'RSS main':>8} {'RSS child':>9}  ratio>=0.5 RSS<=150 >=10x django-ca",
    ]
    for r in runs:
        ceiling = r["raw"]["certs_per_s"]  # measured just before and just after this run
        ratio = r["certs_per_s"] / ceiling
        r["ratio"] = ratio
        r["raw_certs_per_s"] = ceiling
        r["ratio_vs_start_ceiling"] = r["certs_per_s"] / raw["certs_per_s"]
        r["meets_ratio"] = ratio >= TARGET_RATIO
        r["meets_rss"] = (r["rss_peak_signer_mb"] or 0) <= TARGET_RSS_MB and (r["rss_main_mb"] or 0) <= TARGET_RSS_MB
        r["vs_django_ca"] = r["certs_per_s"] / DJANGO_CA_CERTS_PER_S
        r["meets_django_ca"] = r["vs_django_ca"] >= TARGET_VS_DJANGO_CA
        child = max(r["rss_children_mb"]) if r["rss_children_mb"] else float("nan")
        lines.append(
            f"{r['flavour']:9} {r['concurrency']:>2} {r['n']:>5} {r['submit_per_s']:>8.0f} {r['certs_per_s']:>8.0f} "
            f"{ceiling:>6.0f} {ratio:>6.3f} {r['ratio_vs_start_ceiling']:>7.3f} {r['certs_per_s_incl_boot']:>11.0f} "
            f"{r['rss_main_mb'] or 0:>6.1f}MB {child:>7.1f}MB  {_yes(r['meets_ratio']):>10} "
            f"{_yes(r['meets_rss']):>8} {_yes(r['meets_django_ca']):>4} ({r['vs_django_ca']:.1f}x)"
        )
    busy = [r for r in runs if max(r["loadavg_1m_before"], r["loadavg_1m_after"]) > 1.0]
    if busy:
        lines.append(
            f"WARNING: the machine was busy during {len(busy)} run(s) (1-min load average up to "
            f"{max(max(r['loadavg_1m_before'], r['loadavg_1m_after']) for r in busy):.1f} on {_cpus()} CPUs): "
            "those numbers are low and noisy."
        )
    lines.append(
        "portal/s = N / (last certificate stored - first intent recorded), from the database; "
        "raw/s and ratio: the mean of the ceilings measured just before and just after the run, "
        "(start): the ratio against the ceiling at the start; "
        "incl.boot/s = N / wall time from spawning the worker."
    )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=1000, help="certificates per run (default 1000)")
    parser.add_argument("--flavours", default="embedded,services")
    parser.add_argument("--concurrency", default="1,2", help="worker pool sizes to run, e.g. 1,2")
    parser.add_argument("--queues", default="signer,render", help="queues the worker consumes (default signer,render)")
    parser.add_argument("--raw-n", type=int, default=2000, help="certificates per raw-ceiling pass")
    parser.add_argument("--timeout", type=float, default=600, help="seconds to wait for one run")
    parser.add_argument(
        "--profile", type=int, default=0, metavar="N", help="also profile N in-process issuances per flavour"
    )
    args = parser.parse_args()
    flavours = [f.strip() for f in args.flavours.split(",") if f.strip()]
    concurrencies = [int(c) for c in args.concurrency.split(",") if c.strip()]

    print(
        f"raw ceiling: {args.raw_n} certificates x 3 passes (1-min load average {os.getloadavg()[0]:.2f}) ...",
        flush=True,
    )
    raw = raw_ceiling(args.raw_n)
    runs: list[dict[str, Any]] = []
    invariants: dict[str, Any] = {}
    interleaved: dict[str, Any] = {}
    for flavour in flavours:
        flavour_runs, invariants[flavour], interleaved[flavour] = run_flavour(
            flavour, args.n, concurrencies, args.timeout, args.queues, args.raw_n
        )
        runs += flavour_runs
    table = report(raw, runs)
    print()
    print(table)
    for flavour, turns in interleaved.items():
        print(
            f"in one process, the signer's drain and the ceiling in turns of 100 ({flavour}, {turns['n']}): "
            f"portal {turns['portal_certs_per_s']:.0f}/s, raw {turns['raw_certs_per_s']:.0f}/s, "
            f"ratio {turns['ratio']:.3f} (per turn: median {turns['ratio_median_turn']:.3f}, "
            f"{turns['ratio_turns_min_max'][0]:.2f}-{turns['ratio_turns_min_max'][1]:.2f})"
        )
    for flavour, inv in invariants.items():
        print(
            f"invariants ({flavour}): {'OK' if inv['ok'] else 'BROKEN'}: {inv['certificates']} certificates, "
            f"{inv['audit_events']} audit events{'' if inv['ok'] else ' ' + str(inv['problems'])}"
        )
    profiles = {}
    for flavour in flavours if args.profile else []:
        print(f"\nprofile ({flavour}, {args.profile} issuances in one process, no Celery):", flush=True)
        profiles[flavour] = run_profile(flavour, args.profile)
        print(profiles[flavour])

    OUT.mkdir(parents=True, exist_ok=True)
    result = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": _cpus(), "python": platform.python_version(), "platform": platform.platform()},
        "raw": raw,
        "runs": runs,
        "invariants": invariants,
        "interleaved": interleaved,
        "targets": {"ratio": TARGET_RATIO, "rss_mb": TARGET_RSS_MB, "vs_django_ca": TARGET_VS_DJANGO_CA},
        "profiles": profiles,
    }
    (OUT / "issuance.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {OUT / 'issuance.json'}")
    return 0


def _cpus() -> int:
    return len(os.sched_getaffinity(0))


if __name__ == "__main__":
    raise SystemExit(main())
