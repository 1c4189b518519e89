"""Fixtures for the auditor's pages and selectors: a small world of four certificates, and many.

Certificates are made through the real services (``tests.bundles.conftest.issue``); their dates
and revocation are then set on the row, since that is what the filters read.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from django.http import StreamingHttpResponse
from django.test import Client
from django.utils import timezone

from authority.models import Certificate, CertificateAuthority, CertificateRequest
from enrollment.models import Peer
from tests.bundles.conftest import issue
from tests.conftest import login

ALPHA, BETA, GAMMA, DELTA = "alpha.example.com", "beta.example.com", "gamma.example.org", "delta.example.com"


@dataclass
class World:
    """Four certificates: alpha (alice, expiring in 10 days), beta (alice, revoked), gamma (mallory,
    expired), delta (mallory, valid for 100 days); issued on the 10th of January to April 2025."""

    now: datetime
    certificates: dict[str, Certificate]

    def serial(self, fqdn: str) -> str:
        return self.certificates[fqdn].serial


def at(year: int, month: int, day: int, hour: int = 12) -> datetime:
    return datetime(year, month, day, hour, tzinfo=UTC)


def build_world(owner: Any, other_user: Any, approver: Any) -> World:
    for fqdn, who in ((ALPHA, owner), (BETA, owner), (GAMMA, other_user), (DELTA, other_user)):
        issue(who, approver, fqdn)
    now = timezone.now()
    rows = {
        ALPHA: {"issued_at": at(2025, 1, 10), "not_after": now + timedelta(days=10)},
        BETA: {
            "issued_at": at(2025, 2, 10),
            "not_after": now + timedelta(days=200),
            "revoked_at": now - timedelta(hours=1),
            "revocation_reason": "keyCompromise",
            "revoked_by": "user:carol",
        },
        GAMMA: {"issued_at": at(2025, 3, 10), "not_after": now - timedelta(days=1)},
        DELTA: {"issued_at": at(2025, 4, 10), "not_after": now + timedelta(days=100)},
    }
    for fqdn, values in rows.items():
        assert Certificate.objects.filter(fqdn=fqdn).update(**values) == 1
    return World(now=now, certificates={c.fqdn: c for c in Certificate.objects.all()})


def bulk_certificates(ca: CertificateAuthority, owner: Any, approver: Any, n: int, *, prefix: str = "bulk") -> None:
    """``n`` issued peers with certificate rows, straight into the tables (fast; not real DER)."""
    now = timezone.now()
    requests = CertificateRequest.objects.bulk_create(
        CertificateRequest(
            ca=ca,
            fqdn=f"{prefix}{i}.example.com",
            kind="client",
            public_key_der=b"k",
            key_type="rsa-2048",
            validity_days=365,
            status="issued",
            requested_by=owner,
            approved_by=approver,
            queued_at=now,
        )
        for i in range(n)
    )
    Peer.objects.bulk_create(
        Peer(
            fqdn=r.fqdn,
            owner=owner,
            decision="approved",
            decided_by=approver,
            decided_at=now,
            certificate_request=r,
            csr_pem="x",
        )
        for r in requests
    )
    Certificate.objects.bulk_create(
        Certificate(
            request=r,
            ca=ca,
            serial=f"{prefix.encode().hex()}{i:08x}",
            fqdn=r.fqdn,
            der=b"x",
            fingerprint_sha256=hashlib.sha256(f"{prefix}-{i}".encode()).hexdigest(),
            not_before=now,
            not_after=now + timedelta(days=365 - i),
        )
        for i, r in enumerate(requests)
    )


@pytest.fixture
def world(ca: CertificateAuthority, owner: Any, other_user: Any, admin: Any) -> World:
    return build_world(owner, other_user, admin)


@pytest.fixture
def erin(auditor: Any) -> Client:
    client = Client()
    login(client, auditor)
    return client


def body(response: Any) -> str:
    if isinstance(response, StreamingHttpResponse):
        return b"".join(response.streaming_content).decode()  # type: ignore[arg-type]
    return response.content.decode()


@pytest.fixture(autouse=True)
def checkpoint_file(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh CA_AUDIT_CHECKPOINT_FILE per test: never the var dir's, which a running portal appends to."""
    from django.conf import settings

    path = tmp_path_factory.mktemp("checkpoints") / "audit-checkpoints.log"
    monkeypatch.setattr(settings, "CA_AUDIT_CHECKPOINT_FILE", path)
    return path
