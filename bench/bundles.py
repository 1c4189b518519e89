"""Bundles: render + zip per bundle against the raw zip ceiling, then 1,000 re-renders by real workers.

    python bench/bundles.py [--n 1000] [--flavours services,embedded] [--concurrency 2]

Part 1 (pure, in this process): for N peers of the case study's site (different FQDNs, networks
and certificates), the time to render every file (isakmpd.conf, the KeyNote policy, pf/ipf, iked,
swanctl, README, install.sh) and zip the bundle deterministically (``render_files`` + ``finish``
+ ``build_zip``), p50 and p95, next to the raw ceiling measured in the same run: zipping the same
rendered bytes with ``zipfile.writestr`` and nothing else (8 files, deflate).

Part 2 (per flavour, real processes): a gateway and N issued clients in a fresh database; a real
``celery worker -Q render -c C`` renders every bundle (the sweeper fans out one task per peer);
then a suite change through ``profile_update`` makes all N + 1 bundles stale and the clock runs
until every one is re-rendered (a new version, read from the database). Targets (issue "Bundles"):
p50 <= 15 ms per bundle; 1,000 bundles re-rendered in <= 30 s on 2 cores.
Results go to stdout and bench/out/bundles.json. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import platform
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bundles.archive import build_zip  # noqa: E402
from bundles.renderers import engine  # noqa: E402
from bundles.renderers.bundle import finish, render_files  # noqa: E402
from bundles.renderers.spec import SUITES  # noqa: E402
from devtools import bundlecase  # noqa: E402
from devtools.stack import PYTHON, Stack  # noqa: E402

OUT = ROOT / "bench" / "out"
TARGET_P50_MS = 15.0
TARGET_RERENDER_S = 30.0


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


# --- part 1: pure render + zip against the raw zip ceiling -----------------------------------------


def pure(n: int) -> dict[str, Any]:
    env = engine.environment()
    site = bundlecase.site()
    base = bundlecase.client_peer()
    peers = [
        dataclasses.replace(base, fqdn=f"peer{i}.example.com", networks=(f"10.{i // 256 % 256}.{i % 256}.0/24",))
        for i in range(n)
    ]
    render_files(env, site, peers[0])  # compile the templates once, as a worker does at its first task
    portal: list[float] = []
    rendered: list[list[tuple[str, bytes]]] = []
    for peer in peers:
        start = time.perf_counter()
        files = finish(render_files(env, site, peer))
        build_zip(peer.fqdn, files)
        portal.append((time.perf_counter() - start) * 1000)
        rendered.append([(f"{peer.fqdn}/{f.path}", f.content) for f in files])
    ceiling: list[float] = []
    for entries in rendered:
        start = time.perf_counter()
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            for name, content in entries[:8]:
                archive.writestr(name, content)
        buffer.getvalue()
        ceiling.append((time.perf_counter() - start) * 1000)
    result = {
        "n": n,
        "files_per_bundle": len(rendered[0]),
        "portal_p50_ms": statistics.median(portal),
        "portal_p95_ms": _pct(portal, 0.95),
        "ceiling_p50_ms": statistics.median(ceiling),
        "ceiling_p95_ms": _pct(ceiling, 0.95),
    }
    result["ratio_p50"] = result["ceiling_p50_ms"] / result["portal_p50_ms"]
    return result


# --- part 2: real workers re-render N + 1 bundles after a suite change --------------------------------

SEED = """
import time
from django.contrib.auth.models import Group, User
from authority import keystore
from authority.services import certificates_issue_pending
from enrollment.services import peer_approve, peer_register
keystore.enable_signing()
alice = User.objects.create_user("alice", "alice@example.org", "bench-password-1")
carol = User.objects.create_user("carol", "carol@example.org", "bench-password-2")
dave = User.objects.create_user("dave", "dave@example.org", "bench-password-3")
for u in (carol, dave):
    u.groups.add(Group.objects.get(name="ca-admin"))
csr = open("tests/fixtures/pki/client-nocn.csr").read()
gw = peer_register(owner=carol, fqdn="www.example.com", kind="server", networks=["10.1.1.0/24"],
                   address="192.0.34.72", csr_pem=csr, actor=carol)
peer_approve(peer_id=gw.pk, approver=dave, actor=dave, enqueue=False)
for i in range(N):
    nets = [f"10.{100 + i // 256}.{i % 256}.0/24"] if i % 2 else []
    p = peer_register(owner=alice, fqdn=f"peer{i}.example.com", kind="client", networks=nets, address=None,
                      csr_pem=csr, actor=alice)
    peer_approve(peer_id=p.pk, approver=carol, actor=carol, enqueue=False)
certificates_issue_pending()
print("seeded")
"""

CHANGE = """
from django.contrib.auth.models import User
from bundles.services import profile_update
profile_update(actor=User.objects.get(username="carol"), suite="aes256-sha384-ecp384")
print("changed")
"""


# How many peers have a bundle rendered from at least generation 1 (first render) or 2 (after the change).
COUNT_SQL = {
    1: "SELECT count(DISTINCT peer_id) FROM bundles_bundle WHERE site_generation >= 1",
    2: "SELECT count(DISTINCT peer_id) FROM bundles_bundle WHERE site_generation >= 2",
}


def _count(stack: Stack, sql: str) -> int:
    if stack.flavour == "services":
        import psycopg

        with psycopg.connect(stack.env["DATABASE_URL"], autocommit=True) as conn:
            row = conn.execute(sql).fetchone()  # type: ignore[arg-type]
    else:
        with sqlite3.connect(stack.var / "ca_portal.sqlite3", timeout=30) as conn:
            row = conn.execute(sql).fetchone()
    return int(row[0]) if row else 0


def _wait(stack: Stack, sql: str, target: int, timeout: float) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if _count(stack, sql) >= target:
            return time.monotonic() - start
        time.sleep(0.1)
    raise SystemExit(f"timed out: {_count(stack, sql)}/{target} after {timeout:.0f} s; see {stack.worker_log}")


def _queued(stack: Stack) -> int:
    """Messages waiting in, or taken but not yet acknowledged from, the stack's broker."""
    if stack.flavour == "services":
        import redis

        client = redis.Redis.from_url(stack.env["REDIS_URL"])
        return int(client.llen("render")) + int(client.hlen("unacked"))
    return sum(1 for _ in (stack.var / "broker" / "queue").glob("*.render.msg"))


def _drain(stack: Stack, timeout: float) -> float:
    """Wait until the worker has worked off what seeding left queued (the issuance notices), so that
    the re-render below is timed on its own."""
    start = time.monotonic()
    quiet = 0
    while quiet < 3:
        quiet = quiet + 1 if _queued(stack) == 0 else 0
        if time.monotonic() - start > timeout:
            raise SystemExit(f"the queue did not drain: {_queued(stack)} messages after {timeout:.0f} s")
        time.sleep(0.3)
    return time.monotonic() - start


def workers(flavour: str, n: int, concurrency: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-bundles-") as tmp:
        stack = Stack(Path(tmp), flavour)
        stack.setup()
        try:
            seeded = subprocess.run(
                [PYTHON, "manage.py", "shell", "-c", SEED.replace("range(N)", f"range({n})")],
                env=stack.env,
                cwd=ROOT,
                capture_output=True,
                text=True,
                check=False,
            )
            if "seeded" not in seeded.stdout:
                raise SystemExit(f"seeding failed:\n{seeded.stdout}\n{seeded.stderr[-3000:]}")
            start = time.monotonic()
            stack.start_worker(concurrency=concurrency, queues="render", loglevel="WARNING", wait=False)
            # The first render of everything: the sweeper is what a worker's beat (or an issuance) wakes.
            stack.manage("shell", "-c", "from bundles.services import bundles_render_stale; bundles_render_stale()")
            first = _wait(stack, COUNT_SQL[1], n + 1, timeout=600)
            first_wall = time.monotonic() - start
            drained = _drain(stack, timeout=600)
            stack.manage("shell", "-c", CHANGE)
            rerender = _wait(stack, COUNT_SQL[2], n + 1, timeout=600)
            return {
                "flavour": flavour,
                "concurrency": concurrency,
                "bundles": n + 1,
                "first_render_s": first,
                "first_render_wall_s": first_wall,
                "drain_s": drained,
                "rerender_s": rerender,
                "rerender_per_s": (n + 1) / rerender,
            }
        finally:
            stack.teardown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--flavours", default="services,embedded")
    parser.add_argument("--concurrency", type=int, default=2)
    args = parser.parse_args()

    results: dict[str, Any] = {"machine": platform.platform(), "python": platform.python_version()}
    one = pure(args.n)
    results["pure"] = one
    suite = SUITES["aes256-sha256-modp2048"].key
    print(f"render + zip, {one['n']} bundles of {one['files_per_bundle']} files (suite {suite}):")
    portal_line = f"  portal  p50 {one['portal_p50_ms']:.2f} ms  p95 {one['portal_p95_ms']:.2f} ms"
    print(f"{portal_line}  (target p50 <= {TARGET_P50_MS} ms)")
    ceiling_line = f"  ceiling p50 {one['ceiling_p50_ms']:.2f} ms  p95 {one['ceiling_p95_ms']:.2f} ms"
    print(f"{ceiling_line}  (raw zipfile.writestr of 8 files)")
    print(f"  ratio ceiling/portal at p50: {one['ratio_p50']:.2f}")
    results["workers"] = []
    for flavour in [f for f in args.flavours.split(",") if f]:
        run = workers(flavour, args.n, args.concurrency)
        results["workers"].append(run)
        print(
            f"{flavour}: {run['bundles']} bundles, {run['concurrency']} render processes: first render "
            f"{run['first_render_s']:.1f} s (then {run['drain_s']:.1f} s to work off the issuance notices); "
            f"after a suite change all re-rendered in {run['rerender_s']:.1f} s "
            f"({run['rerender_per_s']:.0f}/s; target <= {TARGET_RERENDER_S:.0f} s)"
        )
    OUT.mkdir(exist_ok=True)
    (OUT / "bundles.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
