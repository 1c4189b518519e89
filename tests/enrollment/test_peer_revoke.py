"""Revoking a peer: owners their own ("my laptop was stolen"), CA admins any; pages, API, bundles."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from rest_framework.test import APIClient

from authority.models import AuditEvent, Certificate
from authority.revocation import crl_publish
from bundles import selectors as bundle_selectors
from enrollment.models import Peer
from enrollment.services import EnrollmentError, peer_register, peer_revoke
from tests.api.conftest import token_client
from tests.bundles.conftest import ANY_CSR, issue, render
from tests.conftest import login

pytestmark = pytest.mark.django_db


@pytest.fixture
def laptop(ca: Any, owner: Any, admin: Any) -> Peer:
    peer, _ = issue(owner, admin, "laptop.example.com")
    return peer


def test_the_owner_revokes_a_stolen_laptop_and_the_fqdn_is_free_again(laptop: Peer, owner: Any) -> None:
    revoked = peer_revoke(peer_id=laptop.pk, user=owner, reason="keyCompromise", comment="stolen on the train")

    assert revoked.status == "revoked"
    certificate = Certificate.objects.get(fqdn="laptop.example.com")
    assert certificate.revocation_reason == "keyCompromise"
    assert certificate.revocation_comment == "stolen on the train"
    event = AuditEvent.objects.get(action="certificate.revoked")
    assert event.actor == "user:alice"
    assert event.data["peer"] == laptop.pk
    again = peer_register(
        owner=owner, fqdn="laptop.example.com", kind="client", networks=[], address=None, csr_pem=ANY_CSR, actor=owner
    )
    assert again.status == "pending"


@pytest.mark.parametrize(("persona", "status"), [("other_user", 404), ("auditor", 403)])
def test_strangers_and_auditors_cannot_revoke(laptop: Peer, persona: str, status: int, request: Any) -> None:
    with pytest.raises(EnrollmentError) as refused:
        peer_revoke(peer_id=laptop.pk, user=request.getfixturevalue(persona), reason="keyCompromise")

    assert refused.value.status == status
    laptop.refresh_from_db()
    assert laptop.status == "issued"


def test_owners_may_not_claim_admin_reasons(laptop: Peer, owner: Any, second_admin: Any) -> None:
    with pytest.raises(EnrollmentError, match="choose one of"):
        peer_revoke(peer_id=laptop.pk, user=owner, reason="privilegeWithdrawn")

    revoked = peer_revoke(peer_id=laptop.pk, user=second_admin, reason="privilegeWithdrawn")

    assert revoked.status == "revoked"


def test_a_pending_peer_cannot_be_revoked(ca: Any, owner: Any) -> None:
    pending = peer_register(
        owner=owner, fqdn="new.example.com", kind="client", networks=[], address=None, csr_pem=ANY_CSR, actor=owner
    )

    with pytest.raises(EnrollmentError) as refused:
        peer_revoke(peer_id=pending.pk, user=owner, reason="keyCompromise")

    assert refused.value.status == 409


def test_the_revoke_page_asks_for_confirmation(laptop: Peer, owner: Any) -> None:
    client = Client()
    login(client, owner)

    page = client.get(f"/peers/{laptop.pk}/revoke/")
    unconfirmed = client.post(f"/peers/{laptop.pk}/revoke/", {"reason": "keyCompromise"})
    laptop.refresh_from_db()
    assert laptop.status == "issued"
    done = client.post(f"/peers/{laptop.pk}/revoke/", {"reason": "keyCompromise", "confirm": "on"})

    assert page.status_code == 200
    assert "Revoke the certificate" in page.content.decode()
    assert "privilege withdrawn" not in page.content.decode()  # an owner's choice of reasons
    assert unconfirmed.status_code == 200
    assert "This field is required" in unconfirmed.content.decode()
    assert done.status_code == 302
    laptop.refresh_from_db()
    assert laptop.status == "revoked"
    assert 'id="revoked-note"' in client.get(f"/peers/{laptop.pk}/").content.decode()


def test_the_revoke_page_is_404_for_strangers_and_403_for_auditors(laptop: Peer, other_user: Any, auditor: Any) -> None:
    stranger, watcher = Client(), Client()
    login(stranger, other_user)
    login(watcher, auditor)

    assert stranger.get(f"/peers/{laptop.pk}/revoke/").status_code == 404
    assert watcher.get(f"/peers/{laptop.pk}/revoke/").status_code == 403
    assert watcher.post(f"/peers/{laptop.pk}/revoke/", {"reason": "keyCompromise", "confirm": "on"}).status_code == 403
    laptop.refresh_from_db()
    assert laptop.status == "issued"


def test_the_api_revokes_and_lists_revoked_peers(laptop: Peer, owner: Any, admin: Any) -> None:
    api = token_client(owner)

    response = api.post(f"/api/v1/peers/{laptop.pk}/revoke", {"reason": "keyCompromise"}, format="json")
    again = api.post(f"/api/v1/peers/{laptop.pk}/revoke", {"reason": "keyCompromise"}, format="json")
    bad = token_client(admin).post(f"/api/v1/peers/{laptop.pk}/revoke", {"reason": "hold"}, format="json")

    assert response.status_code == 200
    assert response.json()["status"] == "revoked"
    assert again.status_code == 409
    assert bad.status_code == 400
    assert set(bad.json()["errors"]) == {"reason"}
    listed = token_client(admin).get("/api/v1/peers?status=revoked").json()
    assert [p["fqdn"] for p in listed["results"]] == ["laptop.example.com"]
    assert token_client(admin).get("/api/v1/peers?status=issued").json()["results"] == []


def test_a_revocation_reaches_the_gateway_policy_and_every_bundle_ships_the_crl(
    gateway: Peer, client_peer: Peer, owner: Any, admin: Any
) -> None:
    laptop, _ = issue(owner, admin, "laptop.example.com")
    render(gateway)
    render(client_peer)
    assert '"laptop.example.com"' in (render(gateway).text_of("isakmpd/isakmpd.policy") or "")

    peer_revoke(peer_id=laptop.pk, user=owner, reason="keyCompromise")
    crl = crl_publish(trigger="revocation")

    stale = bundle_selectors.stale_peer_ids()
    assert stale == [gateway.pk, client_peer.pk]
    gateway_bundle = render(gateway)
    client_bundle = render(client_peer)
    assert '"laptop.example.com"' not in (gateway_bundle.text_of("isakmpd/isakmpd.policy") or "")
    assert client_bundle.text_of("isakmpd/crls/ca.crl") == crl.pem
    assert gateway_bundle.crl_number == client_bundle.crl_number == crl.number
    assert bundle_selectors.stale_peer_ids() == []
    assert APIClient().get("/crl.der").status_code == 200
