"""Enrollment benchmark: N enrollments through the HTTP API against gunicorn + workers on Redis + PostgreSQL.

Each enrollment is what a script would do: a roaming user registers a peer with a CSR
(POST /api/v1/peers), a CA admin approves it (POST /api/v1/peers/{id}/approve), and the user
polls GET /api/v1/peers/{id} every 100 ms until it is issued. C client threads run enrollments
concurrently, in one of two ways:

- closed loop (the default): each client starts its next enrollment as soon as the last one is
  issued. This finds the portal's capacity; the portal is saturated by construction, so each
  request's latency is about C / (requests per second) (Little's law), queueing included.
- paced (``--rate R``): enrollment j is due R/s apart (j / R seconds after the start); the next
  free client takes it when it is due, or at once if it is late. This measures the latency at a
  given load, e.g. the issue's 1,000 enrollments within 60 s (``--rate 20`` gives 50 s). How late
  the enrollments started is printed too: a portal that cannot keep up shows there, not hidden.

    python bench/enrollment.py [--n 1000] [--clients 20] [--rate R] [--gateway] [--web-workers 3] [--concurrency 2]

``--gateway`` issues a VPN gateway first, so that each issuance also renders bundles (the new
peer's, and the gateway's with its growing remote_id list), and reports when they caught up.

Prints throughput and p50/p95 of POST /api/v1/peers and GET /api/v1/peers/{id}; targets
(issue "Enrollment and approval"): all N issued within 60 s, p95 < 100 ms for both requests.
Not part of the test suite.
"""

from __future__ import annotations

import argparse
import http.client
import json
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from devtools.stack import PYTHON, Stack, free_port  # noqa: E402

CSR = (ROOT / "tests" / "fixtures" / "pki" / "client-nocn.csr").read_text()
USERS_SCRIPT = """
from django.contrib.auth.models import Group, User
from rest_framework.authtoken.models import Token
alice = User.objects.create_user("alice", "alice@example.org", "bench-password-1")
carol = User.objects.create_user("carol", "carol@example.org", "bench-password-2")
dave = User.objects.create_user("dave", "dave@example.org", "bench-password-3")
for admin in (carol, dave):
    admin.groups.add(Group.objects.get(name="ca-admin"))
print(Token.objects.create(user=alice).key, Token.objects.create(user=carol).key, Token.objects.create(user=dave).key)
"""


class Api:
    def __init__(self, port: int, token: str) -> None:
        self.port, self.token = port, token

    def call(self, method: str, path: str, body: object | None = None) -> tuple[int, dict, float]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        headers = {"Authorization": f"Token {self.token}", "Accept": "application/json"}
        payload = None
        if body is not None:
            payload = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        started = time.perf_counter()
        conn.request(method, path, body=payload, headers=headers)
        response = conn.getresponse()
        data = response.read()
        elapsed = time.perf_counter() - started
        conn.close()
        return response.status, (json.loads(data) if data else {}), elapsed


def setup_gateway(admin: Api, second_admin: Api) -> None:
    """The case study's gateway, registered by one CA admin and approved by another, issued before
    the clock starts: from then on every issuance also renders the new peer's bundle and the
    gateway's (its KeyNote remote_id list grows), as on a real site."""
    body = {"fqdn": "www.example.com", "kind": "server", "networks": ["10.1.1.0/24"], "address": "192.0.34.72",
            "csr": CSR}  # fmt: skip
    status, peer, _ = admin.call("POST", "/api/v1/peers", body)
    if status != 201:
        raise SystemExit(f"the gateway was not registered: {status} {peer}")
    status, data, _ = second_admin.call("POST", f"/api/v1/peers/{peer['id']}/approve", {})
    if status != 200:
        raise SystemExit(f"the gateway was not approved: {status} {data}")
    deadline = time.monotonic() + 30
    while admin.call("GET", f"/api/v1/peers/{peer['id']}")[1].get("status") != "issued":
        if time.monotonic() > deadline:
            raise SystemExit("the gateway was not issued within 30 s")
        time.sleep(0.2)


def bundles_caught_up(stack: Stack, peers: int, timeout: float = 120) -> float:
    """Seconds after the last issuance until every issued peer (and the gateway) has a bundle."""
    import psycopg

    start = time.monotonic()
    while True:
        with psycopg.connect(stack.env["DATABASE_URL"], autocommit=True) as conn:
            row = conn.execute("SELECT count(DISTINCT peer_id) FROM bundles_bundle").fetchone()
        if row is not None and row[0] >= peers:
            return time.monotonic() - start
        if time.monotonic() - start > timeout:
            raise SystemExit(f"only {row[0] if row else 0} of {peers} peers had a bundle after {timeout:.0f} s")
        time.sleep(0.2)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--web-workers", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=2, help="Celery pool processes")
    parser.add_argument("--rate", type=float, default=None, help="paced: enrollments per second (default: closed loop)")
    parser.add_argument("--worker-nice", type=int, default=None, help="the worker's niceness (default: serve's, 10)")
    parser.add_argument(
        "--gateway", action="store_true", help="issue a VPN gateway first, so that every issuance also renders bundles"
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="ca_portal_bench_") as tmp:
        stack = Stack(Path(tmp), "services")
        stack.setup()
        serve = None
        try:
            user_token, admin_token, second_admin_token = stack.manage("shell", "-c", USERS_SCRIPT).stdout.split()[-3:]
            # Bench the portal as deployed: no 2FA on API tokens, default everything else.
            port = free_port()
            serve = subprocess.Popen(
                [PYTHON, str(ROOT / "manage.py"), "serve", "--host", "127.0.0.1", "--port", str(port),
                 "--web-workers", str(args.web_workers), "--concurrency", str(args.concurrency),
                 *(["--worker-nice", str(args.worker_nice)] if args.worker_nice is not None else [])],
                env=stack.env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
            user, admin = Api(port, user_token), Api(port, admin_token)
            deadline = time.monotonic() + 30
            while True:
                try:
                    if user.call("GET", "/healthz")[0] == 200:
                        break
                except OSError:
                    pass
                if time.monotonic() > deadline:
                    raise SystemExit("the portal did not come up")
                time.sleep(0.2)
            if args.gateway:
                setup_gateway(admin, Api(port, second_admin_token))

            post_times: list[float] = []
            get_times: list[float] = []
            errors: list[str] = []
            done = [0]
            lock = threading.Lock()
            counter = iter(range(args.n))

            lateness: list[float] = []

            def client() -> None:
                while True:
                    with lock:
                        i = next(counter, None)
                    if i is None:
                        return
                    if args.rate:
                        due = started + i / args.rate
                        wait = due - time.monotonic()
                        if wait > 0:
                            time.sleep(wait)
                        with lock:
                            lateness.append(max(0.0, -wait))
                    body = {"fqdn": f"bench{i}.example.com", "kind": "client", "networks": [], "csr": CSR}
                    status, peer, took = user.call("POST", "/api/v1/peers", body)
                    with lock:
                        post_times.append(took)
                    if status != 201:
                        errors.append(f"POST {status} {peer}")
                        continue
                    status, _, _ = admin.call("POST", f"/api/v1/peers/{peer['id']}/approve", {})
                    if status != 200:
                        errors.append(f"approve {status}")
                        continue
                    while True:
                        status, data, took = user.call("GET", f"/api/v1/peers/{peer['id']}")
                        with lock:
                            get_times.append(took)
                        if data.get("status") in ("issued", "failed"):
                            if data["status"] != "issued":
                                errors.append(f"peer {peer['id']} failed")
                            with lock:
                                done[0] += 1
                            break
                        time.sleep(0.1)

            self_before = sum(resource.getrusage(resource.RUSAGE_SELF)[:2])
            children_before = sum(resource.getrusage(resource.RUSAGE_CHILDREN)[:2])  # setup and seeding
            started = time.monotonic() + (0.2 if args.rate else 0.0)  # paced: zero once every thread runs
            threads = [threading.Thread(target=client) for _ in range(args.clients)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            elapsed = time.monotonic() - started
            bundles_lag = bundles_caught_up(stack, args.n + 1) if args.gateway else None
        finally:
            if serve is not None and serve.poll() is None:
                serve.send_signal(signal.SIGINT)
                try:
                    serve.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    serve.kill()
            stack.teardown()

    # Where the two cores went: the benchmark's own client threads, and the portal's processes
    # (gunicorn, the Celery workers; reaped above, so their time is counted). PostgreSQL and Redis
    # are the rest. The portal's figure includes its start-up (imports, forks: about 2 s).
    clients_cpu = sum(resource.getrusage(resource.RUSAGE_SELF)[:2]) - self_before
    portal_cpu = sum(resource.getrusage(resource.RUSAGE_CHILDREN)[:2]) - children_before
    result = {
        "mode": (f"paced at {args.rate:g}/s" if args.rate else "closed loop")
        + (", with a gateway" if args.gateway else ""),
        "bundles_lag_s": round(bundles_lag, 1) if bundles_lag is not None else None,
        "late_p95_ms": round(pct(lateness, 0.95), 1) if lateness else None,
        "late_max_ms": round(max(lateness) * 1000, 1) if lateness else None,
        "clients_cpu_s": round(clients_cpu, 1),
        "portal_cpu_s": round(portal_cpu, 1),
        "n": args.n,
        "clients": args.clients,
        "issued": done[0],
        "errors": len(errors),
        "seconds": round(elapsed, 2),
        "enrollments_per_s": round(done[0] / elapsed, 1),
        "post_p50_ms": round(pct(post_times, 0.50), 1),
        "post_p95_ms": round(pct(post_times, 0.95), 1),
        "get_p50_ms": round(pct(get_times, 0.50), 1),
        "get_p95_ms": round(pct(get_times, 0.95), 1),
        "get_requests": len(get_times),
        "post_mean_ms": round(statistics.mean(post_times) * 1000, 1) if post_times else None,
    }
    print(f"mode: {result['mode']}, {args.clients} clients")
    if lateness:
        print(f"enrollments started late by: p95 {result['late_p95_ms']} ms, max {result['late_max_ms']} ms")
    print(
        f"enrollments: {done[0]}/{args.n} issued in {elapsed:.1f} s "
        f"({result['enrollments_per_s']}/s), {len(errors)} errors"
    )
    print(f"POST /api/v1/peers      p50 {result['post_p50_ms']:7.1f} ms   p95 {result['post_p95_ms']:7.1f} ms")
    print(f"GET  /api/v1/peers/{{id}} p50 {result['get_p50_ms']:7.1f} ms   p95 {result['get_p95_ms']:7.1f} ms")
    if bundles_lag is not None:
        print(f"bundles: every issued peer had one {bundles_lag:.1f} s after the last issuance")
    print(
        f"CPU: benchmark clients {clients_cpu:.1f} s, portal processes {portal_cpu:.1f} s "
        f"(2 cores x {elapsed:.1f} s = {2 * elapsed:.1f} s)"
    )
    ok_time = done[0] == args.n and elapsed <= 60
    ok_p95 = result["post_p95_ms"] < 100 and result["get_p95_ms"] < 100
    print(
        f"targets: all issued within 60 s: {'met' if ok_time else 'MISSED'}; "
        f"p95 < 100 ms: {'met' if ok_p95 else 'MISSED'}"
    )
    for line in errors[:10]:
        print("  error:", line)
    out = ROOT / "bench" / "out"
    out.mkdir(exist_ok=True)
    (out / "enrollment.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
