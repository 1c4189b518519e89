"""Enrollment benchmark: N enrollments through the HTTP API against gunicorn + workers on Redis + PostgreSQL.

Each enrollment is what a script would do: a roaming user registers a peer with a CSR
(POST /api/v1/peers), a CA admin approves it (POST /api/v1/peers/{id}/approve), and the user
polls GET /api/v1/peers/{id} until it is issued. C client threads run enrollments concurrently.

    python bench/enrollment.py [--n 1000] [--clients 20] [--web-workers 3] [--concurrency 2]

Prints throughput and p50/p95 of POST /api/v1/peers and GET /api/v1/peers/{id}; targets
(issue "Enrollment and approval"): all N issued within 60 s, p95 < 100 ms for both requests.
Not part of the test suite.
"""

from __future__ import annotations

import argparse
import http.client
import json
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.integration.stack import PYTHON, Stack  # noqa: E402

CSR = (ROOT / "tests" / "fixtures" / "pki" / "client-nocn.csr").read_text()
USERS_SCRIPT = """
from django.contrib.auth.models import Group, User
from rest_framework.authtoken.models import Token
alice = User.objects.create_user("alice", "alice@example.org", "bench-password-1")
carol = User.objects.create_user("carol", "carol@example.org", "bench-password-2")
carol.groups.add(Group.objects.get(name="ca-admin"))
print(Token.objects.create(user=alice).key, Token.objects.create(user=carol).key)
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


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


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--web-workers", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=2, help="Celery pool processes")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="ca_portal_bench_") as tmp:
        stack = Stack(Path(tmp), "services")
        stack.setup()
        serve = None
        try:
            user_token, admin_token = stack.manage("shell", "-c", USERS_SCRIPT).stdout.split()[-2:]
            # Bench the portal as deployed: no 2FA on API tokens, default everything else.
            port = free_port()
            serve = subprocess.Popen(
                [PYTHON, str(ROOT / "manage.py"), "serve", "--host", "127.0.0.1", "--port", str(port),
                 "--web-workers", str(args.web_workers), "--concurrency", str(args.concurrency)],
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

            post_times: list[float] = []
            get_times: list[float] = []
            errors: list[str] = []
            done = [0]
            lock = threading.Lock()
            counter = iter(range(args.n))

            def client() -> None:
                while True:
                    with lock:
                        i = next(counter, None)
                    if i is None:
                        return
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

            started = time.monotonic()
            threads = [threading.Thread(target=client) for _ in range(args.clients)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            elapsed = time.monotonic() - started
        finally:
            if serve is not None and serve.poll() is None:
                serve.send_signal(signal.SIGINT)
                try:
                    serve.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    serve.kill()
            stack.teardown()

    result = {
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
    print(
        f"enrollments: {done[0]}/{args.n} issued in {elapsed:.1f} s "
        f"({result['enrollments_per_s']}/s), {len(errors)} errors"
    )
    print(f"POST /api/v1/peers      p50 {result['post_p50_ms']:7.1f} ms   p95 {result['post_p95_ms']:7.1f} ms")
    print(f"GET  /api/v1/peers/{{id}} p50 {result['get_p50_ms']:7.1f} ms   p95 {result['get_p95_ms']:7.1f} ms")
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
