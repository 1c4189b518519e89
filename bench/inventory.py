"""The auditor's inventory at scale: page and search latency over HTTP, the CSV export, and the CRL.

    python bench/inventory.py [--n 100000] [--requests 200] [--exports 2] [--crl-passes 3]

A fresh PostgreSQL database (``Stack("services")``: migrate + import_ca of the fixture RSA-2048
CA) is seeded with N issued certificates in bulk SQL (one COPY into a temporary table, then one
INSERT ... SELECT per table; not through the signer): a CertificateRequest and a Certificate per
row (distinct random 159-bit serials, FQDN host<i>.example.com, issued over the last year with
ids in issue order, valid 730 days (94 %), 365 days (4 %) or 180 days (2 %), so a few hundred
expire within 30 days and about 1 % have expired, about 10 % revoked with a reason), an
enrollment Peer for 95 % of them (the rest were signed on the CA host and belong to whoever
requested them), owners spread over 200 users, the same real certificate DER in every row
(fingerprints are distinct fake hex) and the same real CSR. Then VACUUM ANALYZE, as a settled
database would be. No audit events: the inventory pages do not read them.

1. gunicorn (``--workers 2``, as deployed) serves the portal; the auditor erin signs in through
   the login form (CSRF cookie + token; auditors need no TOTP). Sequentially, ``--requests``
   requests per case after 5 warm-up requests, each on a new connection (gunicorn's sync workers
   do not keep connections alive): p50/p95 of /audit/certificates/ (first page, page 50, an FQDN
   substring, a serial prefix, an owner's name, status=revoked, expiring_within=30, sort=expires
   both ways). Target: p95 < 150 ms. Beside each, before gunicorn starts: ``inventory_page`` alone
   in one process (its queries, no HTTP, session, middleware or template), ``--selector-calls``
   calls per case, so the page time can be split into the database's share and the rest.
2. The CSV export of all N (/audit/certificates/export.csv, streamed), twice: rows counted, time
   to first byte and to the last one, and the VmRSS of every gunicorn worker sampled every 100 ms
   (start and peak: the export must not grow with N). Target: <= 10 s.
3. The CRL, in a ``manage.py shell`` with ``keystore.enable_signing()`` (gunicorn stopped):
   ``revocation.crl_publish`` (lock the CA row, read the revoked certificates that have not expired,
   build, sign, check the signature, store, audit), best of ``--crl-passes``, next to the raw
   ceiling of bench/crl.py measured in the same process on the same entries (cryptography's
   ``CertificateRevocationListBuilder`` given the list at once, signed, DER; no database read, no
   checks); ``revoked_entries`` (the database read) and ``build_crl`` (build, sign, check) are also
   timed apart. First with the seeded ~10 % revoked, then after one UPDATE revokes every certificate
   (the expired ones drop off the CRL, as RFC 5280 allows). ratio = ceiling / portal. Target: the
   100,000-certificate CRL in <= 5 s.

Results go to stdout and bench/out/inventory.json, with the 1-minute load average at each step
(the machine may be running other work). The database is dropped at the end. Not part of the
test suite.
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import os
import platform
import random
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cryptography import x509  # noqa: E402
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID  # noqa: E402

from devtools.stack import BIN, FIXTURES, Stack, free_port, stop_group, wait_healthy  # noqa: E402

OUT = ROOT / "bench" / "out"
TARGET_P95_MS = 150.0
TARGET_EXPORT_S = 10.0
TARGET_CRL_S = 5.0
WARMUP = 5
OWNERS = 200
AUDITOR, AUDITOR_PASSWORD = "erin", "bench-auditor-password-1"
REASONS = [
    "unspecified",
    "keyCompromise",
    "affiliationChanged",
    "superseded",
    "cessationOfOperation",
    "privilegeWithdrawn",
]
CSR_PEM = (FIXTURES / "client-nocn.csr").read_text()


def _load() -> float:
    return os.getloadavg()[0]


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


# --- the database ----------------------------------------------------------------------------


# --- the seed --------------------------------------------------------------------------------

USERS_SCRIPT = f"""
import json
from django.contrib.auth.hashers import make_password
from django.contrib.auth.models import Group, User
erin = User.objects.create_user("{AUDITOR}", "erin@example.org", "{AUDITOR_PASSWORD}")
erin.groups.add(Group.objects.get(name="auditor"))
carol = User.objects.create_user("carol", "carol@example.org", None)
carol.groups.add(Group.objects.get(name="ca-admin"))
owners = User.objects.bulk_create(
    [User(username=f"user{{i:03d}}", email=f"user{{i:03d}}@example.org", password=make_password(None))
     for i in range({OWNERS})]
)
print(json.dumps({{"approver": carol.pk, "owners": [u.pk for u in owners]}}))
"""

SEED_COLUMNS = (
    "i bigint, serial text, fingerprint text, fqdn text, kind text, owner_id int, via_peer bool, "
    "created_at timestamptz, issued_at timestamptz, not_before timestamptz, not_after timestamptz, "
    "validity_days int, revoked_at timestamptz, reason text, networks text, address text"
)

SEED_SQL = [
    """
    INSERT INTO authority_certificaterequest (id, ca_id, fqdn, kind, csr_pem, public_key_der, key_type,
        validity_days, status, failure_reason, requested_by_id, approved_by_id, created_at, queued_at, attempts,
        announce_issued)
    SELECT i, %(ca)s, fqdn, kind, %(csr)s, %(public_key)s, 'rsa-2048', validity_days, 'issued', '', owner_id,
        %(approver)s, created_at, created_at, 1, via_peer
    FROM seed ORDER BY i
    """,
    """
    INSERT INTO authority_certificate (id, ca_id, request_id, serial, fqdn, der, fingerprint_sha256, not_before,
        not_after, issued_at, revoked_at, revocation_reason, revoked_by, revocation_comment)
    SELECT i, %(ca)s, i, serial, fqdn, %(der)s, fingerprint, not_before, not_after, issued_at, revoked_at,
        coalesce(reason, ''), CASE WHEN revoked_at IS NULL THEN '' ELSE 'user:carol' END, ''
    FROM seed ORDER BY i
    """,
    """
    INSERT INTO enrollment_peer (id, fqdn, kind, networks, address, csr_pem, decision, decided_at,
        decision_reason, created_at, certificate_request_id, decided_by_id, owner_id, key_source, retired_at,
        renews_id)
    SELECT i, fqdn, kind, networks::jsonb, address::inet, %(csr)s, 'approved', created_at, '',
        created_at - interval '20 minutes', i, %(approver)s, owner_id, 'csr', revoked_at, NULL
    FROM seed WHERE via_peer ORDER BY i
    """,
]
SEQUENCES = ("authority_certificaterequest", "authority_certificate", "enrollment_peer")


def sample_certificate_der() -> bytes:
    """One real leaf of the fixture CA (the portal's client profile, roughly): what every row stores."""
    ca_cert = x509.load_pem_x509_certificate((FIXTURES / "ca-rsa2048.crt").read_bytes())
    ca_key = serialization.load_pem_private_key((FIXTURES / "ca-rsa2048.key").read_bytes(), password=None)
    public_key = x509.load_pem_x509_csr(CSR_PEM.encode()).public_key()
    now = datetime.now(UTC).replace(microsecond=0)
    ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "host1.example.com")]))
        .issuer_name(ca_cert.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + timedelta(days=730))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("host1.example.com")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.IPSEC_IKE]), critical=False
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False)
        .add_extension(
            x509.CRLDistributionPoints(
                [
                    x509.DistributionPoint(
                        [x509.UniformResourceIdentifier("https://ca.example.org/crl.der")], None, None, None
                    )
                ]
            ),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())  # type: ignore[arg-type]
    )
    return cert.public_bytes(serialization.Encoding.DER)


def seed_rows(n: int, owners: list[int], now: datetime, seed: int) -> Iterator[tuple[Any, ...]]:
    """N rows for the seed table, ids in issue order (as the signer would have made them)."""
    rng = random.Random(seed)
    issued = sorted(now - timedelta(seconds=rng.uniform(60, 365 * 86400)) for _ in range(n))
    serials: set[int] = set()
    for i, issued_at in enumerate(issued, start=1):
        serial = rng.getrandbits(159)
        while serial == 0 or serial in serials:
            serial = rng.getrandbits(159)
        serials.add(serial)
        serial_hex = f"{serial:x}"
        draw = rng.random()
        days = 180 if draw < 0.02 else 365 if draw < 0.06 else 730
        not_before = (issued_at - timedelta(hours=1)).replace(microsecond=0)
        created_at = issued_at - timedelta(seconds=rng.uniform(0.5, 4 * 3600))
        revoked_at = reason = None
        if rng.random() < 0.10:
            revoked_at = (issued_at + (now - issued_at) * rng.random()).replace(microsecond=0)
            reason = REASONS[rng.randrange(len(REASONS))]
        kind = "server" if i % 250 == 0 else "client"
        networks = json.dumps([f"10.{i // 256 % 256}.{i % 256}.0/24"] if i % 10 == 0 else [])
        yield (
            i,
            serial_hex,
            hashlib.sha256(serial_hex.encode()).hexdigest(),  # a distinct fake fingerprint per row
            f"host{i}.example.com",
            kind,
            owners[rng.randrange(len(owners))],
            rng.random() < 0.95,
            created_at,
            issued_at,
            not_before,
            not_before + timedelta(days=days),
            days,
            revoked_at,
            reason,
            networks,
            f"192.0.2.{i % 254 + 1}" if kind == "server" else None,
        )


def seed(stack: Stack, n: int, seed_value: int) -> dict[str, Any]:
    import psycopg
    from psycopg import sql

    started = time.perf_counter()
    users = json.loads(stack.manage("shell", "-c", USERS_SCRIPT).stdout.strip().splitlines()[-1])
    der = sample_certificate_der()
    csr = x509.load_pem_x509_csr(CSR_PEM.encode())
    public_key = csr.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    now = datetime.now(UTC)
    dsn = stack.env["DATABASE_URL"]
    with psycopg.connect(dsn) as conn:
        ca = conn.execute("SELECT id FROM authority_certificateauthority WHERE is_active").fetchone()
        assert ca is not None
        conn.execute(f"CREATE TEMP TABLE seed ({SEED_COLUMNS}) ON COMMIT DROP")
        with conn.cursor() as cursor, cursor.copy("COPY seed FROM STDIN") as copy:
            for row in seed_rows(n, users["owners"], now, seed_value):
                copy.write_row(row)
        params = {"ca": ca[0], "csr": CSR_PEM, "public_key": public_key, "der": der, "approver": users["approver"]}
        for statement in SEED_SQL:
            conn.execute(statement, params)
        for table in SEQUENCES:
            conn.execute(
                sql.SQL("SELECT setval(pg_get_serial_sequence({name}, 'id'), (SELECT max(id) FROM {table}))").format(
                    name=sql.Literal(table), table=sql.Identifier(table)
                )
            )
    inserted = time.perf_counter() - started
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")
        facts = conn.execute(
            """
            SELECT count(*), count(revoked_at), count(*) FILTER (WHERE not_after <= now()),
                count(*) FILTER (WHERE revoked_at IS NULL AND not_after > now()
                                 AND not_after <= now() + interval '30 days'),
                (SELECT count(*) FROM enrollment_peer), pg_total_relation_size('authority_certificate')
            FROM authority_certificate
            """
        ).fetchone()
        sample = conn.execute("SELECT serial FROM authority_certificate WHERE id = %s", (max(1, n // 3),)).fetchone()
    assert facts is not None
    assert sample is not None
    return {
        "n": n,
        "certificates": facts[0],
        "revoked": facts[1],
        "expired": facts[2],
        "expiring_30": facts[3],
        "peers": facts[4],
        "owners": len(users["owners"]),
        "certificate_table_mb": facts[5] / 1e6,
        "der_bytes": len(der),
        "insert_s": inserted,
        "seed_s": time.perf_counter() - started,
        "sample_serial": sample[0],
    }


# --- HTTP ------------------------------------------------------------------------------------


class Browser:
    """A cookie jar over http.client: one new connection per request, as gunicorn's sync workers close them."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.cookies: dict[str, str] = {}

    def _send(
        self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
    ) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
        all_headers = dict(headers or {})
        if self.cookies:
            all_headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        conn.request(method, path, body=body, headers=all_headers)
        response = conn.getresponse()
        for header in response.headers.get_all("Set-Cookie") or []:
            name, _, value = header.split(";", 1)[0].partition("=")
            self.cookies[name.strip()] = value.strip()
        return conn, response

    def get(self, path: str) -> tuple[int, bytes, float]:
        started = time.perf_counter()
        conn, response = self._send("GET", path)
        data = response.read()
        elapsed = time.perf_counter() - started
        conn.close()
        return response.status, data, elapsed

    def login(self, username: str, password: str) -> None:
        status, page, _ = self.get("/login/")
        match = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', page)
        if status != 200 or match is None or "csrftoken" not in self.cookies:
            raise SystemExit(f"no login form with a CSRF token at /login/ ({status})")
        body = urlencode(
            {"csrfmiddlewaretoken": match.group(1).decode(), "username": username, "password": password, "next": ""}
        ).encode()
        conn, response = self._send("POST", "/login/", body, {"Content-Type": "application/x-www-form-urlencoded"})
        response.read()
        conn.close()
        if response.status != 302 or "sessionid" not in self.cookies:
            raise SystemExit(f"signing in as {username} failed: {response.status}")


def start_gunicorn(stack: Stack, port: int, log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as sink:
        web = subprocess.Popen(
            [str(BIN / "gunicorn"), "ca_portal.wsgi:application", "--bind", f"127.0.0.1:{port}", "--workers", "2"],
            env=stack.env,  # no CA key passphrase path: the web tier never signs
            cwd=ROOT,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    wait_healthy(f"http://127.0.0.1:{port}", web, log, timeout=60)
    deadline = time.monotonic() + 60
    # Both workers up: the master lists them as its children.
    while len(_children(web.pid)) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    return web


def _summary(page: bytes) -> str:
    match = re.search(rb'<p id="summary">(.*?)</p>', page, re.S)
    return re.sub(r"\s+", " ", match.group(1).decode()) if match else "(no summary)"


def page_cases(n: int, sample_serial: str) -> list[tuple[str, dict[str, Any], bytes]]:
    """(label, query, a byte string the first response must contain)."""
    host = f"host{12345 if n >= 12345 else max(1, n // 2)}"
    prefix = sample_serial[:6]
    return [
        ("first page", {}, b"data-serial="),
        ("page 50", {"page": 50}, b"Page 50"),
        (f"FQDN substring q={host}", {"q": host}, f"{host}.example.com".encode()),
        (f"serial prefix q={prefix}", {"q": prefix}, f'data-serial="{sample_serial}"'.encode()),
        ("owner q=user042", {"q": "user042"}, b"user042"),
        ("status=revoked", {"status": "revoked"}, b"status-revoked"),
        ("expiring_within=30", {"expiring_within": 30}, b"status-valid"),
        ("sort=expires", {"sort": "expires"}, b"data-serial="),
        ("sort=expires&dir=asc", {"sort": "expires", "dir": "asc"}, b"data-serial="),
    ]


SELECTOR_SCRIPT = """
import json, statistics, time
from django.http import QueryDict
from audit.selectors import inventory_page
from audit.forms import InventoryFilterForm
results = {}
for label, query in json.loads(CASES):
    data = QueryDict(query)
    form = InventoryFilterForm(data)
    assert form.is_valid(), form.errors
    filters, page = form.filters(), int(data.get("page", 1))
    for _ in range(3):
        inventory_page(filters, page=page)
    times = []
    for _ in range(REPS):
        started = time.perf_counter()
        inventory_page(filters, page=page)
        times.append((time.perf_counter() - started) * 1000)
    results[label] = times
print(json.dumps(results))
"""


def measure_selectors(stack: Stack, cases: list[tuple[str, dict[str, Any], bytes]], reps: int) -> dict[str, Any]:
    """``inventory_page`` alone (its queries, no HTTP, session or template), in one process."""
    payload = json.dumps([(label, urlencode(query)) for label, query, _ in cases])
    script = SELECTOR_SCRIPT.replace("json.loads(CASES)", f"json.loads({payload!r})").replace(
        "range(REPS)", f"range({reps})"
    )
    load_before = _load()
    times = json.loads(stack.manage("shell", "-c", script).stdout.strip().splitlines()[-1])
    load = [load_before, _load()]
    return {
        label: {"p50_ms": statistics.median(t), "p95_ms": _pct(t, 0.95), "calls": len(t), "loadavg_1m": load}
        for label, t in times.items()
    }


def measure_page(browser: Browser, label: str, query: dict[str, Any], marker: bytes, count: int) -> dict[str, Any]:
    path = "/audit/certificates/" + (f"?{urlencode(query)}" if query else "")
    status, first, _ = browser.get(path)
    if status != 200 or marker not in first:
        raise SystemExit(f"{path}: status {status}, {marker!r} not in the page; summary: {_summary(first)}")
    for _ in range(WARMUP - 1):
        browser.get(path)
    load_before = _load()
    times = []
    for _ in range(count):
        status, _, elapsed = browser.get(path)
        if status != 200:
            raise SystemExit(f"{path}: status {status}")
        times.append(elapsed * 1000)
    p95 = _pct(times, 0.95)
    return {
        "case": label,
        "path": path,
        "requests": count,
        "p50_ms": statistics.median(times),
        "p95_ms": p95,
        "mean_ms": statistics.mean(times),
        "max_ms": max(times),
        "page_bytes": len(first),
        "summary": _summary(first),
        "meets": p95 < TARGET_P95_MS,
        "loadavg_1m": [load_before, _load()],
    }


# --- the export and the workers' memory --------------------------------------------------------


def _children(pid: int) -> list[int]:
    found: list[int] = []
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


def _vm_rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


class RssSampler(threading.Thread):
    """VmRSS of each gunicorn worker every ``interval`` seconds, from before the request to after it."""

    def __init__(self, master: int, interval: float = 0.1) -> None:
        super().__init__(daemon=True)
        self.master, self.interval = master, interval
        self.samples: dict[int, list[float]] = {}
        self.halt = threading.Event()
        self.sample()

    def sample(self) -> None:
        for pid in _children(self.master):
            rss = _vm_rss_mb(pid)
            if rss is not None:
                self.samples.setdefault(pid, []).append(rss)

    def run(self) -> None:
        while not self.halt.wait(self.interval):
            self.sample()

    def stop(self) -> None:
        self.halt.set()
        self.join()
        self.sample()


def export(browser: Browser, master: int, n: int) -> dict[str, Any]:
    load_before = _load()
    sampler = RssSampler(master)
    sampler.start()
    started = time.perf_counter()
    conn, response = browser._send("GET", "/audit/certificates/export.csv")
    first_byte = None
    size = lines = 0
    while True:
        chunk = response.read1(65536)
        if not chunk:
            break
        if first_byte is None:
            first_byte = time.perf_counter() - started
        size += len(chunk)
        lines += chunk.count(b"\n")
    elapsed = time.perf_counter() - started
    conn.close()
    sampler.stop()
    if response.status != 200:
        raise SystemExit(f"export.csv: status {response.status}")
    workers = {
        pid: {"start_mb": values[0], "peak_mb": max(values), "end_mb": values[-1], "samples": len(values)}
        for pid, values in sampler.samples.items()
    }
    serving = max(workers, key=lambda pid: workers[pid]["peak_mb"] - workers[pid]["start_mb"])
    return {
        "rows": lines - 1,
        "rows_ok": lines - 1 == n,
        "mb": size / 1e6,
        "seconds": elapsed,
        "first_byte_s": first_byte,
        "rows_per_s": (lines - 1) / elapsed,
        "meets": elapsed <= TARGET_EXPORT_S and lines - 1 == n,
        "workers": {str(pid): w for pid, w in workers.items()},
        "serving_start_mb": workers[serving]["start_mb"],
        "serving_peak_mb": workers[serving]["peak_mb"],
        "loadavg_1m": [load_before, _load()],
    }


# --- the CRL ---------------------------------------------------------------------------------

CRL_SCRIPT = """
import json, time
from datetime import timedelta
from django.utils import timezone
from bench.crl import ceiling
from pki.crl import build_crl
from authority import keystore
from authority.models import CertificateAuthority
from authority.revocation import crl_publish, revoked_entries
from pki.ca import load_certificate
keystore.enable_signing()
ca = CertificateAuthority.objects.get(is_active=True)
key = keystore.signing_key(ca)
cert = load_certificate(ca.certificate_pem.encode())
portal, read, build, raw, entries_n, der_bytes = [], [], [], [], None, None
for _ in range(PASSES):
    # Interleaved, as bench/crl.py does, so a load spike hits both alike.
    started = time.perf_counter()
    crl = crl_publish(trigger="manual")
    portal.append(time.perf_counter() - started)
    started = time.perf_counter()
    entries = revoked_entries(ca, timezone.now())
    read.append(time.perf_counter() - started)
    now = timezone.now().replace(microsecond=0)
    started = time.perf_counter()
    build_crl(ca_cert=cert, ca_key=key, number=1, this_update=now, next_update=now + timedelta(days=7), entries=entries)
    build.append(time.perf_counter() - started)
    started = time.perf_counter()
    ceiling(cert, key, entries)
    raw.append(time.perf_counter() - started)
    assert len(entries) == crl.entries, (len(entries), crl.entries)
    entries_n, der_bytes = crl.entries, len(crl.der)
times = {"portal": portal, "read": read, "build": build, "raw": raw}
print(json.dumps({**times, "entries": entries_n, "der_bytes": der_bytes}))
"""

REVOKE_ALL_SQL = """
UPDATE authority_certificate
SET revoked_at = date_trunc('second', issued_at + (now() - issued_at) / 2),
    revocation_reason = (ARRAY['unspecified', 'keyCompromise', 'affiliationChanged', 'superseded',
                               'cessationOfOperation', 'privilegeWithdrawn'])[mod(id, 6) + 1],
    revoked_by = 'user:carol'
WHERE revoked_at IS NULL
"""


def crl_run(stack: Stack, label: str, passes: int) -> dict[str, Any]:
    load_before = _load()
    result = stack.manage("shell", "-c", CRL_SCRIPT.replace("range(PASSES)", f"range({passes})"))
    data = json.loads(result.stdout.strip().splitlines()[-1])
    portal_s, raw_s = min(data["portal"]), min(data["raw"])
    return {
        "case": label,
        "entries": data["entries"],
        "der_mb": data["der_bytes"] / 1e6,
        "portal_s": portal_s,
        "portal_passes_s": data["portal"],
        "db_read_s": min(data["read"]),
        "build_crl_s": min(data["build"]),
        "ceiling_s": raw_s,
        "ceiling_passes_s": data["raw"],
        "ratio": raw_s / portal_s,
        "ratio_build_crl": raw_s / min(data["build"]),
        "meets": portal_s <= TARGET_CRL_S,
        "loadavg_1m": [load_before, _load()],
    }


def revoke_all(stack: Stack) -> int:
    import psycopg

    with psycopg.connect(stack.env["DATABASE_URL"], autocommit=True) as conn:
        updated = conn.execute(REVOKE_ALL_SQL).rowcount
        conn.execute("VACUUM ANALYZE authority_certificate")
    return updated


# --- report ----------------------------------------------------------------------------------


def _yes(ok: bool) -> str:
    return "yes" if ok else "NO"


def report(
    facts: dict[str, Any], pages: list[dict[str, Any]], exports: list[dict[str, Any]], crls: list[dict[str, Any]]
) -> str:
    lines = [
        f"seeded {facts['certificates']:,} certificates ({facts['peers']:,} with a peer, {facts['owners']} owners): "
        f"{facts['revoked']:,} revoked, {facts['expired']:,} expired, {facts['expiring_30']:,} expiring within 30 "
        f"days; certificate table {facts['certificate_table_mb']:.0f} MB; seeded in {facts['seed_s']:.1f} s",
        "",
        f"{'inventory page (HTTP, sequential)':34} {'p50 ms':>7} {'p95 ms':>7} {'max ms':>7} {'load':>5}  "
        f"p95<{TARGET_P95_MS:.0f}  {'selector p50/p95':>16}  matches",
    ]
    for p in pages:
        selector = p.get("selector") or {}
        inner = f"{selector['p50_ms']:.1f}/{selector['p95_ms']:.1f}" if selector else "-"
        lines.append(
            f"{p['case']:34} {p['p50_ms']:>7.1f} {p['p95_ms']:>7.1f} {p['max_ms']:>7.1f} {max(p['loadavg_1m']):>5.2f}  "
            f"{_yes(p['meets']):>6}  {inner:>16}  {p['summary']}"
        )
    lines += ["", f"{'CSV export of everything':24} {'rows':>8} {'MB':>6} {'1st byte':>8} {'total s':>8} {'rows/s':>7} "
              f"{'RSS start':>9} {'RSS peak':>8} {'load':>5}  <={TARGET_EXPORT_S:.0f} s"]  # fmt: skip
    for i, e in enumerate(exports, start=1):
        lines.append(
            f"{'run ' + str(i):24} {e['rows']:>8,} {e['mb']:>6.1f} {e['first_byte_s'] or 0:>7.2f}s "
            f"{e['seconds']:>8.2f} {e['rows_per_s']:>7.0f} {e['serving_start_mb']:>7.1f}MB "
            f"{e['serving_peak_mb']:>6.1f}MB "
            f"{max(e['loadavg_1m']):>5.2f}  {_yes(e['meets']):>5}"
        )
    lines += [
        "",
        f"{'CRL (crl_publish vs raw ceiling)':34} {'entries':>8} {'DER MB':>6} {'portal s':>8} {'db read':>7} "
        f"{'build_crl':>9} {'ceiling s':>9} {'ratio':>6} {'load':>5}  <={TARGET_CRL_S:.0f} s",
    ]
    for c in crls:
        lines.append(
            f"{c['case']:34} {c['entries']:>8,} {c['der_mb']:>6.2f} {c['portal_s']:>8.3f} {c['db_read_s']:>7.3f} "
            f"{c['build_crl_s']:>9.3f} {c['ceiling_s']:>9.3f} {c['ratio']:>6.2f} {max(c['loadavg_1m']):>5.2f}  "
            f"{_yes(c['meets']):>5}"
        )
    lines.append(
        "portal = crl_publish (lock, read, build_crl, store, audit, notify); db read and build_crl are its parts, "
        "timed apart. ratio = ceiling / portal (1.00: no overhead); the ceiling reads no database and checks nothing. "
        f"load = the highest 1-minute load average seen around the step, on {len(os.sched_getaffinity(0))} CPUs."
    )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--n", type=int, default=100_000, help="certificates to seed (default 100000)")
    parser.add_argument("--requests", type=int, default=200, help="timed requests per page case (default 200)")
    parser.add_argument(
        "--selector-calls", type=int, default=50, help="in-process inventory_page() calls per case (default 50)"
    )
    parser.add_argument("--exports", type=int, default=2, help="CSV exports of everything (default 2)")
    parser.add_argument("--crl-passes", type=int, default=3, help="passes per CRL measurement; the best counts")
    parser.add_argument("--seed", type=int, default=20261127, help="random seed of the data")
    args = parser.parse_args()

    loads = {"start": _load()}
    print(f"1-minute load average at the start: {loads['start']:.2f} ({len(os.sched_getaffinity(0))} CPUs)")
    pages: list[dict[str, Any]] = []
    exports: list[dict[str, Any]] = []
    crls: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-inventory-") as tmp:
        stack = Stack(Path(tmp), "services")  # leases a Redis database no test uses meanwhile
        stack.env["LOG_LEVEL"] = "WARNING"
        port = free_port()
        stack.env["SITE_URL"] = f"http://127.0.0.1:{port}"
        web = None
        try:
            print(f"database {stack.dbname}: migrate + import_ca ...", flush=True)
            stack.setup()
            print(f"seeding {args.n:,} certificates ...", flush=True)
            facts = seed(stack, args.n, args.seed)
            print(
                f"  seeded in {facts['seed_s']:.1f} s ({facts['revoked']:,} revoked, {facts['expired']:,} expired, "
                f"{facts['expiring_30']:,} expiring within 30 days)",
                flush=True,
            )
            cases = page_cases(args.n, facts["sample_serial"])
            print(f"  inventory_page() alone, {args.selector_calls} calls per case ...", flush=True)
            selectors = measure_selectors(stack, cases, args.selector_calls)
            web = start_gunicorn(stack, port, Path(tmp) / "gunicorn.log")
            browser = Browser(port)
            browser.login(AUDITOR, AUDITOR_PASSWORD)
            loads["pages"] = _load()
            for label, query, marker in cases:
                print(f"  {label}: {args.requests} requests ...", flush=True)
                pages.append(measure_page(browser, label, query, marker, args.requests))
                pages[-1]["selector"] = selectors.get(label)
            for i in range(args.exports):
                print(f"  CSV export {i + 1} ...", flush=True)
                exports.append(export(browser, web.pid, args.n))
            stop_group(web)
            web = None
            print(f"  CRL of the seeded revocations ({args.crl_passes} passes) ...", flush=True)
            crls.append(crl_run(stack, "seeded revocations (~10 %)", args.crl_passes))
            print("  revoking every certificate (one UPDATE) ...", flush=True)
            facts["revoked_all_update"] = revoke_all(stack)
            crls.append(crl_run(stack, "every certificate revoked", args.crl_passes))
        finally:
            stop_group(web)
            stack.teardown()
    loads["end"] = _load()

    print()
    print(report(facts, pages, exports, crls))
    ok_pages = all(p["meets"] for p in pages)
    ok_export = all(e["meets"] for e in exports)
    big = [c for c in crls if c["entries"] >= 0.9 * min(args.n, 100_000)]
    ok_crl = all(c["meets"] for c in crls)
    print(
        f"targets: pages p95 < {TARGET_P95_MS:.0f} ms: {'met' if ok_pages else 'MISSED'}; "
        f"export <= {TARGET_EXPORT_S:.0f} s: {'met' if ok_export else 'MISSED'}; "
        f"CRL <= {TARGET_CRL_S:.0f} s: {'met' if ok_crl else 'MISSED'}"
        + (f" (largest: {big[-1]['entries']:,} entries in {big[-1]['portal_s']:.2f} s)" if big else "")
    )
    print(
        f"1-minute load average: start {loads['start']:.2f}, before the pages {loads['pages']:.2f}, "
        f"end {loads['end']:.2f}"
    )

    OUT.mkdir(parents=True, exist_ok=True)
    result = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": len(os.sched_getaffinity(0)),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "loadavg_1m": loads,
        "seed": facts,
        "pages": pages,
        "exports": exports,
        "crls": crls,
        "targets": {"page_p95_ms": TARGET_P95_MS, "export_s": TARGET_EXPORT_S, "crl_s": TARGET_CRL_S},
        "targets_met": {"pages": ok_pages, "export": ok_export, "crl": ok_crl},
    }
    (OUT / "inventory.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {OUT / 'inventory.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
