"""CRL generation: pki.crl.build_crl against the raw `cryptography` ceiling.

    python bench/crl.py [--sizes 1000,10000,100000] [--cas rsa2048,p384] [--passes 3] [--idiomatic-max 100000]

For each fixture CA (tests/fixtures/pki/ca-*.key, loaded once) and each size N, with the same
N revocations (random 159-bit serials in random order, dated in the past, reasons spread over
the six RFC 5280 names the portal gives) it measures, best of ``--passes``:

* portal: ``build_crl`` (input checks, entries sorted by serial, AKI + cRLNumber, signature,
  signature check under the CA certificate), then the DER that is stored;
* ceiling: the same CRL straight from cryptography with no checks: entries built once each,
  handed to ``CertificateRevocationListBuilder`` in one list, signed, DER. For the RSA CA the
  two DER outputs are compared byte for byte (PKCS#1 v1.5 is deterministic);
* idiomatic (one pass, up to ``--idiomatic-max`` entries): what the cryptography docs show,
  ``builder = builder.add_revoked_certificate(...)`` per entry. The builder copies its list on
  every call, so this is quadratic; it is why the portal does not build CRLs that way.

ratio = ceiling time / portal time (1.0: the portal costs nothing over the ceiling). Target:
100,000 entries in <= 5 s. Results go to stdout and to bench/out/crl.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import cryptography  # noqa: E402
from cryptography import x509  # noqa: E402
from cryptography.hazmat.primitives import serialization  # noqa: E402

from pki.crl import REASONS, RevokedEntry, build_crl  # noqa: E402
from pki.keys import PrivateKey, load_private_key, signature_hash  # noqa: E402

FIXTURES = ROOT / "tests" / "fixtures" / "pki"
OUT = ROOT / "bench" / "out"
TARGET_SECONDS_100K = 5.0
THIS_UPDATE = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
NEXT_UPDATE = THIS_UPDATE + timedelta(days=7)
NUMBER = 1234


def entries_for(n: int, seed: int) -> list[RevokedEntry]:
    rng = random.Random(seed)
    reasons = list(REASONS)
    serials: set[int] = set()
    while len(serials) < n:
        serials.add(rng.getrandbits(159) or 1)
    return [
        RevokedEntry(
            serial=serial,
            revoked_at=THIS_UPDATE - timedelta(seconds=rng.randrange(1, 400 * 86400)),
            reason=reasons[rng.randrange(len(reasons))],
        )
        for serial in serials
    ]


def _reason_extensions() -> dict[str, list[x509.Extension[x509.ExtensionType]]]:
    extensions: dict[str, list[x509.Extension[x509.ExtensionType]]] = {}
    for reason, flag in REASONS.items():
        extensions[reason] = [] if flag is None else [x509.Extension(x509.CRLReason.oid, False, x509.CRLReason(flag))]
    return extensions


def _header(ca_cert: x509.Certificate) -> tuple[x509.Name, x509.AuthorityKeyIdentifier]:
    ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    return ca_cert.subject, x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)


def portal(ca_cert: x509.Certificate, ca_key: PrivateKey, entries: list[RevokedEntry]) -> bytes:
    crl = build_crl(
        ca_cert=ca_cert,
        ca_key=ca_key,
        number=NUMBER,
        this_update=THIS_UPDATE,
        next_update=NEXT_UPDATE,
        entries=entries,
    )
    return crl.public_bytes(serialization.Encoding.DER)


def ceiling(ca_cert: x509.Certificate, ca_key: PrivateKey, entries: list[RevokedEntry]) -> bytes:
    """The same CRL, straight from cryptography: no checks, no signature verification."""
    issuer, aki = _header(ca_cert)
    extensions = _reason_extensions()
    revoked = [
        x509.RevokedCertificateBuilder(e.serial, e.revoked_at.replace(tzinfo=None), extensions[e.reason]).build()
        for e in sorted(entries, key=lambda e: e.serial)
    ]
    crl = (
        x509.CertificateRevocationListBuilder(revoked_certificates=revoked)
        .issuer_name(issuer)
        .last_update(THIS_UPDATE)
        .next_update(NEXT_UPDATE)
        .add_extension(aki, critical=False)
        .add_extension(x509.CRLNumber(NUMBER), critical=False)
        .sign(ca_key, signature_hash(ca_key))
    )
    return crl.public_bytes(serialization.Encoding.DER)


def idiomatic(ca_cert: x509.Certificate, ca_key: PrivateKey, entries: list[RevokedEntry]) -> bytes:
    """As the cryptography documentation shows it: one add_revoked_certificate call per entry."""
    issuer, aki = _header(ca_cert)
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(issuer)
        .last_update(THIS_UPDATE)
        .next_update(NEXT_UPDATE)
        .add_extension(aki, critical=False)
        .add_extension(x509.CRLNumber(NUMBER), critical=False)
    )
    for e in sorted(entries, key=lambda e: e.serial):
        entry = x509.RevokedCertificateBuilder().serial_number(e.serial).revocation_date(e.revoked_at)
        flag = REASONS[e.reason]
        if flag is not None:
            entry = entry.add_extension(x509.CRLReason(flag), critical=False)
        builder = builder.add_revoked_certificate(entry.build())
    return builder.sign(ca_key, signature_hash(ca_key)).public_bytes(serialization.Encoding.DER)


Maker = Callable[[x509.Certificate, PrivateKey, list[RevokedEntry]], bytes]


def timed(
    make: Maker, ca_cert: x509.Certificate, ca_key: PrivateKey, entries: list[RevokedEntry]
) -> tuple[float, bytes]:
    started = time.perf_counter()
    der = make(ca_cert, ca_key, entries)
    return time.perf_counter() - started, der


def run(ca_name: str, n: int, passes: int, idiomatic_max: int) -> dict[str, Any]:
    ca_cert = x509.load_pem_x509_certificate((FIXTURES / f"ca-{ca_name}.crt").read_bytes())
    ca_key = load_private_key((FIXTURES / f"ca-{ca_name}.key").read_bytes(), None)
    entries = entries_for(n, seed=n)
    # Interleave portal and ceiling passes so load spikes hit both alike.
    portal_s = ceiling_s = float("inf")
    portal_der = ceiling_der = b""
    for _ in range(passes):
        seconds, portal_der = timed(portal, ca_cert, ca_key, entries)
        portal_s = min(portal_s, seconds)
        seconds, ceiling_der = timed(ceiling, ca_cert, ca_key, entries)
        ceiling_s = min(ceiling_s, seconds)
    parsed = x509.load_der_x509_crl(portal_der)
    assert len(parsed) == n, f"portal CRL has {len(parsed)} entries, expected {n}"
    same = portal_der == ceiling_der if ca_name.startswith("rsa") else None
    result: dict[str, Any] = {
        "ca": ca_name,
        "entries": n,
        "der_bytes": len(portal_der),
        "portal_s": portal_s,
        "ceiling_s": ceiling_s,
        "ratio": ceiling_s / portal_s,
        "same_der_as_ceiling": same,
        "idiomatic_s": None,
    }
    if n <= idiomatic_max:
        seconds, idiomatic_der = timed(idiomatic, ca_cert, ca_key, entries)
        result["idiomatic_s"] = seconds
        if ca_name.startswith("rsa"):
            assert idiomatic_der == portal_der, "the idiomatic CRL differs from the portal's"
    return result


def report(results: list[dict[str, Any]]) -> str:
    lines = [
        f"{'CA':<8} {'entries':>8} {'DER MB':>7} {'portal s':>9} {'ceiling s':>10} {'ratio':>6} "
        f"{'idiomatic s':>12} {'same DER':>9}",
    ]
    for r in results:
        idiom = f"{r['idiomatic_s']:.2f}" if r["idiomatic_s"] is not None else "skipped"
        same = {True: "yes", False: "NO", None: "n/a"}[r["same_der_as_ceiling"]]
        lines.append(
            f"{r['ca']:<8} {r['entries']:>8,} {r['der_bytes'] / 1e6:>7.2f} {r['portal_s']:>9.3f} "
            f"{r['ceiling_s']:>10.3f} {r['ratio']:>6.2f} {idiom:>12} {same:>9}"
        )
    lines.append(
        "ratio = ceiling / portal (1.00: no overhead). same DER: RSA only (ECDSA signatures are randomised). "
        f"Target: 100,000 entries in <= {TARGET_SECONDS_100K:.0f} s."
    )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--sizes", default="1000,10000,100000", help="numbers of revoked entries")
    parser.add_argument("--cas", default="rsa2048,p384", help="fixture CAs (tests/fixtures/pki/ca-<name>.*)")
    parser.add_argument("--passes", type=int, default=3, help="passes per measurement; the best one counts")
    parser.add_argument(
        "--idiomatic-max", type=int, default=100_000, help="largest size for the quadratic add_revoked_certificate loop"
    )
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    cas = [c.strip() for c in args.cas.split(",") if c.strip()]
    print(
        f"CRL build + sign + DER, best of {args.passes} (1-min load average {os.getloadavg()[0]:.2f}) ...", flush=True
    )
    results = []
    for ca_name in cas:
        for n in sizes:
            print(f"  {ca_name}: {n:,} entries ...", flush=True)
            results.append(run(ca_name, n, args.passes, args.idiomatic_max))
    print()
    print(report(results))
    worst_100k = [r["portal_s"] for r in results if r["entries"] == 100_000]
    met = all(s <= TARGET_SECONDS_100K for s in worst_100k) if worst_100k else None
    if worst_100k:
        print(f"100,000 entries: {'MET' if met else 'MISSED'} (slowest {max(worst_100k):.2f} s)")
    OUT.mkdir(parents=True, exist_ok=True)
    result = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": len(os.sched_getaffinity(0)),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "cryptography": cryptography.__version__,
        "passes": args.passes,
        "target_seconds_100k": TARGET_SECONDS_100K,
        "target_met": met,
        "results": results,
    }
    (OUT / "crl.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {OUT / 'crl.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
