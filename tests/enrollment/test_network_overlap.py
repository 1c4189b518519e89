"""A peer cannot claim another peer's networks (issue 10 F3; security.md T35).

A network that overlaps what a live peer holds (the VPN gateway's protected networks included) is
refused at registration for users, without naming the other peer. A CA admin's registration goes
on, and approving an overlap needs an acknowledgement of each peer it overlaps, shown on the approval
page and recorded in the ``peer.approved`` event. Approval checks again, so two requests for one
network that slipped past registration together cannot both be approved unseen.
"""

from __future__ import annotations

import html
import re
from typing import Any

import pytest
from django.contrib.messages import get_messages
from django.test import Client

from authority.models import AuditEvent, CertificateRequest
from enrollment import selectors
from enrollment.models import Peer
from enrollment.services import (
    EnrollmentError,
    peer_approve,
    peer_register,
    peer_reject,
    peer_renew,
    peer_revoke,
    policy_update,
    renewal_auto_approve,
)
from tests.bundles.conftest import ANY_CSR, issue, render
from tests.conftest import login

pytestmark = pytest.mark.django_db

QUEUE = "/peers/approvals/"
BRANCH_NET = "10.2.2.0/24"  # alice's branch office
GATEWAY_NET = "10.1.1.0/24"  # the gateway's LAN (the `gateway` fixture)


@pytest.fixture
def branch(gateway: Peer, owner: Any, admin: Any) -> Peer:
    """alice's issued client gateway with 10.2.2.0/24 behind it."""
    peer, _ = issue(owner, admin, "branch.example.org", networks=(BRANCH_NET,))
    return peer


def _register(owner: Any, fqdn: str, networks: list[str]) -> Peer:
    return peer_register(
        owner=owner, fqdn=fqdn, kind="client", networks=networks, address=None, csr_pem=ANY_CSR, actor=owner
    )


def _refused(owner: Any, fqdn: str, networks: list[str]) -> str:
    peers, events = Peer.objects.count(), AuditEvent.objects.count()
    with pytest.raises(EnrollmentError) as refused:
        _register(owner, fqdn, networks)
    assert (refused.value.field, refused.value.status) == ("networks", 400)
    assert (Peer.objects.count(), AuditEvent.objects.count()) == (peers, events)
    return str(refused.value)


# --- registration ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "networks",
    [
        [BRANCH_NET],  # the same network
        ["10.2.2.128/25"],  # a part of it
        ["10.2.0.0/16"],  # a supernet of it
        ["192.168.9.0/24", "10.2.2.0/23"],  # one of several
    ],
)
def test_a_user_cannot_claim_another_users_network(branch: Peer, other_user: Any, networks: list[str]) -> None:
    message = _refused(other_user, "hijack1.example.org", networks)

    assert "overlaps a network already in use on this VPN" in message
    # Nothing about the other peer: not its FQDN, its owner, or its network (unless the user typed it).
    assert "branch.example.org" not in message
    assert "alice" not in message
    if BRANCH_NET not in networks:
        assert BRANCH_NET not in message


@pytest.mark.parametrize("networks", [[GATEWAY_NET], ["10.1.1.0/28"], ["10.0.0.0/8"]])
def test_a_user_cannot_claim_the_gateways_lan_or_a_supernet_of_it(
    gateway: Peer, other_user: Any, networks: list[str]
) -> None:
    message = _refused(other_user, "hijack2.example.org", networks)

    # The gateway's networks are in every client's bundle: naming them tells nobody anything new.
    assert f"overlaps the VPN gateway's network {GATEWAY_NET}" in message


def test_a_user_is_told_which_of_their_own_peers_holds_the_network(branch: Peer, owner: Any) -> None:
    message = _refused(owner, "branch2.example.org", ["10.2.2.0/26"])

    assert f"10.2.2.0/26 overlaps {BRANCH_NET}, already behind your peer branch.example.org" == message


def test_a_pending_request_holds_its_network_too(gateway: Peer, owner: Any, other_user: Any) -> None:
    _register(owner, "branch.example.org", [BRANCH_NET])

    assert "already in use" in _refused(other_user, "hijack1.example.org", [BRANCH_NET])


def test_networks_of_rejected_and_revoked_peers_are_free_again(
    branch: Peer, owner: Any, other_user: Any, admin: Any
) -> None:
    pending = _register(owner, "branch3.example.org", ["10.3.3.0/24"])
    peer_reject(peer_id=pending.pk, approver=admin, reason="wrong office", actor=admin)
    peer_revoke(peer_id=branch.pk, user=owner, reason="cessationOfOperation")

    assert _register(other_user, "new3.example.org", ["10.3.3.0/24"]).networks == ["10.3.3.0/24"]
    assert _register(other_user, "new2.example.org", [BRANCH_NET]).networks == [BRANCH_NET]


def test_networks_that_touch_nobody_are_accepted(branch: Peer, other_user: Any) -> None:
    assert _register(other_user, "shop.example.org", ["10.2.3.0/24", "10.1.2.0/24"]).status == "pending"


def test_the_api_answers_400_on_networks_without_naming_the_other_peer(branch: Peer, other_user: Any) -> None:
    from tests.api.conftest import token_client

    body = {"fqdn": "hijack1.example.org", "networks": [BRANCH_NET], "csr": ANY_CSR}
    response = token_client(other_user).post("/api/v1/peers", body, format="json")

    assert response.status_code == 400
    errors = response.json()["errors"]
    assert list(errors) == ["networks"]
    assert "already in use" in errors["networks"][0]
    assert "branch.example.org" not in response.content.decode()


def test_the_register_page_shows_the_refusal_on_the_networks_field(
    client: Client, branch: Peer, other_user: Any
) -> None:
    login(client, other_user)
    form = {"fqdn": "hijack1.example.org", "kind": "client", "networks": BRANCH_NET, "key_source": "csr"}

    response = client.post("/peers/new/", {**form, "address": "", "csr": ANY_CSR})

    assert response.status_code == 200
    assert any("already in use" in e for e in response.context["form"].errors["networks"])
    assert not Peer.objects.filter(fqdn="hijack1.example.org").exists()


# --- approval -------------------------------------------------------------------------------------


@pytest.fixture
def overlapping(branch: Peer, admin: Any) -> Peer:
    """A CA admin's own registration overlapping alice's branch: it goes on, and waits for approval."""
    return _register(admin, "lab.example.org", ["10.2.2.0/25"])


def test_approving_an_overlap_without_the_acknowledgement_is_refused(
    overlapping: Peer, branch: Peer, second_admin: Any
) -> None:
    requests = CertificateRequest.objects.count()

    with pytest.raises(EnrollmentError) as refused:
        peer_approve(peer_id=overlapping.pk, approver=second_admin, actor=second_admin, enqueue=False)

    assert (refused.value.status, refused.value.field) == (409, "accept_overlap_with")
    # Admins are told exactly what they would accept.
    assert f"network 10.2.2.0/25 overlaps {BRANCH_NET} of branch.example.org (peer {branch.pk})" in str(refused.value)
    overlapping.refresh_from_db()
    assert overlapping.decision == Peer.Decision.PENDING
    assert CertificateRequest.objects.count() == requests


def test_an_acknowledged_overlap_is_approved_and_audited(overlapping: Peer, branch: Peer, second_admin: Any) -> None:
    approved = peer_approve(
        peer_id=overlapping.pk,
        approver=second_admin,
        actor=second_admin,
        enqueue=False,
        accept_overlap_with=[branch.pk],
    )

    assert approved.decision == Peer.Decision.APPROVED
    event = AuditEvent.objects.get(action="peer.approved", target=f"peer:{overlapping.pk}")
    assert event.actor == "user:dave"
    assert event.data["overlaps_accepted"] == [
        {"network": "10.2.2.0/25", "overlaps": BRANCH_NET, "peer": branch.pk, "fqdn": "branch.example.org"}
    ]


def test_an_acknowledgement_covers_only_the_peers_it_names(
    overlapping: Peer, branch: Peer, gateway: Peer, owner: Any, second_admin: Any, admin: Any
) -> None:
    # Meanwhile another peer took part of the same range: the acknowledgement given for alice's
    # branch alone does not cover it.
    other = _register(admin, "lab2.example.org", ["10.2.2.0/27"])

    with pytest.raises(EnrollmentError, match=f"lab2.example.org \\(peer {other.pk}, pending\\)"):
        peer_approve(
            peer_id=overlapping.pk,
            approver=second_admin,
            actor=second_admin,
            enqueue=False,
            accept_overlap_with=[branch.pk],
        )


def test_the_second_of_two_requests_that_raced_past_registration_is_held_at_approval(
    gateway: Peer, owner: Any, other_user: Any, admin: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = _register(owner, "branch.example.org", [BRANCH_NET])
    # mallory's request ran at the same moment as alice's and did not see it.
    monkeypatch.setattr("enrollment.services.registration.network_overlaps", lambda *a, **k: [])
    second = _register(other_user, "hijack1.example.org", [BRANCH_NET])
    monkeypatch.undo()
    # Both pending: approving either shows the other (the admin can reject the wrong one first).
    assert [o.owner.peer_id for o in selectors.issuance_preview(first, selectors.policy_get()).overlaps] == [second.pk]
    peer_reject(peer_id=second.pk, approver=admin, reason="not your network", actor=admin)
    assert peer_approve(peer_id=first.pk, approver=admin, actor=admin, enqueue=False).status == "approved"

    # Had the admin approved the first with the overlap accepted, the second must still see it:
    monkeypatch.setattr("enrollment.services.registration.network_overlaps", lambda *a, **k: [])
    third = _register(other_user, "hijack3.example.org", [BRANCH_NET])
    monkeypatch.undo()
    with pytest.raises(EnrollmentError, match=f"branch.example.org \\(peer {first.pk}\\)") as refused:
        peer_approve(peer_id=third.pk, approver=admin, actor=admin, enqueue=False)
    assert refused.value.status == 409


def test_bulk_approve_leaves_an_overlap_in_the_queue(client: Client, overlapping: Peer, second_admin: Any) -> None:
    login(client, second_admin)

    response = client.post(f"{QUEUE}bulk-approve/", {"peer": [str(overlapping.pk)]})

    assert response.status_code == 302
    overlapping.refresh_from_db()
    assert overlapping.decision == Peer.Decision.PENDING
    assert any("overlaps" in str(m) for m in get_messages(response.wsgi_request))


def test_an_accepted_overlap_does_not_stop_the_gateways_render(
    overlapping: Peer, branch: Peer, gateway: Peer, second_admin: Any
) -> None:
    from authority.services import certificate_issue

    approved = peer_approve(
        peer_id=overlapping.pk,
        approver=second_admin,
        actor=second_admin,
        enqueue=False,
        accept_overlap_with=[branch.pk],
    )
    assert approved.certificate_request is not None
    certificate_issue(request_id=approved.certificate_request.pk)

    iked = render(gateway).text_of("iked/iked.conf") or ""
    assert "10.2.2.0/25" in iked
    assert BRANCH_NET in iked


# --- renewal --------------------------------------------------------------------------------------


def test_a_renewal_keeps_its_networks_and_is_approved_by_the_policy(branch: Peer, owner: Any, admin: Any) -> None:
    policy_update(
        allowed_domains=[],
        default_validity_days=365,
        allow_self_approval=False,
        auto_approve_renewals=True,
        actor=admin,
    )

    renewal = peer_renew(peer_id=branch.pk, user=owner, csr_pem=ANY_CSR).peer

    assert renewal.networks == [BRANCH_NET]  # the peer it renews holds them: that is no overlap
    assert renewal.decision == Peer.Decision.APPROVED


def test_a_renewal_that_overlaps_another_peer_waits_for_an_admin(
    overlapping: Peer, branch: Peer, owner: Any, admin: Any, second_admin: Any
) -> None:
    peer_approve(
        peer_id=overlapping.pk,
        approver=second_admin,
        actor=second_admin,
        enqueue=False,
        accept_overlap_with=[branch.pk],
    )
    policy_update(
        allowed_domains=[],
        default_validity_days=365,
        allow_self_approval=False,
        auto_approve_renewals=True,
        actor=admin,
    )

    renewal = peer_renew(peer_id=branch.pk, user=owner, csr_pem=ANY_CSR).peer

    assert renewal.decision == Peer.Decision.PENDING  # the policy never accepts an overlap
    assert renewal_auto_approve(peer_id=renewal.pk, enqueue=False) is None
    approved = peer_approve(
        peer_id=renewal.pk, approver=admin, actor=admin, enqueue=False, accept_overlap_with=[overlapping.pk]
    )
    assert approved.decision == Peer.Decision.APPROVED


# --- the approval page ----------------------------------------------------------------------------


def _page(client: Client, url: str) -> str:
    response = client.get(url)
    assert response.status_code == 200
    return html.unescape(response.content.decode())


def test_the_approval_page_shows_the_overlap_with_a_checkbox(
    client: Client, overlapping: Peer, branch: Peer, second_admin: Any
) -> None:
    login(client, second_admin)

    page = _page(client, f"{QUEUE}{overlapping.pk}/")

    assert f"network 10.2.2.0/25 overlaps {BRANCH_NET} of branch.example.org (peer {branch.pk})" in page
    assert re.search(r'<input type="checkbox" name="accept_overlap"[^>]*>\s*I accept the overlap', page)
    assert f'name="overlap_with" value="{branch.pk}"' in page
    assert "overlaps" in _page(client, QUEUE)  # the queue row warns too


def test_the_approval_page_refuses_without_the_checkbox_and_approves_with_it(
    client: Client, overlapping: Peer, branch: Peer, second_admin: Any
) -> None:
    login(client, second_admin)
    url = f"{QUEUE}{overlapping.pk}/approve/"

    refused = client.post(url, {"overlap_with": str(branch.pk)})

    assert refused["Location"] == f"{QUEUE}{overlapping.pk}/"
    assert any("overlaps" in str(m) for m in get_messages(refused.wsgi_request))
    overlapping.refresh_from_db()
    assert overlapping.decision == Peer.Decision.PENDING

    approved = client.post(url, {"overlap_with": str(branch.pk), "accept_overlap": "on"})

    assert approved["Location"] == QUEUE
    overlapping.refresh_from_db()
    assert overlapping.decision == Peer.Decision.APPROVED
    event = AuditEvent.objects.get(action="peer.approved", target=f"peer:{overlapping.pk}")
    assert [o["peer"] for o in event.data["overlaps_accepted"]] == [branch.pk]


def test_a_peer_without_overlaps_shows_no_checkbox(client: Client, gateway: Peer, owner: Any, admin: Any) -> None:
    peer = _register(owner, "shop.example.org", ["10.9.9.0/24"])
    login(client, admin)

    page = _page(client, f"{QUEUE}{peer.pk}/")

    assert "accept_overlap" not in page
    assert "overlaps" not in page
