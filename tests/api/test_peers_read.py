"""GET /api/v1/peers and /api/v1/peers/{id}: who sees which peers, filters, pages (T23)."""

from __future__ import annotations

from typing import Any

import pytest

from authority.models import CertificateAuthority
from authority.services import certificate_issue
from enrollment.models import Peer
from enrollment.services import peer_approve, peer_reject
from tests.api.conftest import ANY_FQDN_CSR, register, token_client

pytestmark = pytest.mark.django_db

URL = "/api/v1/peers"


def _fqdns(response: Any) -> list[str]:
    assert response.status_code == 200
    return [peer["fqdn"] for peer in response.json()["results"]]


@pytest.fixture
def two_peers(owner: Any, other_user: Any) -> tuple[Peer, Peer]:
    mine = register(owner)
    theirs = register(other_user, fqdn="mallory.example.com", csr=ANY_FQDN_CSR)
    return mine, theirs


def test_it_lists_only_the_callers_own_peers(two_peers: tuple[Peer, Peer], owner: Any, other_user: Any) -> None:
    assert _fqdns(token_client(owner).get(URL)) == ["client.example.com"]
    assert _fqdns(token_client(other_user).get(URL)) == ["mallory.example.com"]


@pytest.mark.parametrize("persona", ["admin", "auditor"])
def test_it_lists_every_peer_for_admins_and_auditors(
    persona: str, two_peers: tuple[Peer, Peer], request: pytest.FixtureRequest
) -> None:
    response = token_client(request.getfixturevalue(persona)).get(URL)

    assert _fqdns(response) == ["mallory.example.com", "client.example.com"]  # newest first
    assert response.json()["count"] == 2


def test_it_gives_404_for_another_users_peer(two_peers: tuple[Peer, Peer], other_user: Any) -> None:
    mine, _ = two_peers

    response = token_client(other_user).get(f"{URL}/{mine.pk}")

    assert response.status_code == 404
    assert response.json() == {"errors": {"__all__": ["no such peer"]}}


def test_it_gives_the_same_404_for_a_peer_that_does_not_exist(other_user: Any) -> None:
    response = token_client(other_user).get(f"{URL}/999999")

    assert response.status_code == 404
    assert response.json() == {"errors": {"__all__": ["no such peer"]}}


@pytest.mark.parametrize("raw_id", ["abc", "0", "-1", "1.0", "%EF%BC%91", "9" * 19, "1_0"])
def test_it_gives_a_json_404_for_an_id_that_is_not_one(raw_id: str, owner: Any) -> None:
    response = token_client(owner).get(f"{URL}/{raw_id}")

    assert response.status_code == 404
    assert "errors" in response.json()


def test_it_shows_one_peer(two_peers: tuple[Peer, Peer], owner: Any) -> None:
    mine, _ = two_peers

    data = token_client(owner).get(f"{URL}/{mine.pk}").json()

    assert data["id"] == mine.pk
    assert data["fqdn"] == "client.example.com"
    assert (data["status"], data["progress"], data["owner"], data["certificate"]) == (
        "pending",
        "pending",
        "alice",
        None,
    )


def test_it_shows_the_issued_certificate(ca: CertificateAuthority, owner: Any, admin: Any) -> None:
    peer = register(owner)
    approved = peer_approve(peer_id=peer.pk, approver=admin, actor=admin, enqueue=False)
    assert approved.certificate_request is not None
    certificate = certificate_issue(request_id=approved.certificate_request.pk)
    assert certificate is not None

    data = token_client(owner).get(f"{URL}/{peer.pk}").json()

    assert (data["status"], data["progress"]) == ("issued", "issued")
    assert data["certificate"] == {
        "serial": certificate.serial,
        "not_before": data["certificate"]["not_before"],
        "not_after": data["certificate"]["not_after"],
        "fingerprint_sha256": certificate.fingerprint_sha256,
        "pem": certificate.pem,
    }
    assert data["certificate"]["pem"].startswith("-----BEGIN CERTIFICATE-----")
    assert "PRIVATE KEY" not in str(data)


def test_it_filters_by_status_kind_and_fqdn(ca: CertificateAuthority, owner: Any, admin: Any) -> None:
    pending = register(owner, fqdn="pending.example.com", csr=ANY_FQDN_CSR)
    rejected = register(owner, fqdn="rejected.example.com", csr=ANY_FQDN_CSR)
    peer_reject(peer_id=rejected.pk, approver=admin, reason="no", actor=admin)
    approved = register(owner, fqdn="approved.example.com", csr=ANY_FQDN_CSR)
    peer_approve(peer_id=approved.pk, approver=admin, actor=admin, enqueue=False)
    issued = register(owner, fqdn="issued.example.com", csr=ANY_FQDN_CSR)
    request = peer_approve(peer_id=issued.pk, approver=admin, actor=admin, enqueue=False).certificate_request
    assert request is not None
    certificate_issue(request_id=request.pk)
    gateway = register(admin, fqdn="gw.example.com", csr=ANY_FQDN_CSR, kind="server", address="192.0.2.1")
    client = token_client(admin)

    assert _fqdns(client.get(URL, {"status": "pending"})) == [gateway.fqdn, pending.fqdn]
    assert _fqdns(client.get(URL, {"status": "rejected"})) == [rejected.fqdn]
    assert _fqdns(client.get(URL, {"status": "approved"})) == [approved.fqdn]
    assert _fqdns(client.get(URL, {"status": "issued"})) == [issued.fqdn]
    assert _fqdns(client.get(URL, {"status": "revoked"})) == []
    assert _fqdns(client.get(URL, {"kind": "server"})) == [gateway.fqdn]
    assert _fqdns(client.get(URL, {"fqdn": "issued.example.com"})) == [issued.fqdn]
    assert _fqdns(token_client(owner).get(URL, {"kind": "server"})) == []


@pytest.mark.parametrize(
    "params", [{"status": "lost"}, {"kind": "router"}, {"fqdn": "x" * 200}, {"fqdn": "a\x00b"}], ids=str
)
def test_it_gives_400_for_a_bad_filter(params: dict[str, str], owner: Any) -> None:
    response = token_client(owner).get(URL, params)

    assert response.status_code == 400
    assert set(response.json()["errors"]) == set(params)


def test_it_pages_the_list(owner: Any) -> None:
    for i in range(3):
        register(owner, fqdn=f"host{i}.example.com", csr=ANY_FQDN_CSR)
    client = token_client(owner)

    page = client.get(URL, {"limit": 2}).json()
    rest = client.get(URL, {"limit": 2, "offset": 2}).json()

    assert page["count"] == 3
    assert [p["fqdn"] for p in page["results"]] == ["host2.example.com", "host1.example.com"]
    assert page["next"] is not None
    assert [p["fqdn"] for p in rest["results"]] == ["host0.example.com"]


@pytest.mark.parametrize(
    "params",
    [{"limit": 10**30}, {"limit": 1001}, {"limit": 0}, {"limit": -5}, {"offset": "x"}, {"offset": 10**30},
     {"offset": "1.5"}, {"limit": "\uff11"}],
    ids=str,
)  # fmt: skip
def test_it_gives_400_for_bad_paging(params: dict[str, Any], owner: Any) -> None:
    register(owner)

    response = token_client(owner).get(URL, params)

    assert response.status_code == 400
    assert set(response.json()["errors"]) == set(params)


def test_it_gives_400_for_a_repeated_query_parameter(owner: Any) -> None:
    response = token_client(owner).get(f"{URL}?kind=client&kind=server")

    assert response.status_code == 400
    assert response.json() == {"errors": {"kind": ["give this query parameter once"]}}


def test_it_ignores_a_format_it_does_not_offer(owner: Any) -> None:
    register(owner)

    response = token_client(owner).get(URL, {"format": "csv"})

    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"


def test_it_shows_an_owner_their_peer_in_two_queries(
    two_peers: tuple[Peer, Peer], owner: Any, django_assert_num_queries: Any
) -> None:
    mine, _ = two_peers
    client = token_client(owner)

    with django_assert_num_queries(2):  # the token with its user, the peer with what it shows; no role lookup
        response = client.get(f"{URL}/{mine.pk}")

    assert response.status_code == 200


@pytest.mark.parametrize("persona", ["admin", "auditor"])
def test_it_shows_another_users_peer_to_admins_and_auditors(
    persona: str, two_peers: tuple[Peer, Peer], request: pytest.FixtureRequest
) -> None:
    mine, _ = two_peers

    response = token_client(request.getfixturevalue(persona)).get(f"{URL}/{mine.pk}")

    assert response.status_code == 200
    assert response.json()["owner"] == "alice"
