"""The CA admin pages: the approval queue, the review page, approve, reject and bulk approve (T16, T29)."""

from __future__ import annotations

import html
import re
import threading
from typing import Any

import pytest
from django.contrib.messages import get_messages
from django.db import connection
from django.test import Client

from authority import services as authority_services
from authority.models import AuditEvent, CertificateAuthority, CertificateRequest
from authority.services import certificate_issue, certificate_request_create
from enrollment import selectors, services
from enrollment.models import Peer, SitePolicy
from enrollment.services import peer_register_full, policy_update
from tests.conftest import fixture_bytes, login

pytestmark = pytest.mark.django_db

FQDN = "client.example.com"
CSR = fixture_bytes("client-rsa2048.csr").decode()
ANY_CSR = fixture_bytes("client-nocn.csr").decode()
QUEUE = "/peers/approvals/"


def _peer(
    owner: Any,
    fqdn: str = FQDN,
    *,
    kind: str = "client",
    csr: str | None = None,
    networks: list[str] | None = None,
    portal_key: bool = False,
) -> Peer:
    csr_pem = None if portal_key else (csr or (CSR if fqdn == FQDN else ANY_CSR))
    return peer_register_full(
        owner=owner,
        fqdn=fqdn,
        kind=kind,
        networks=networks or [],
        address="192.0.2.1" if kind == "server" else None,
        csr_pem=csr_pem,
        actor=owner,
    ).peer


def _messages(response: Any) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


def _page(client: Client, url: str) -> str:
    response = client.get(url)
    assert response.status_code == 200
    return html.unescape(response.content.decode())


def _queue_fqdns(page: str) -> list[str]:
    return re.findall(r'<a href="/peers/approvals/\d+/"><code>([^<]+)</code></a>', page)


def _row(page: str, fqdn: str) -> str:
    match = re.search(
        rf"<tr>\s*<td>[^\n]*\n\s*<td><a href=\"/peers/approvals/\d+/\"><code>{re.escape(fqdn)}</code>.*?</tr>",
        page,
        re.S,
    )
    assert match is not None, f"no row for {fqdn}"
    return match.group(0)


def _admin_client(user: Any) -> Client:
    client = Client()
    login(client, user)
    return client


# --- the queue -------------------------------------------------------------------------------------


@pytest.fixture
def mixed(ca: CertificateAuthority, owner: Any, other_user: Any, admin: Any, second_admin: Any) -> dict[str, Peer]:
    """One peer in each state: pending client, pending gateway, approved, rejected."""
    peers = {
        "pending": _peer(owner, "alpha.example.com"),
        "gateway": _peer(admin, "vpn.example.org", kind="server", networks=["10.0.0.0/24"]),
        "approved": _peer(other_user, "bravo.example.com"),
        "rejected": _peer(other_user, "charlie.example.com"),
    }
    services.peer_approve(peer_id=peers["approved"].pk, approver=second_admin, actor=second_admin, enqueue=False)
    services.peer_reject(peer_id=peers["rejected"].pk, approver=second_admin, reason="no", actor=second_admin)
    return peers


def test_queue_lists_the_pending_peers_by_default(client: Client, admin: Any, mixed: dict[str, Peer]) -> None:
    login(client, admin)

    page = _page(client, QUEUE)

    assert _queue_fqdns(page) == ["alpha.example.com", "vpn.example.org"]  # oldest first
    alpha = _row(page, "alpha.example.com")
    assert "alice" in alpha
    assert f'name="peer" value="{mixed["pending"].pk}"' in alpha
    assert "10.0.0.0/24" in _row(page, "vpn.example.org")


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("status=approved", ["bravo.example.com"]),
        ("status=rejected", ["charlie.example.com"]),
        ("status=all", ["alpha.example.com", "vpn.example.org", "bravo.example.com", "charlie.example.com"]),
        ("status=all&kind=server", ["vpn.example.org"]),
        ("status=all&kind=client", ["alpha.example.com", "bravo.example.com", "charlie.example.com"]),
        ("status=pending&kind=client", ["alpha.example.com"]),
        ("status=all&q=mallory", ["bravo.example.com", "charlie.example.com"]),
        ("status=all&q=ALPHA", ["alpha.example.com"]),
        ("status=all&q=.example.org", ["vpn.example.org"]),
        ("status=all&q=nothing-matches", []),
        ("status=all&sort=fqdn", ["alpha.example.com", "bravo.example.com", "charlie.example.com", "vpn.example.org"]),
        (
            "status=all&sort=newest",
            ["charlie.example.com", "bravo.example.com", "vpn.example.org", "alpha.example.com"],
        ),
        ("status=all&sort=owner", ["alpha.example.com", "vpn.example.org", "bravo.example.com", "charlie.example.com"]),
        ("status=all&sort=bogus", ["alpha.example.com", "vpn.example.org", "bravo.example.com", "charlie.example.com"]),
        ("kind=bogus", ["alpha.example.com", "vpn.example.org"]),
    ],
)
def test_queue_filters_and_sorts(
    client: Client, admin: Any, mixed: dict[str, Peer], query: str, expected: list[str]
) -> None:
    login(client, admin)

    assert _queue_fqdns(_page(client, f"{QUEUE}?{query}")) == expected


def test_queue_offers_checkboxes_only_for_decidable_peers(
    client: Client, admin: Any, owner: Any, mixed: dict[str, Peer]
) -> None:
    making = _peer(owner, "delta.example.com", portal_key=True)
    login(client, admin)

    page = _page(client, f"{QUEUE}?status=all")

    assert f'value="{mixed["pending"].pk}"' in page
    for peer in (mixed["approved"], mixed["rejected"], making):
        assert f'name="peer" value="{peer.pk}"' not in page
    assert "making-key" in _row(page, "delta.example.com")


def test_queue_keeps_the_search_text_escaped(client: Client, admin: Any) -> None:
    login(client, admin)

    page = client.get(QUEUE, {"q": '"><script>alert(1)</script>'}).content.decode()

    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;" in page


def test_queue_warns_about_a_domain_outside_the_policy(
    client: Client, ca: CertificateAuthority, owner: Any, admin: Any
) -> None:
    _peer(owner, "laptop.corp.example.net")
    _peer(owner, "laptop.example.com")
    policy_update(
        allowed_domains=["corp.example.net"], default_validity_days=365, allow_self_approval=False, actor=admin
    )
    login(client, admin)

    page = _page(client, QUEUE)

    outside = _row(page, "laptop.example.com")
    assert "domain outside policy (allowed: corp.example.net)" in outside
    inside = _row(page, "laptop.corp.example.net")
    assert "domain outside policy" not in inside
    assert '<span class="muted">none</span>' in inside


def test_queue_warns_about_an_fqdn_that_had_a_certificate_before(
    client: Client, ca: CertificateAuthority, owner: Any, admin: Any
) -> None:
    # An earlier certificate for the name, e.g. signed on the CA host before the portal existed.
    earlier = certificate_request_create(
        fqdn=FQDN, kind="client", csr_pem=CSR, validity_days=30, requested_by=None, approved_by=None,
        actor="test", enqueue=False,
    )  # fmt: skip
    old_cert = certificate_issue(request_id=earlier.pk)
    assert old_cert is not None
    first = _peer(owner)
    services.peer_reject(peer_id=first.pk, approver=admin, reason="wrong networks", actor=admin)
    _peer(owner)  # registered again after the rejection
    _peer(owner, "fresh.example.com")
    login(client, admin)

    page = _page(client, QUEUE)

    warning = f"this FQDN had a certificate before (serial {old_cert.serial}"
    assert warning in _row(page, FQDN)
    assert "had a certificate before" not in _row(page, "fresh.example.com")


def test_queue_warns_about_a_gateway(client: Client, admin: Any, second_admin: Any) -> None:
    _peer(second_admin, "vpn.example.org", kind="server", networks=["10.0.0.0/24"])
    login(client, admin)

    assert "this is a VPN gateway certificate" in _row(_page(client, QUEUE), "vpn.example.org")


def test_queue_warns_when_there_is_no_ca(client: Client, owner: Any, admin: Any) -> None:
    _peer(owner)
    login(client, admin)

    assert "there is no CA yet" in _row(_page(client, QUEUE), FQDN)


# --- the review page --------------------------------------------------------------------------------


def test_review_shows_what_approval_will_issue(
    client: Client, ca: CertificateAuthority, owner: Any, admin: Any
) -> None:
    peer = _peer(owner, networks=["10.10.0.0/24", "10.20.0.0/16"])
    login(client, admin)

    page = _page(client, f"{QUEUE}{peer.pk}/")

    assert f"<code>CN={FQDN}</code>" in page
    assert f"<code>DNS:{FQDN}</code> (the only one)" in page
    assert "<dt>Key</dt><dd>rsa-2048</dd>" in page
    assert re.search(r"<dt>Validity</dt><dd>365 days, until \d{4}-\d{2}-\d{2}</dd>", page)
    assert "<code>10.10.0.0/24</code>, <code>10.20.0.0/16</code>" in page
    assert "<dt>Owner</dt><dd>alice <alice@example.org></dd>" in page
    assert "serverAuth, clientAuth, ipsecIKE" in page
    assert f'action="/peers/approvals/{peer.pk}/approve/"' in page
    assert f'action="/peers/approvals/{peer.pk}/reject/"' in page


def test_review_uses_the_policy_validity(client: Client, ca: CertificateAuthority, owner: Any, admin: Any) -> None:
    peer = _peer(owner)
    policy_update(allowed_domains=[], default_validity_days=90, allow_self_approval=False, actor=admin)
    login(client, admin)

    assert "<dt>Validity</dt><dd>90 days, until" in _page(client, f"{QUEUE}{peer.pk}/")


def test_review_disables_approval_while_the_key_is_being_made(
    client: Client, ca: CertificateAuthority, owner: Any, admin: Any
) -> None:
    peer = _peer(owner, portal_key=True)
    login(client, admin)

    page = _page(client, f"{QUEUE}{peer.pk}/")

    assert "being made by the signer (rsa-3072)" in page
    assert 'class="primary" disabled' in page


def test_review_of_a_decided_peer_has_no_buttons(
    client: Client, ca: CertificateAuthority, owner: Any, admin: Any
) -> None:
    peer = _peer(owner)
    services.peer_reject(peer_id=peer.pk, approver=admin, reason="no", actor=admin)
    login(client, admin)

    page = _page(client, f"{QUEUE}{peer.pk}/")

    assert "/approve/" not in page
    assert f'href="/peers/{peer.pk}/"' in page


def test_review_is_404_for_a_missing_peer(client: Client, admin: Any) -> None:
    login(client, admin)

    assert client.get(f"{QUEUE}999999/").status_code == 404


# --- approve ---------------------------------------------------------------------------------------


def test_it_approves_a_peer(client: Client, ca: CertificateAuthority, owner: Any, admin: Any) -> None:
    peer = _peer(owner)
    login(client, admin)

    response = client.post(f"{QUEUE}{peer.pk}/approve/")

    assert response.status_code == 302
    assert response["Location"] == QUEUE
    assert _messages(response) == [f"Approved {FQDN}; the signer is issuing the certificate."]
    peer.refresh_from_db()
    assert (peer.decision, peer.decided_by) == (Peer.Decision.APPROVED, admin)
    request = CertificateRequest.objects.get()
    assert peer.certificate_request == request
    assert (request.fqdn, request.requested_by, request.approved_by) == (FQDN, owner, admin)
    assert request.validity_days == 365
    assert AuditEvent.objects.filter(action="peer.approved", actor="user:carol").count() == 1
    assert f"Approved {FQDN}; the signer is issuing the certificate." in _page(client, QUEUE)  # shown once
    assert "Approved" not in _page(client, QUEUE)


def test_it_approves_with_the_policy_validity(client: Client, ca: CertificateAuthority, owner: Any, admin: Any) -> None:
    peer = _peer(owner)
    policy_update(allowed_domains=[], default_validity_days=30, allow_self_approval=False, actor=admin)
    login(client, admin)

    client.post(f"{QUEUE}{peer.pk}/approve/", {"validity_days": "3650", "is_ca": "1", "profile": "subca"})

    request = CertificateRequest.objects.get()
    assert request.validity_days == 30  # posted extras are ignored (T10)


def test_it_tells_the_second_approver_that_the_peer_is_decided(
    client: Client, ca: CertificateAuthority, owner: Any, admin: Any, second_admin: Any
) -> None:
    peer = _peer(owner)
    _admin_client(admin).post(f"{QUEUE}{peer.pk}/approve/")
    login(client, second_admin)

    response = client.post(f"{QUEUE}{peer.pk}/approve/")

    assert response.status_code == 302
    assert response["Location"] == f"{QUEUE}{peer.pk}/"
    assert _messages(response) == [f"{FQDN}: {FQDN} is approved, not pending"]
    assert CertificateRequest.objects.count() == 1
    peer.refresh_from_db()
    assert peer.decided_by == admin


def test_it_refuses_to_approve_before_the_key_is_made(
    client: Client, ca: CertificateAuthority, owner: Any, admin: Any
) -> None:
    peer = _peer(owner, portal_key=True)
    login(client, admin)

    response = client.post(f"{QUEUE}{peer.pk}/approve/")

    assert response["Location"] == f"{QUEUE}{peer.pk}/"
    assert _messages(response) == [f"{FQDN}: the key for {FQDN} is still being made; try again in a moment"]
    peer.refresh_from_db()
    assert peer.decision == Peer.Decision.PENDING
    assert not CertificateRequest.objects.exists()


def test_it_keeps_the_peer_pending_without_a_ca(client: Client, owner: Any, admin: Any) -> None:
    peer = _peer(owner)
    login(client, admin)

    response = client.post(f"{QUEUE}{peer.pk}/approve/")

    assert "there is no CA yet" in _messages(response)[0]
    peer.refresh_from_db()
    assert peer.decision == Peer.Decision.PENDING


def test_it_answers_404_for_approving_a_missing_peer(client: Client, admin: Any) -> None:
    login(client, admin)

    assert client.post(f"{QUEUE}999999/approve/").status_code == 404


# --- self-approval (T29) ------------------------------------------------------------------------------


def test_it_refuses_self_approval_with_a_message(client: Client, ca: CertificateAuthority, admin: Any) -> None:
    peer = _peer(admin)
    login(client, admin)

    response = client.post(f"{QUEUE}{peer.pk}/approve/")

    assert response.status_code == 302
    assert response["Location"] == f"{QUEUE}{peer.pk}/"
    assert _messages(response) == [f"{FQDN}: you cannot approve a request you filed yourself"]
    peer.refresh_from_db()
    assert peer.decision == Peer.Decision.PENDING
    assert not CertificateRequest.objects.exists()
    refusal = AuditEvent.objects.get(action="peer.approve_refused")
    assert (refusal.actor, refusal.target, refusal.data) == (
        "user:carol",
        f"peer:{peer.pk}",
        {"reason": "self-approval"},
    )


def test_it_allows_self_approval_on_a_one_admin_site_when_the_policy_says_so(
    client: Client, ca: CertificateAuthority, admin: Any, owner: Any
) -> None:
    peer = _peer(admin)
    policy_update(allowed_domains=[], default_validity_days=365, allow_self_approval=True, actor=admin)
    login(client, admin)

    response = client.post(f"{QUEUE}{peer.pk}/approve/")

    assert response["Location"] == QUEUE
    peer.refresh_from_db()
    assert (peer.decision, peer.decided_by) == (Peer.Decision.APPROVED, admin)


def test_it_refuses_self_approval_when_a_second_admin_exists_even_if_the_policy_allows(
    client: Client, ca: CertificateAuthority, admin: Any, second_admin: Any
) -> None:
    peer = _peer(admin)
    policy_update(allowed_domains=[], default_validity_days=365, allow_self_approval=True, actor=admin)
    login(client, admin)

    response = client.post(f"{QUEUE}{peer.pk}/approve/")

    assert _messages(response) == [f"{FQDN}: you cannot approve a request you filed yourself"]
    peer.refresh_from_db()
    assert peer.decision == Peer.Decision.PENDING
    # The other admin may approve it.
    assert _admin_client(second_admin).post(f"{QUEUE}{peer.pk}/approve/")["Location"] == QUEUE
    peer.refresh_from_db()
    assert peer.decided_by == second_admin


# --- reject ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reason", "error"),
    [("", "This field is required."), ("   \n ", "This field is required."),
     ("x" * 501, "Ensure this value has at most 500 characters (it has 501).")],
)  # fmt: skip
def test_reject_requires_a_reason(
    client: Client, ca: CertificateAuthority, owner: Any, admin: Any, reason: str, error: str
) -> None:
    peer = _peer(owner)
    login(client, admin)

    response = client.post(f"{QUEUE}{peer.pk}/reject/", {"reason": reason})

    assert response.status_code == 200
    assert response.context["form"].errors["reason"] == [error]
    assert error in html.unescape(response.content.decode())
    peer.refresh_from_db()
    assert (peer.decision, peer.decision_reason) == (Peer.Decision.PENDING, "")
    assert not AuditEvent.objects.filter(action="peer.rejected").exists()


def test_it_rejects_with_a_reason_the_owner_sees(
    client: Client, ca: CertificateAuthority, owner: Any, admin: Any
) -> None:
    peer = _peer(owner)
    login(client, admin)

    response = client.post(f"{QUEUE}{peer.pk}/reject/", {"reason": "  use the corp domain  "})

    assert response.status_code == 302
    assert response["Location"] == QUEUE
    assert _messages(response) == [f"Rejected {FQDN}."]
    peer.refresh_from_db()
    assert (peer.decision, peer.decided_by) == (Peer.Decision.REJECTED, admin)
    assert peer.decision_reason == "use the corp domain"
    event = AuditEvent.objects.get(action="peer.rejected")
    assert event.data == {"reason": "use the corp domain"}
    owner_client = Client()
    login(owner_client, owner)
    assert "Reason: use the corp domain" in _page(owner_client, f"/peers/{peer.pk}/")


def test_it_refuses_to_reject_a_decided_peer(
    client: Client, ca: CertificateAuthority, owner: Any, admin: Any, second_admin: Any
) -> None:
    peer = _peer(owner)
    _admin_client(second_admin).post(f"{QUEUE}{peer.pk}/approve/")
    login(client, admin)

    response = client.post(f"{QUEUE}{peer.pk}/reject/", {"reason": "too late"})

    assert response.status_code == 200
    assert f"{FQDN}: {FQDN} is approved, not pending" in html.unescape(response.content.decode())
    peer.refresh_from_db()
    assert (peer.decision, peer.decision_reason) == (Peer.Decision.APPROVED, "")


# --- bulk approve ------------------------------------------------------------------------------------


def test_bulk_approve_approves_several_and_reports_the_refused(
    client: Client, ca: CertificateAuthority, owner: Any, other_user: Any, admin: Any, second_admin: Any
) -> None:
    first = _peer(owner, "one.example.com")
    second = _peer(other_user, "two.example.com")
    own = _peer(admin, "mine.example.com")
    making = _peer(owner, "making.example.com", portal_key=True)
    decided = _peer(owner, "decided.example.com")
    services.peer_approve(peer_id=decided.pk, approver=second_admin, actor=second_admin, enqueue=False)
    login(client, admin)
    ids = [first.pk, own.pk, making.pk, second.pk, decided.pk, 999999]

    response = client.post(f"{QUEUE}bulk-approve/", {"peer": [*map(str, ids), "abc", "-1"]})

    assert response.status_code == 302
    assert response["Location"] == QUEUE
    assert _messages(response) == [
        "Approved 2: one.example.com, two.example.com",
        f"#{own.pk}: you cannot approve a request you filed yourself",
        f"#{making.pk}: the key for making.example.com is still being made; try again in a moment",
        f"#{decided.pk}: decided.example.com is approved, not pending",
        "#999999: no such peer",
    ]
    for peer, decision in [(first, "approved"), (second, "approved"), (own, "pending"), (making, "pending")]:
        peer.refresh_from_db()
        assert peer.decision == decision, peer.fqdn
    assert first.decided_by == second.decided_by == admin
    assert CertificateRequest.objects.count() == 3  # decided's, first's and second's
    assert AuditEvent.objects.filter(action="peer.approved", actor="user:carol").count() == 2


def test_bulk_approve_asks_for_a_selection(client: Client, admin: Any) -> None:
    login(client, admin)

    response = client.post(f"{QUEUE}bulk-approve/", {})

    assert response["Location"] == QUEUE
    assert _messages(response) == ["Select at least one request to approve."]


# --- who may decide -------------------------------------------------------------------------------


ADMIN_POSTS = [
    ("approve/", {}),
    ("reject/", {"reason": "because"}),
]


@pytest.mark.parametrize("persona", ["owner", "other_user", "auditor"])
@pytest.mark.parametrize(("action", "data"), ADMIN_POSTS)
def test_deciding_is_403_for_non_admins(
    client: Client, ca: CertificateAuthority, owner: Any, persona: str, action: str, data: dict[str, str], request: Any
) -> None:
    peer = _peer(owner)
    login(client, request.getfixturevalue(persona))
    events = AuditEvent.objects.count()

    response = client.post(f"{QUEUE}{peer.pk}/{action}", data)

    assert response.status_code == 403
    peer.refresh_from_db()
    assert (peer.decision, peer.decided_by, peer.decision_reason) == (Peer.Decision.PENDING, None, "")
    assert not CertificateRequest.objects.exists()
    assert AuditEvent.objects.count() == events


@pytest.mark.parametrize("persona", ["owner", "auditor"])
def test_bulk_approve_is_403_for_non_admins(
    client: Client, ca: CertificateAuthority, owner: Any, other_user: Any, persona: str, request: Any
) -> None:
    peer = _peer(other_user)
    login(client, request.getfixturevalue(persona))

    response = client.post(f"{QUEUE}bulk-approve/", {"peer": [str(peer.pk)]})

    assert response.status_code == 403
    peer.refresh_from_db()
    assert peer.decision == Peer.Decision.PENDING


@pytest.mark.parametrize("persona", ["owner", "auditor"])
@pytest.mark.parametrize("url", [QUEUE, "/peers/policy/"])
def test_admin_pages_are_403_for_non_admins(client: Client, persona: str, url: str, request: Any) -> None:
    login(client, request.getfixturevalue(persona))

    assert client.get(url).status_code == 403


@pytest.mark.parametrize("persona", ["owner", "auditor"])
def test_policy_post_is_403_for_non_admins(client: Client, persona: str, request: Any) -> None:
    login(client, request.getfixturevalue(persona))

    response = client.post(
        "/peers/policy/",
        {"allowed_domains": "evil.example", "default_validity_days": "825", "allow_self_approval": "on"},
    )

    assert response.status_code == 403
    assert not SitePolicy.objects.filter(allow_self_approval=True).exists()
    assert not AuditEvent.objects.filter(action="policy.updated").exists()


@pytest.mark.parametrize(
    ("method", "path", "data"),
    [
        ("get", "", None),
        ("get", "{id}/", None),
        ("post", "{id}/approve/", {}),
        ("post", "{id}/reject/", {"reason": "because"}),
        ("post", "bulk-approve/", {"peer": "{id}"}),
        ("get", "/peers/policy/", None),
        ("post", "/peers/policy/", {"default_validity_days": "30"}),
    ],
)
def test_admin_urls_send_anonymous_users_to_login(
    client: Client, owner: Any, method: str, path: str, data: dict[str, str] | None
) -> None:
    peer = _peer(owner)
    url = path.format(id=peer.pk) if path.startswith("/") else QUEUE + path.format(id=peer.pk)
    payload = {k: v.format(id=peer.pk) for k, v in (data or {}).items()}

    response = getattr(client, method)(url, payload)

    assert response.status_code == 302
    assert response["Location"] == f"/login/?next={url}"
    peer.refresh_from_db()
    assert peer.decision == Peer.Decision.PENDING
    assert selectors.policy_get().default_validity_days == 365


@pytest.mark.parametrize("path", ["{id}/approve/", "{id}/reject/", "bulk-approve/"])
def test_decisions_need_post(client: Client, owner: Any, admin: Any, path: str) -> None:
    peer = _peer(owner)
    login(client, admin)

    assert client.get(QUEUE + path.format(id=peer.pk)).status_code == 405
    peer.refresh_from_db()
    assert peer.decision == Peer.Decision.PENDING


# --- twenty admins press approve at once (T16) -----------------------------------------------------------


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_twenty_concurrent_approvals_make_one_transition(
    ca: CertificateAuthority,
    owner: Any,
    admin: Any,
    second_admin: Any,
    monkeypatch: pytest.MonkeyPatch,
    sent_tasks: list[tuple[str, tuple[Any, ...], dict[str, Any]]],
) -> None:
    if connection.vendor != "postgresql":
        pytest.skip("real concurrent requests need PostgreSQL; SQLite's in-memory test database serialises them")
    queued: list[int] = []
    monkeypatch.setattr(authority_services, "signer_wakeup", lambda **kw: queued.append(1) or True)
    peer = _peer(owner)
    clients = [_admin_client(admin if n % 2 else second_admin) for n in range(20)]
    start = threading.Barrier(len(clients))
    outcomes: list[tuple[int, str, list[str]]] = []
    errors: list[BaseException] = []

    def press(client: Client) -> None:
        try:
            start.wait()
            response = client.post(f"{QUEUE}{peer.pk}/approve/")
            outcomes.append((response.status_code, response["Location"], _messages(response)))
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=press, args=(c,)) for c in clients]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert len(outcomes) == 20
    assert all(status == 302 for status, _location, _messages_ in outcomes)
    winners = [o for o in outcomes if o[1] == QUEUE]
    losers = [o for o in outcomes if o[1] == f"{QUEUE}{peer.pk}/"]
    assert len(winners) == 1
    assert winners[0][2] == [f"Approved {FQDN}; the signer is issuing the certificate."]
    assert len(losers) == 19
    for _status, _location, messages in losers:
        assert len(messages) == 1
        assert messages[0] in (
            f"{FQDN}: {FQDN} is approved, not pending",
            f"{FQDN}: {FQDN} was decided by someone else meanwhile",
        )
    peer.refresh_from_db()
    assert peer.decision == Peer.Decision.APPROVED
    assert CertificateRequest.objects.count() == 1
    assert queued == [1], "one signer wakeup for the one transition"
    assert AuditEvent.objects.filter(action="peer.approved").count() == 1
    assert AuditEvent.objects.filter(action="certificate.requested").count() == 1
    assert not AuditEvent.objects.filter(action="peer.approve_refused").exists()
