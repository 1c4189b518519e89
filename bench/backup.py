"""Backup and restore at scale: ``manage.py backup`` and ``manage.py restore`` of N certificates on PostgreSQL.

    python bench/backup.py [--n 100000] [--seed 20261203]

1. A fresh PostgreSQL database (``ca_portal_bk_bench_<hex>`` on 127.0.0.1:5432, superuser ``postgres``,
   trust auth) and var dir: ``migrate``, ``init_ca`` (RSA-2048), 200 owners and two CA admins.
2. The seed, in bulk SQL (COPY; not through the signer): for each of N certificates, issued over the
   last year, a CertificateRequest (its own CSR and public key), an IssuanceIntent (its own TBS), a
   Certificate and, for 95 % of them, an enrollment Peer; about 10 % revoked. Every row carries bytes
   of its own (a random RSA modulus and signature in a real certificate's and CSR's structure), so
   compression sees what it would see in a real deployment. And the audit log a real deployment would
   have: five events per certificate (peer.registered, certificate.requested, peer.approved,
   certificate.intent, certificate.issued) and one per revocation, hash-chained (``audit_verify``
   passes). Then VACUUM ANALYZE.
3. ``manage.py backup`` (pg_dump of the snapshot, then the encrypted archive), timed as a whole and by
   the steps it reports; the archive's size.
4. ``manage.py restore`` onto a second, empty database and var dir: decrypt and check, pg_restore,
   the comparison with the manifest, the audit chain check of every event; timed the same way.

Results go to stdout and bench/out/backup.json, with the 1-minute load average (the machine may be
busy with other work). Both databases are dropped at the end. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import platform
import random
import re
import secrets
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
OUT = ROOT / "bench" / "out"
PG = "127.0.0.1:5432"
PG_ADMIN = f"postgresql://postgres@{PG}/postgres"
OWNERS = 200
REASONS = ["unspecified", "keyCompromise", "affiliationChanged", "superseded", "cessationOfOperation"]


def _load() -> float:
    return os.getloadavg()[0]


def _pg_admin(sql: str, params: tuple[Any, ...] = ()) -> None:
    import psycopg

    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(sql, params)


class Site:
    """A deployment: its own var dir and database; commands run as subprocesses, as an operator would."""

    def __init__(self, workdir: Path, name: str) -> None:
        self.var = workdir / name
        self.var.mkdir()
        self.dbname = f"ca_portal_bk_bench_{secrets.token_hex(4)}"
        _pg_admin(f'CREATE DATABASE "{self.dbname}"')
        drop = {"DATABASE_URL", "REDIS_URL", "CA_KEY_PASSPHRASE_FILE", "DJANGO_SECRET_KEY", "CA_AUDIT_CHECKPOINT_FILE"}
        self.env = {k: v for k, v in os.environ.items() if k not in drop and k != "CA_PORTAL_CONFIG_TEMPLATES"}
        self.env.update(
            DJANGO_SETTINGS_MODULE="ca_portal.settings",
            CA_PORTAL_VAR_DIR=str(self.var),
            DATABASE_URL=f"postgres://postgres@{PG}/{self.dbname}",
            SITE_URL="https://ca.example.org",
            PYTHONPATH=str(ROOT),
            LOG_LEVEL="WARNING",
        )

    def run(self, *args: str) -> tuple[str, float]:
        started = time.perf_counter()
        result = subprocess.run(list(args), env=self.env, cwd=ROOT, capture_output=True, text=True, check=False)
        elapsed = time.perf_counter() - started
        if result.returncode != 0:
            raise SystemExit(f"{' '.join(args[1:3])} failed:\n{result.stdout}\n{result.stderr}")
        return result.stdout, elapsed

    def manage(self, *args: str) -> tuple[str, float]:
        return self.run(PYTHON, str(ROOT / "manage.py"), *args)

    def drop(self) -> None:
        _pg_admin("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (self.dbname,))
        _pg_admin(f'DROP DATABASE IF EXISTS "{self.dbname}"')

    def size_mb(self) -> float:
        import psycopg

        with psycopg.connect(f"postgresql://postgres@{PG}/{self.dbname}") as conn:
            row = conn.execute("SELECT pg_database_size(current_database())").fetchone()
        assert row is not None
        return float(row[0]) / 1e6


# --- the seed (runs inside the site: python bench/backup.py seed N SEED) ----------------------------------


class Template:
    """A real certificate and CSR of the portal's shape; each row gets its own modulus and signatures."""

    def __init__(self) -> None:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import rsa
        from cryptography.x509.oid import NameOID

        from authority.models import CertificateAuthority

        ca = CertificateAuthority.objects.get(is_active=True)
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "host1.example.com")])
        csr = x509.CertificateSigningRequestBuilder().subject_name(name).sign(key, hashes.SHA256())
        now = datetime.now(UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(ca.certificate.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now)
            .not_valid_after(now + timedelta(days=365))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("host1.example.com")]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .sign(key, hashes.SHA256())  # the layout is what counts; rows get random signatures
        )
        self.modulus = key.public_key().public_numbers().n.to_bytes(256, "big")
        self.cert = cert.public_bytes(serialization.Encoding.DER)
        self.tbs = cert.tbs_certificate_bytes
        self.spki = key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        self.csr = csr.public_bytes(serialization.Encoding.DER)
        for blob in (self.cert, self.tbs, self.spki, self.csr):
            assert blob.count(self.modulus) == 1
        assert self.cert.endswith(cert.signature)
        assert self.csr.endswith(csr.signature)

    def _swap(self, blob: bytes, modulus: bytes, signature: bytes | None) -> bytes:
        at = blob.index(self.modulus)
        out = blob[:at] + modulus + blob[at + 256 :]
        return out[:-256] + signature if signature is not None else out

    def row(self, rng: random.Random) -> tuple[bytes, bytes, bytes, str]:
        """(certificate DER, TBS DER, public key DER, CSR PEM), all with this row's own bytes."""
        modulus = bytes([rng.getrandbits(8) | 0x80]) + rng.randbytes(255)
        cert = self._swap(self.cert, modulus, rng.randbytes(256))
        csr = self._swap(self.csr, modulus, rng.randbytes(256))
        body = "\n".join(re.findall(".{1,64}", base64.b64encode(csr).decode()))
        pem = f"-----BEGIN CERTIFICATE REQUEST-----\n{body}\n-----END CERTIFICATE REQUEST-----\n"
        return cert, self._swap(self.tbs, modulus, None), self._swap(self.spki, modulus, None), pem


def _events(i: int, row: dict[str, Any]) -> Iterator[tuple[str, str, str, dict[str, Any], datetime]]:
    """The audit events the portal writes for one issued (and maybe revoked) certificate."""
    owner, fqdn, serial = f"user:user{row['owner'] % OWNERS:03d}", row["fqdn"], row["serial"]
    yield "peer.registered", owner, f"peer:{i}", {"fqdn": fqdn, "kind": row["kind"], "key_source": "csr"}, row["at0"]
    yield "certificate.requested", "user:carol", f"request:{i}", {"fqdn": fqdn, "kind": row["kind"]}, row["at1"]
    yield "peer.approved", "user:carol", f"peer:{i}", {"request": i, "validity_days": row["days"]}, row["at1"]
    yield (
        "certificate.intent",
        "signer",
        f"request:{i}",
        {"serial": serial, "tbs_sha256": row["tbs_sha256"]},
        row["at2"],
    )
    issued = {
        "request": i,
        "fqdn": fqdn,
        "fingerprint_sha256": row["fingerprint"],
        "not_after": row["not_after"].isoformat(),
    }
    yield "certificate.issued", "signer", f"certificate:{serial}", issued, row["at2"]


def seed(n: int, seed_value: int) -> dict[str, Any]:
    import django

    django.setup()
    from django.contrib.auth.hashers import make_password
    from django.contrib.auth.models import Group, User
    from django.db import connection, transaction

    from authority.audit import event_hash
    from authority.models import AuditHead, CertificateAuthority

    started = time.perf_counter()
    carol = User.objects.create_user("carol", "carol@example.org", None)
    carol.groups.add(Group.objects.get(name="ca-admin"))
    owners = User.objects.bulk_create(
        [
            User(username=f"user{i:03d}", email=f"user{i:03d}@example.org", password=make_password(None))
            for i in range(OWNERS)
        ]
    )
    owner_ids = [user.pk for user in owners]
    ca = CertificateAuthority.objects.get(is_active=True)
    template = Template()
    rng = random.Random(seed_value)
    now = datetime.now(UTC)
    issued_at = sorted(now - timedelta(seconds=rng.uniform(60, 365 * 86400)) for _ in range(n))
    serials: set[int] = set()
    counts = {"revoked": 0, "events": 0, "peers": 0}
    with transaction.atomic():
        connection.ensure_connection()
        raw = connection.connection
        head = AuditHead.objects.select_for_update().get(pk=1)
        seq, prev = head.seq, head.hash
        with raw.cursor() as cursor:
            requests, intents, certificates, peers, events = [], [], [], [], []
            for i, at in enumerate(issued_at, start=1):
                serial_int = rng.getrandbits(159)
                while serial_int == 0 or serial_int in serials:
                    serial_int = rng.getrandbits(159)
                serials.add(serial_int)
                der, tbs, spki, csr_pem = template.row(rng)
                draw = rng.random()
                days = 180 if draw < 0.02 else 365 if draw < 0.06 else 730
                not_before = at - timedelta(hours=1)
                row: dict[str, Any] = {
                    "fqdn": f"host{i}.example.com",
                    "kind": "server" if i % 250 == 0 else "client",
                    "owner": rng.randrange(OWNERS),
                    "serial": f"{serial_int:x}",
                    "days": days,
                    "fingerprint": hashlib.sha256(der).hexdigest(),
                    "tbs_sha256": hashlib.sha256(tbs).hexdigest(),
                    "not_after": not_before + timedelta(days=days),
                    "at0": at - timedelta(minutes=30),
                    "at1": at - timedelta(minutes=5),
                    "at2": at,
                }
                revoked_at = reason = None
                if rng.random() < 0.10:
                    revoked_at = at + (now - at) * rng.random()
                    reason = REASONS[rng.randrange(len(REASONS))]
                    counts["revoked"] += 1
                owner_id = owner_ids[row["owner"]]
                requests.append(
                    (
                        i,
                        ca.pk,
                        row["fqdn"],
                        row["kind"],
                        csr_pem,
                        spki,
                        "rsa-2048",
                        days,
                        "issued",
                        "",
                        owner_id,
                        carol.pk,
                        row["at1"],
                        row["at1"],
                        1,
                        True,
                    )
                )
                intents.append((i, i, row["serial"], tbs, row["tbs_sha256"], not_before, row["not_after"], at))
                certificates.append(
                    (
                        i,
                        ca.pk,
                        i,
                        row["serial"],
                        row["fqdn"],
                        der,
                        row["fingerprint"],
                        not_before,
                        row["not_after"],
                        at,
                        revoked_at,
                        reason or "",
                        "user:carol" if reason else "",
                        "",
                    )
                )
                if rng.random() < 0.95:
                    counts["peers"] += 1
                    networks = json.dumps([f"10.{i // 256 % 256}.{i % 256}.0/24"] if i % 10 == 0 else [])
                    address = f"192.0.2.{i % 254 + 1}" if row["kind"] == "server" else None
                    peers.append(
                        (
                            i,
                            row["fqdn"],
                            row["kind"],
                            networks,
                            address,
                            csr_pem,
                            "approved",
                            row["at1"],
                            "",
                            row["at0"],
                            i,
                            carol.pk,
                            owner_id,
                            "csr",
                            revoked_at,
                            None,
                        )
                    )
                chain = list(_events(i, row))
                if revoked_at is not None:
                    data = {"fqdn": row["fqdn"], "reason": reason, "comment": "", "peer": i}
                    chain.append(
                        ("certificate.revoked", "user:carol", f"certificate:{row['serial']}", data, revoked_at)
                    )
                for action, actor, target, data, moment in chain:
                    events.append((action, actor, target, data, moment))
            _copy(
                cursor,
                "authority_certificaterequest",
                "id, ca_id, fqdn, kind, csr_pem, public_key_der, key_type, "
                "validity_days, status, failure_reason, requested_by_id, approved_by_id, created_at, queued_at, "
                "attempts, announce_issued",
                requests,
            )
            _copy(
                cursor,
                "authority_issuanceintent",
                "id, request_id, serial, tbs_der, tbs_sha256, not_before, not_after, created_at",
                intents,
            )
            _copy(
                cursor,
                "authority_certificate",
                "id, ca_id, request_id, serial, fqdn, der, fingerprint_sha256, "
                "not_before, not_after, issued_at, revoked_at, revocation_reason, revoked_by, revocation_comment",
                certificates,
            )
            _copy(
                cursor,
                "enrollment_peer",
                "id, fqdn, kind, networks, address, csr_pem, decision, decided_at, "
                "decision_reason, created_at, certificate_request_id, decided_by_id, owner_id, key_source, "
                "retired_at, renews_id",
                peers,
            )
            # The audit log in time order, chained from the head that init_ca and the users left.
            events.sort(key=lambda event: event[4])
            chained = []
            for action, actor, target, data, moment in events:
                seq += 1
                digest = event_hash(prev, seq=seq, at=moment, actor=actor, action=action, target=target, data=data)
                chained.append((seq, moment, actor, action, target, json.dumps(data), prev, digest))
                prev = digest
            _copy(cursor, "authority_auditevent", "seq, at, actor, action, target, data, prev_hash, hash", chained)
            counts["events"] = len(chained)
            cursor.execute("UPDATE authority_audithead SET seq = %s, hash = %s WHERE id = 1", (seq, prev))
            for table in (
                "authority_certificaterequest",
                "authority_issuanceintent",
                "authority_certificate",
                "enrollment_peer",
            ):
                cursor.execute(
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))"  # noqa: S608
                )
    inserted = time.perf_counter() - started
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")
    return {"n": n, **counts, "insert_s": inserted, "seed_s": time.perf_counter() - started}


def _copy(cursor: Any, table: str, columns: str, rows: list[tuple[Any, ...]]) -> None:
    with cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
        for values in rows:
            copy.write_row(values)


# --- measuring --------------------------------------------------------------------------------------


def _seconds(output: str) -> dict[str, float]:
    """The "seconds: name 1.23, other 4.56" line the commands print."""
    match = re.search(r"seconds:\s+(.*)", output)
    if not match:
        return {}
    return {name.strip(): float(value) for name, value in re.findall(r"([a-z ]+?) (\d+\.\d+)", match[1])}


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--n", type=int, default=100_000, help="certificates to seed (default 100000)")
    parser.add_argument("--seed", type=int, default=20261203, help="random seed of the data")
    args = parser.parse_args()
    loads = {"start": _load()}
    print(f"1-minute load average at the start: {loads['start']:.2f} ({len(os.sched_getaffinity(0))} CPUs)")
    with tempfile.TemporaryDirectory(prefix="bench-backup-") as tmp:
        workdir = Path(tmp)
        passphrase = workdir / "backup-passphrase"
        passphrase.write_text(secrets.token_urlsafe(32) + "\n")
        passphrase.chmod(0o600)
        source = Site(workdir, "source")
        target: Site | None = None
        try:
            print(f"database {source.dbname}: migrate + init_ca ...", flush=True)
            source.manage("migrate", "--noinput", "-v0")
            source.manage("init_ca", "--common-name", "Bench CA", "--key-type", "rsa-2048")
            print(f"seeding {args.n:,} certificates and their audit events ...", flush=True)
            output, _ = source.run(PYTHON, str(Path(__file__).resolve()), "seed", str(args.n), str(args.seed))
            facts = json.loads(output.strip().splitlines()[-1])
            facts["database_mb"] = source.size_mb()
            print(
                f"  seeded in {facts['seed_s']:.1f} s: {facts['events']:,} audit events, "
                f"{facts['revoked']:,} revoked; database {facts['database_mb']:.0f} MB",
                flush=True,
            )
            archive = workdir / "site.cabk"
            loads["backup"] = _load()
            print("backup ...", flush=True)
            output, backup_s = source.manage("backup", "--out", str(archive), "--passphrase-file", str(passphrase))
            backup = {"total_s": backup_s, "steps_s": _seconds(output), "archive_mb": archive.stat().st_size / 1e6}
            print(output)
            target = Site(workdir, "target")
            # The operator brings the CA key passphrase from where it is kept; the backup does not hold it.
            kept = target.var / "ca-key-passphrase"
            kept.write_bytes((source.var / "ca-key-passphrase").read_bytes())
            kept.chmod(0o600)
            loads["restore"] = _load()
            print(f"restore onto {target.dbname} ...", flush=True)
            output, restore_s = target.manage("restore", str(archive), "--passphrase-file", str(passphrase))
            print(output)
            if "Audit chain: OK" not in output:
                raise SystemExit("the restored audit chain does not check out")
            restore = {"total_s": restore_s, "steps_s": _seconds(output), "database_mb": target.size_mb()}
        finally:
            source.drop()
            if target is not None:
                target.drop()
    loads["end"] = _load()
    print(report(facts, backup, restore, loads))
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
        "backup": backup,
        "restore": restore,
    }
    (OUT / "backup.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {OUT / 'backup.json'}")
    return 0


def report(facts: dict[str, Any], backup: dict[str, Any], restore: dict[str, Any], loads: dict[str, float]) -> str:
    steps_b = ", ".join(f"{k} {v:.1f} s" for k, v in backup["steps_s"].items())
    steps_r = ", ".join(f"{k} {v:.1f} s" for k, v in restore["steps_s"].items())
    return "\n".join(
        [
            f"{facts['n']:,} certificates ({facts['revoked']:,} revoked, {facts['peers']:,} peers), "
            f"{facts['events']:,} audit events; database {facts['database_mb']:.0f} MB",
            f"backup:  {backup['total_s']:6.1f} s wall ({steps_b}); archive {backup['archive_mb']:.0f} MB",
            f"restore: {restore['total_s']:6.1f} s wall ({steps_r}); restored database {restore['database_mb']:.0f} MB",
            f"1-minute load average: start {loads['start']:.2f}, backup {loads['backup']:.2f}, "
            f"restore {loads['restore']:.2f}, end {loads['end']:.2f} on {len(os.sched_getaffinity(0))} CPUs "
            "(wall times include each command's start-up, about 1-2 s)",
        ]
    )


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "seed":
        sys.path.insert(0, str(ROOT))
        print(json.dumps(seed(int(sys.argv[2]), int(sys.argv[3]))))
        raise SystemExit(0)
    raise SystemExit(main())
