"""The API's side of overlapping networks (issue 10 F3): 400 on registration, 409 on approval without
``accept_overlap_with``, and the acknowledgement in the audit log."""

from __future__ import annotations

from typing import Any

import pytest

from authority.models import AuditEvent
from enrollment.models import Peer
from tests.api.conftest import ANY_FQDN_CSR, register, token_client
from tests.bundles.conftest import issue

pytestmark = pytest.mark.django_db


@pytest.fixture
def branch(gateway: Peer, owner: Any, admin: Any) -> Peer:
    peer, _ = issue(owner, admin, "branch.example.org", networks=("10.2.2.0/24",))
    return peer


def _approve(user: Any, peer: Peer, body: Any = None) -> Any:
    return token_client(user).post(f"/api/v1/peers/{peer.pk}/approve", body, format="json")


def test_mallory_cannot_register_alices_branch_network(branch: Peer, other_user: Any) -> None:
    body = {"fqdn": "hijack1.example.org", "kind": "client", "networks": ["10.2.2.0/24"], "csr": ANY_FQDN_CSR}

    response = token_client(other_user).post("/api/v1/peers", body, format="json")

    assert response.status_code == 400
    assert response.json() == {
        "errors": {
            "networks": [
                "10.2.2.0/24 overlaps a network already in use on this VPN; "
                "if it really is behind this peer, ask a CA admin"
            ]
        }
    }


def test_an_overlap_is_approved_only_with_the_acknowledgement(
    branch: Peer, gateway: Peer, admin: Any, second_admin: Any
) -> None:
    lab = register(admin, fqdn="lab.example.org", csr=ANY_FQDN_CSR, networks=["10.2.0.0/16", "10.1.1.0/28"])

    refused = _approve(second_admin, lab)
    partly = _approve(second_admin, lab, {"accept_overlap_with": [branch.pk]})
    accepted = _approve(second_admin, lab, {"accept_overlap_with": [gateway.pk, branch.pk]})

    assert refused.status_code == 409
    message = refused.json()["errors"]["accept_overlap_with"][0]
    assert f"of branch.example.org (peer {branch.pk})" in message
    assert f"of the VPN gateway www.example.com (peer {gateway.pk})" in message
    assert partly.status_code == 409
    assert f"peer {gateway.pk})" in partly.json()["errors"]["accept_overlap_with"][0]
    assert accepted.status_code == 200
    assert accepted.json()["status"] == "approved"
    event = AuditEvent.objects.get(action="peer.approved", target=f"peer:{lab.pk}")
    assert sorted((o["network"], o["overlaps"], o["peer"]) for o in event.data["overlaps_accepted"]) == [
        ("10.1.1.0/28", "10.1.1.0/24", gateway.pk),
        ("10.2.0.0/16", "10.2.2.0/24", branch.pk),
    ]


@pytest.mark.parametrize("value", ["all", [0], ["x"], [True], list(range(1, 102)), {"peer": 1}])
def test_a_malformed_acknowledgement_is_a_400(branch: Peer, admin: Any, second_admin: Any, value: Any) -> None:
    lab = register(admin, fqdn="lab.example.org", csr=ANY_FQDN_CSR, networks=["10.2.2.0/25"])

    response = _approve(second_admin, lab, {"accept_overlap_with": value})

    assert response.status_code == 400
    assert list(response.json()["errors"]) == ["accept_overlap_with"]
    lab.refresh_from_db()
    assert lab.decision == Peer.Decision.PENDING


def test_a_peer_without_overlaps_needs_no_acknowledgement(gateway: Peer, owner: Any, admin: Any) -> None:
    peer = register(owner, fqdn="shop.example.org", csr=ANY_FQDN_CSR, networks=["10.9.9.0/24"])

    assert _approve(admin, peer, {}).status_code == 200
    assert "overlaps_accepted" not in AuditEvent.objects.get(action="peer.approved", target=f"peer:{peer.pk}").data
