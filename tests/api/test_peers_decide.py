"""POST /api/v1/peers/{id}/approve and /reject: roles, states, separation of duties (T16, T26, T29)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from authority.models import AuditEvent, CertificateAuthority, CertificateRequest
from enrollment.models import Peer
from tests.api.conftest import ANY_FQDN_CSR, register, token_client

pytestmark = pytest.mark.django_db


def _approve(user: Any, peer: Peer, body: Any = None) -> Any:
    return token_client(user).post(f"/api/v1/peers/{peer.pk}/approve", body, format="json")


def _reject(user: Any, peer: Peer, body: Any) -> Any:
    # json.dumps escapes what the client's renderer cannot encode (a lone surrogate) as \uXXXX.
    return token_client(user).post(f"/api/v1/peers/{peer.pk}/reject", json.dumps(body), content_type="application/json")


def test_it_approves_a_pending_peer(ca: CertificateAuthority, owner_peer: Peer, admin: Any) -> None:
    response = _approve(admin, owner_peer)

    assert response.status_code == 200
    data = response.json()
    assert (data["id"], data["status"], data["progress"], data["certificate"]) == (
        owner_peer.pk, "approved", "approved", None,
    )  # fmt: skip
    owner_peer.refresh_from_db()
    assert owner_peer.decided_by == admin
    request = owner_peer.certificate_request
    assert request is not None
    assert request.status == CertificateRequest.Status.PENDING
    assert request.validity_days == 365
    assert AuditEvent.objects.filter(action="peer.approved", actor="user:carol").exists()


def test_it_accepts_an_empty_body_and_an_empty_object(ca: CertificateAuthority, owner: Any, admin: Any) -> None:
    first = register(owner)
    second = register(owner, fqdn="second.example.com", csr=ANY_FQDN_CSR)

    assert token_client(admin).post(f"/api/v1/peers/{first.pk}/approve").status_code == 200
    assert _approve(admin, second, {}).status_code == 200


@pytest.mark.parametrize("body", [{"validity_days": 3650}, {"is_ca": True}, {"profile": "subca"}, [], "yes"], ids=str)
def test_it_refuses_input_to_an_approval(body: Any, ca: CertificateAuthority, owner_peer: Peer, admin: Any) -> None:
    response = _approve(admin, owner_peer, body)

    assert response.status_code == 400
    owner_peer.refresh_from_db()
    assert owner_peer.decision == Peer.Decision.PENDING
    assert not CertificateRequest.objects.exists()


def test_it_gives_409_for_a_second_approval(
    ca: CertificateAuthority, owner_peer: Peer, admin: Any, second_admin: Any
) -> None:
    assert _approve(admin, owner_peer).status_code == 200

    response = _approve(second_admin, owner_peer)

    assert response.status_code == 409
    assert "not pending" in response.json()["errors"]["__all__"][0]
    assert CertificateRequest.objects.count() == 1
    assert AuditEvent.objects.filter(action="peer.approved").count() == 1


def test_it_refuses_self_approval_with_403_and_audits_it(ca: CertificateAuthority, admin: Any) -> None:
    gateway = register(admin, fqdn="vpn.example.com", csr=ANY_FQDN_CSR, kind="server", address="192.0.2.1")

    response = _approve(admin, gateway)

    assert response.status_code == 403
    assert "yourself" in response.json()["errors"]["__all__"][0]
    gateway.refresh_from_db()
    assert gateway.decision == Peer.Decision.PENDING
    assert AuditEvent.objects.filter(action="peer.approve_refused", target=f"peer:{gateway.pk}").exists()


def test_it_lets_a_second_admin_approve_a_gateway(ca: CertificateAuthority, admin: Any, second_admin: Any) -> None:
    gateway = register(admin, fqdn="vpn.example.com", csr=ANY_FQDN_CSR, kind="server", address="192.0.2.1")

    response = _approve(second_admin, gateway)

    assert response.status_code == 200
    assert response.json()["status"] == "approved"


def test_it_gives_409_while_the_portal_is_still_making_the_key(
    ca: CertificateAuthority, owner: Any, admin: Any
) -> None:
    peer_id = token_client(owner).post("/api/v1/peers", {"fqdn": "laptop.example.com"}, format="json").json()["id"]

    response = token_client(admin).post(f"/api/v1/peers/{peer_id}/approve")

    assert response.status_code == 409
    assert "still being made" in response.json()["errors"]["__all__"][0]


def test_it_gives_409_when_there_is_no_ca(owner_peer: Peer, admin: Any) -> None:
    response = _approve(admin, owner_peer)

    assert response.status_code == 409
    owner_peer.refresh_from_db()
    assert owner_peer.decision == Peer.Decision.PENDING


def test_it_rejects_with_a_reason_the_owner_sees(owner_peer: Peer, owner: Any, admin: Any) -> None:
    response = _reject(admin, owner_peer, {"reason": "unknown laptop"})

    assert response.status_code == 200
    assert (response.json()["status"], response.json()["decision_reason"]) == ("rejected", "unknown laptop")
    seen = token_client(owner).get(f"/api/v1/peers/{owner_peer.pk}").json()
    assert seen["decision_reason"] == "unknown laptop"
    assert AuditEvent.objects.filter(action="peer.rejected", target=f"peer:{owner_peer.pk}").exists()


@pytest.mark.parametrize(
    ("body", "field"),
    [({}, "reason"), ({"reason": "  "}, "reason"), ({"reason": 5}, "reason"), ({"reason": "x" * 501}, "reason"),
     ({"reason": "x", "notify": False}, "notify"), ({"reason": "a\x00b"}, "reason"), ({"reason": "\ud800"}, "reason")],
    ids=["missing", "blank", "number", "too long", "unknown field", "NUL", "lone surrogate"],
)  # fmt: skip
def test_it_refuses_a_bad_rejection(body: Any, field: str, owner_peer: Peer, admin: Any) -> None:
    response = _reject(admin, owner_peer, body)

    assert response.status_code == 400
    assert field in response.json()["errors"]
    owner_peer.refresh_from_db()
    assert owner_peer.decision == Peer.Decision.PENDING


def test_it_gives_409_for_decisions_on_a_decided_peer(ca: CertificateAuthority, owner_peer: Peer, admin: Any) -> None:
    assert _reject(admin, owner_peer, {"reason": "no"}).status_code == 200

    assert _reject(admin, owner_peer, {"reason": "still no"}).status_code == 409
    assert _approve(admin, owner_peer).status_code == 409


@pytest.mark.parametrize("action", ["approve", "reject"])
def test_it_gives_403_to_the_owner_and_404_to_others(
    action: str, owner_peer: Peer, owner: Any, other_user: Any
) -> None:
    url = f"/api/v1/peers/{owner_peer.pk}/{action}"
    body = {"reason": "x"} if action == "reject" else {}

    assert token_client(owner).post(url, body, format="json").status_code == 403
    assert token_client(other_user).post(url, body, format="json").status_code == 404
    owner_peer.refresh_from_db()
    assert owner_peer.decision == Peer.Decision.PENDING


@pytest.mark.parametrize("action", ["approve", "reject"])
def test_it_refuses_get_on_decisions(action: str, owner_peer: Peer, admin: Any) -> None:
    response = token_client(admin).get(f"/api/v1/peers/{owner_peer.pk}/{action}")

    assert response.status_code == 405
    assert "errors" in response.json()


@pytest.mark.parametrize(
    ("action", "body"),
    [("approve", {}), ("approve", {"validity_days": 1}), ("reject", {"reason": "x"}), ("reject", {})],
    ids=["approve", "approve, bad body", "reject", "reject, bad body"],
)
def test_it_gives_an_admin_404_for_a_peer_that_does_not_exist(action: str, body: Any, admin: Any) -> None:
    response = token_client(admin).post(f"/api/v1/peers/999999/{action}", body, format="json")

    assert response.status_code == 404  # before the 400 for the body, as for a peer the caller cannot see
    assert response.json() == {"errors": {"__all__": ["no such peer"]}}
    assert not AuditEvent.objects.filter(target="peer:999999").exists()


def test_it_answers_an_approval_with_the_peer_as_committed(
    ca: CertificateAuthority, owner: Any, owner_peer: Peer, admin: Any
) -> None:
    approved = _approve(admin, owner_peer).json()

    assert approved == token_client(owner).get(f"/api/v1/peers/{owner_peer.pk}").json()


def test_it_answers_a_rejection_with_the_peer_as_committed(owner: Any, owner_peer: Peer, admin: Any) -> None:
    rejected = _reject(admin, owner_peer, {"reason": "unknown laptop"}).json()

    assert rejected == token_client(owner).get(f"/api/v1/peers/{owner_peer.pk}").json()


def test_it_refuses_a_reason_over_the_limit_even_with_spaces_around_it(owner_peer: Peer, admin: Any) -> None:
    response = _reject(admin, owner_peer, {"reason": " " + "x" * 500})  # 500 once trimmed, 501 as sent

    assert response.status_code == 400
    assert "reason" in response.json()["errors"]
