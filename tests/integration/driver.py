"""Runs inside a stack's environment (see stack.py): submits requests and reports the invariants.

python tests/integration/driver.py submit N        -> JSON list of request ids
python tests/integration/driver.py status          -> JSON with counts and invariant checks
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ca_portal.settings")

import django

django.setup()

from cryptography import x509  # noqa: E402
from django.db.models import Count  # noqa: E402

from ca_portal.authority.audit import audit_verify  # noqa: E402
from ca_portal.authority.models import Certificate, CertificateRequest, IssuanceIntent  # noqa: E402
from ca_portal.authority.services import active_ca, certificate_request_create  # noqa: E402

CSR = (Path(__file__).resolve().parents[1] / "fixtures" / "pki" / "client-nocn.csr").read_text()


def submit(count: int, prefix: str) -> list[int]:
    ids = []
    for i in range(count):
        request = certificate_request_create(
            fqdn=f"{prefix}{i}.example.com",
            kind="client",
            csr_pem=CSR,
            validity_days=30,
            requested_by=None,
            approved_by=None,
            actor="driver",
        )
        ids.append(request.pk)
    return ids


def status() -> dict[str, object]:
    ca = active_ca()
    assert ca is not None
    by_status = dict(CertificateRequest.objects.values_list("status").annotate(n=Count("id")))
    certs = list(Certificate.objects.select_related("request__intent"))
    bad = []
    for cert in certs:
        parsed = x509.load_der_x509_certificate(bytes(cert.der))
        intent = cert.request.intent
        if cert.serial != intent.serial or format(parsed.serial_number, "x") != cert.serial:
            bad.append(f"{cert.pk}: serial differs from its intent")
        if parsed.tbs_certificate_bytes != bytes(intent.tbs_der):
            bad.append(f"{cert.pk}: signed TBS differs from the recorded one")
        try:
            parsed.verify_directly_issued_by(ca.certificate)
        except Exception as exc:
            bad.append(f"{cert.pk}: signature does not verify: {exc}")
    per_request = CertificateRequest.objects.annotate(n=Count("certificate")).filter(n__gt=1).count()
    verify = audit_verify()
    return {
        "requests": CertificateRequest.objects.count(),
        "by_status": by_status,
        "certificates": len(certs),
        "intents": IssuanceIntent.objects.count(),
        "distinct_serials": len({c.serial for c in certs}),
        "requests_with_two_certs": per_request,
        "problems": bad,
        "audit_ok": verify.ok,
        "audit_events": verify.count,
        "audit_problem": verify.problem,
    }


if __name__ == "__main__":
    command = sys.argv[1]
    if command == "submit":
        print(json.dumps(submit(int(sys.argv[2]), sys.argv[3] if len(sys.argv) > 3 else "host")))
    elif command == "status":
        print(json.dumps(status()))
    else:
        raise SystemExit(f"unknown command {command}")
