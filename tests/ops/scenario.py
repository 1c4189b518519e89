"""Runs inside a deployment (tests/ops/deployment.py): real work through the services, and its traces.

python tests/ops/scenario.py populate   -> users, a gateway and two laptops issued, one revoked, one renewed
                                           (bundle downloaded, the old certificate superseded), two CRLs,
                                           the gateway's bundle downloaded, a scheduled audit check; the state
python tests/ops/scenario.py state      -> the state: certificates with their revocations, CRL numbers, counts,
                                           the audit chain's verification and its last action
python tests/ops/scenario.py next       -> after a restore: publish a CRL and issue a new peer; their numbers
python tests/ops/scenario.py web        -> a failed and a good sign-in through the login page, then two pages
python tests/ops/scenario.py more FQDN  -> issue one more client peer (changes made after a backup)
"""

from __future__ import annotations

import json
import os
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ca_portal.settings")

import django

django.setup()

from cryptography import x509  # noqa: E402
from django.contrib.auth.models import Group, User  # noqa: E402
from django.utils import timezone  # noqa: E402

from authority import keystore  # noqa: E402
from authority.audit import audit_verify  # noqa: E402
from authority.audit_watch import audit_check  # noqa: E402
from authority.models import AuditEvent, Certificate, Crl  # noqa: E402
from authority.revocation import crl_publish  # noqa: E402
from authority.services import active_ca, certificate_issue  # noqa: E402
from bundles.models import Bundle, BundleDownload  # noqa: E402
from bundles.services import bundle_download, bundle_render  # noqa: E402
from enrollment.models import Peer  # noqa: E402
from enrollment.services import peer_approve, peer_register_full, peer_renew, peer_revoke, renewals_supersede  # noqa: E402

CSR = (Path(__file__).resolve().parents[1] / "fixtures" / "pki" / "client-nocn.csr").read_text()
PASSWORD = "correct horse battery"


def _user(name: str, *, admin: bool = False) -> User:
    user = User.objects.create_user(name, f"{name}@example.org", PASSWORD)
    if admin:
        user.groups.add(Group.objects.get(name="ca-admin"))
    return user


def _issued(peer_id: int, approver: User) -> Peer:
    peer = Peer.objects.get(pk=peer_id)
    if peer.decision == Peer.Decision.PENDING:
        peer = peer_approve(peer_id=peer_id, approver=approver, actor=approver, enqueue=False)
    assert peer.certificate_request is not None
    assert certificate_issue(request_id=peer.certificate_request.pk) is not None
    peer.refresh_from_db()
    assert peer.status == "issued", peer.status
    return peer


def issue(owner: User, approver: User, fqdn: str, **kwargs: Any) -> Peer:
    registration = peer_register_full(
        owner=owner,
        fqdn=fqdn,
        kind=kwargs.get("kind", "client"),
        networks=list(kwargs.get("networks", ())),
        address=kwargs.get("address"),
        csr_pem=CSR,
        actor=owner,
    )
    return _issued(registration.peer.pk, approver)


def _download(peer: Peer, user: User) -> None:
    outcome = bundle_render(peer_id=peer.pk)
    assert outcome.bundle is not None, outcome.reason
    bundle_download(peer_id=peer.pk, user=user, address="192.0.2.7", via="page")


def populate() -> dict[str, Any]:
    alice, carol, dave = _user("alice"), _user("carol", admin=True), _user("dave", admin=True)
    gateway = issue(carol, dave, "www.example.com", kind="server", networks=("10.1.1.0/24",), address="192.0.34.72")
    laptop1 = issue(alice, carol, "laptop1.example.com")
    laptop2 = issue(alice, carol, "laptop2.example.com", networks=("10.10.10.0/24",))
    peer_revoke(peer_id=laptop2.pk, user=alice, reason="keyCompromise", comment="stolen")
    crl_publish(trigger="revocation")
    renewal = _issued(peer_renew(peer_id=laptop1.pk, user=alice, csr_pem=CSR).peer.pk, carol)
    _download(renewal, alice)
    assert renewals_supersede(now=timezone.now() + timedelta(seconds=5), grace=timedelta(0)) == 1
    crl_publish(trigger="revocation")
    _download(gateway, carol)
    audit_check()
    return state()


def state() -> dict[str, Any]:
    ca = active_ca()
    assert ca is not None
    verify = audit_verify()
    last = AuditEvent.objects.order_by("-seq").first()
    rows = Certificate.objects.order_by("serial").values_list("serial", "fqdn", "revocation_reason", "revoked_at")
    return {
        "ca": ca.fingerprint_sha256,
        "certificates": [[serial, fqdn, reason or None, at and at.isoformat()] for serial, fqdn, reason, at in rows],
        "crl_numbers": sorted(Crl.objects.values_list("number", flat=True)),
        "peers": Peer.objects.count(),
        "bundles": Bundle.objects.count(),
        "downloads": BundleDownload.objects.count(),
        "users": sorted(User.objects.values_list("username", flat=True)),
        "audit": {"ok": verify.ok, "count": verify.count, "problem": verify.problem},
        "last_action": last.action if last else None,
    }


def next_after_restore() -> dict[str, Any]:
    crl = crl_publish(trigger="manual")
    peer = issue(User.objects.get(username="alice"), User.objects.get(username="carol"), "laptop3.example.com")
    certificate = Certificate.objects.get(request__peer=peer)
    ca = active_ca()
    assert ca is not None
    x509.load_der_x509_certificate(bytes(certificate.der)).verify_directly_issued_by(ca.certificate)
    return {"crl_number": crl.number, "serial": certificate.serial, "state": state()}


def more(fqdn: str) -> dict[str, Any]:
    issue(User.objects.get(username="alice"), User.objects.get(username="carol"), fqdn)
    return state()


def web() -> dict[str, Any]:
    from django.test import Client

    client = Client(HTTP_HOST="ca.example.org")
    failed = client.post("/login/", {"username": "alice", "password": "not the password"}, secure=True)
    signed_in = client.post("/login/", {"username": "alice", "password": PASSWORD}, secure=True)
    peers = client.get("/peers/", secure=True)
    home = client.get("/", secure=True)
    return {
        "failed": failed.status_code,
        "signed_in": signed_in.status_code,
        "peers": peers.status_code,
        "home": home.status_code,
        "state": state(),
    }


if __name__ == "__main__":
    keystore.enable_signing()  # this process plays the signer worker too
    command = sys.argv[1]
    if command == "populate":
        print(json.dumps(populate()))
    elif command == "state":
        print(json.dumps(state()))
    elif command == "next":
        print(json.dumps(next_after_restore()))
    elif command == "more":
        print(json.dumps(more(sys.argv[2])))
    elif command == "web":
        print(json.dumps(web()))
    else:
        raise SystemExit(f"unknown command {command}")
