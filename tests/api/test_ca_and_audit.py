"""GET /api/v1/ca and GET /api/v1/audit."""

from __future__ import annotations

from typing import Any

import pytest

from authority.models import AuditEvent, CertificateAuthority
from tests.api.conftest import register, token_client

pytestmark = pytest.mark.django_db


def test_it_gives_404_before_there_is_a_ca(owner: Any) -> None:
    response = token_client(owner).get("/api/v1/ca")

    assert response.status_code == 404
    assert response.json() == {"errors": {"__all__": ["there is no CA yet"]}}


def test_it_describes_the_ca(ca: CertificateAuthority, owner: Any) -> None:
    response = token_client(owner).get("/api/v1/ca")

    assert response.status_code == 200
    assert response.json() == {
        "certificate": ca.certificate_pem,
        "fingerprint_sha256": ca.fingerprint_sha256,
        "subject": ca.subject,
        "not_before": response.json()["not_before"],
        "not_after": response.json()["not_after"],
        "key_type": "rsa-2048",
        "legacy": False,
    }
    assert "CN=Fixture RSA CA" in response.json()["subject"]
    assert "PRIVATE" not in response.content.decode()


def test_it_lists_the_audit_log_newest_first(ca: CertificateAuthority, owner: Any, auditor: Any) -> None:
    peer = register(owner)

    data = token_client(auditor).get("/api/v1/audit").json()

    total = AuditEvent.objects.count()  # the CA import, the personas' role grants, the registration
    assert data["count"] == total
    first = data["results"][0]
    assert list(first) == ["seq", "at", "actor", "action", "target", "data", "hash"]
    assert (first["seq"], first["action"], first["target"], first["actor"]) == (
        total,
        "peer.registered",
        f"peer:{peer.pk}",
        "user:alice",
    )
    assert first["data"]["fqdn"] == "client.example.com"
    assert first["hash"] == AuditEvent.objects.get(seq=total).hash
    assert [r["seq"] for r in data["results"]] == list(range(total, 0, -1))
    assert data["results"][-1]["action"] == "ca.imported"


def test_it_filters_the_audit_log(ca: CertificateAuthority, owner: Any, admin: Any) -> None:
    peer = register(owner)
    client = token_client(admin)

    assert [e["seq"] for e in client.get("/api/v1/audit", {"action": "ca.imported"}).json()["results"]] == [1]
    assert [e["action"] for e in client.get("/api/v1/audit", {"target": f"peer:{peer.pk}"}).json()["results"]] == [
        "peer.registered"
    ]
    assert client.get("/api/v1/audit", {"action": "x" * 65}).status_code == 400


@pytest.mark.parametrize("persona", ["owner", "other_user"])
def test_it_keeps_the_audit_log_from_roaming_users(persona: str, request: pytest.FixtureRequest) -> None:
    response = token_client(request.getfixturevalue(persona)).get("/api/v1/audit")

    assert response.status_code == 403
    assert response.json() == {"errors": {"__all__": ["only CA admins and auditors may see this"]}}
