"""Runs inside a stack's environment (see stack.py): submits requests and reports the invariants.

python devtools/driver.py submit N          -> JSON list of request ids
python devtools/driver.py submit-timed N    -> JSON {"ids", "elapsed"}: "elapsed" times the submissions
                                               only, not this process's start (slow on a loaded machine)
python devtools/driver.py status            -> JSON with counts and invariant checks
python devtools/driver.py portal FQDN       -> a peer whose key the signer makes: {"peer", "passphrase"}
python devtools/driver.py approve PEER      -> approve it as a CA admin
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ca_portal.settings")

import django  # noqa: E402

django.setup()

from cryptography import x509  # noqa: E402
from django.db.models import Count  # noqa: E402

from authority.audit import audit_verify  # noqa: E402
from authority.models import Certificate, CertificateRequest, IssuanceIntent  # noqa: E402
from authority.services import active_ca, certificate_request_create  # noqa: E402

CSR = (ROOT / "tests" / "fixtures" / "pki" / "client-nocn.csr").read_text()


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


def portal(fqdn: str) -> dict[str, object]:
    from django.contrib.auth.models import Group, User

    from enrollment.services import peer_register_full

    owner, _ = User.objects.get_or_create(username="driver-owner", defaults={"email": "owner@example.org"})
    registration = peer_register_full(
        owner=owner, fqdn=fqdn, kind="client", networks=[], address=None, csr_pem=None, actor="driver"
    )
    admin, created = User.objects.get_or_create(username="driver-admin")
    if created:
        admin.groups.add(Group.objects.get(name="ca-admin"))
    return {"peer": registration.peer.pk, "passphrase": registration.key_passphrase}


def approve(peer_id: int) -> dict[str, object]:
    from django.contrib.auth.models import User

    from enrollment.services import peer_approve

    peer = peer_approve(peer_id=peer_id, approver=User.objects.get(username="driver-admin"), actor="driver")
    return {"peer": peer.pk, "status": peer.status}


if __name__ == "__main__":
    command = sys.argv[1]
    if command == "submit":
        print(json.dumps(submit(int(sys.argv[2]), sys.argv[3] if len(sys.argv) > 3 else "host")))
    elif command == "submit-timed":
        started = time.monotonic()
        ids = submit(int(sys.argv[2]), sys.argv[3] if len(sys.argv) > 3 else "host")
        print(json.dumps({"ids": ids, "elapsed": time.monotonic() - started}))
    elif command == "status":
        print(json.dumps(status()))
    elif command == "portal":
        print(json.dumps(portal(sys.argv[2])))
    elif command == "approve":
        print(json.dumps(approve(int(sys.argv[2]))))
    else:
        raise SystemExit(f"unknown command {command}")
