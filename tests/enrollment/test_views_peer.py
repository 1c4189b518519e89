"""Following a peer: /peers/<id>/, its status.json and its certificate.pem, for each role."""

from __future__ import annotations

import html
from typing import Any

import pytest
from cryptography import x509
from django.test import Client

from authority import services as authority_services
from authority.models import Certificate, CertificateAuthority, CertificateRequest
from authority.services import certificate_issue
from enrollment.models import Peer
from enrollment.services import peer_register_full
from tests.conftest import fixture_bytes, login

pytestmark = pytest.mark.django_db

FQDN = "client.example.com"
CSR = fixture_bytes("client-rsa2048.csr").decode()


def _peer(owner: Any, *, fqdn: str = FQDN, csr: str | None = CSR, networks: list[str] | None = None) -> Peer:
    return peer_register_full(
        owner=owner, fqdn=fqdn, kind="client", networks=networks or [], address=None, csr_pem=csr, actor=owner
    ).peer


def _status(client: Client, peer: Peer) -> dict[str, Any]:
    response = client.get(f"/peers/{peer.pk}/status.json")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert "no-store" in response["Cache-Control"]
    return dict(response.json())


def _approve(client: Client, peer: Peer) -> None:
    response = client.post(f"/peers/approvals/{peer.pk}/approve/")
    assert response.status_code == 302
    assert response["Location"] == "/peers/approvals/"


# --- who sees a peer ----------------------------------------------------------------------------


@pytest.mark.parametrize("persona", ["owner", "admin", "auditor"])
@pytest.mark.parametrize("suffix", ["", "status.json"])
def test_it_shows_the_peer_to_its_owner_admins_and_auditors(
    client: Client, owner: Any, persona: str, suffix: str, request: Any
) -> None:
    peer = _peer(owner, networks=["10.10.0.0/24"])
    login(client, request.getfixturevalue(persona))

    response = client.get(f"/peers/{peer.pk}/{suffix}")

    assert response.status_code == 200
    if suffix:
        assert response.json()["status"] == "pending"
    else:
        page = response.content.decode()
        assert f"<code>{FQDN}</code>" in page
        assert "10.10.0.0/24" in page
        assert "alice" in page


@pytest.mark.parametrize("suffix", ["", "status.json", "certificate.pem"])
def test_it_hides_the_peer_from_other_users(client: Client, owner: Any, other_user: Any, suffix: str) -> None:
    peer = _peer(owner)
    login(client, other_user)

    response = client.get(f"/peers/{peer.pk}/{suffix}")

    assert response.status_code == 404
    assert FQDN not in response.content.decode()


@pytest.mark.parametrize("suffix", ["", "status.json", "certificate.pem"])
def test_it_answers_404_for_a_peer_that_does_not_exist(client: Client, owner: Any, suffix: str) -> None:
    login(client, owner)

    assert client.get(f"/peers/999999/{suffix}").status_code == 404


@pytest.mark.parametrize("suffix", ["", "status.json", "certificate.pem"])
def test_it_sends_anonymous_users_to_login(client: Client, owner: Any, suffix: str) -> None:
    peer = _peer(owner)
    url = f"/peers/{peer.pk}/{suffix}"

    response = client.get(url)

    assert response.status_code == 302
    assert response["Location"] == f"/login/?next={url}"


def test_it_links_an_admin_to_the_review_of_a_pending_peer(client: Client, owner: Any, admin: Any) -> None:
    peer = _peer(owner)
    login(client, admin)

    assert f'href="/peers/approvals/{peer.pk}/"' in client.get(f"/peers/{peer.pk}/").content.decode()


def test_it_does_not_link_the_owner_to_the_review(client: Client, owner: Any) -> None:
    peer = _peer(owner)
    login(client, owner)

    assert "/peers/approvals/" not in client.get(f"/peers/{peer.pk}/").content.decode()


# --- progress --------------------------------------------------------------------------------------


def test_status_follows_the_peer_from_pending_to_issued(
    client: Client, ca: CertificateAuthority, owner: Any, admin: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    peer = _peer(owner)
    owner_client, admin_client = Client(), Client()
    login(owner_client, owner)
    login(admin_client, admin)

    pending = _status(owner_client, peer)
    assert pending == {
        "status": "pending",
        "progress": "pending",
        "step": 1,
        "next": "A CA admin has to approve the request. You get an email when they decide.",
        "failure": "",
        "reason": "",
        "serial": None,
    }

    _approve(admin_client, peer)
    approved = _status(owner_client, peer)
    assert (approved["status"], approved["progress"], approved["step"]) == ("approved", "approved", 2)
    assert approved["serial"] is None
    request_id = CertificateRequest.objects.get().pk

    # The signer records its intent, then dies before signing: the peer shows "signing".
    def crash_after_intent(name: str, _request_id: int) -> None:
        if name == "after_intent_commit":
            raise RuntimeError("worker killed")

    monkeypatch.setattr(authority_services, "failpoint", crash_after_intent)
    with pytest.raises(RuntimeError, match="worker killed"):
        certificate_issue(request_id=request_id)
    signing = _status(owner_client, peer)
    assert (signing["status"], signing["progress"], signing["step"]) == ("approved", "signing", 3)
    assert signing["next"] == "The signer is signing your certificate right now."

    monkeypatch.undo()
    certificate = certificate_issue(request_id=request_id)
    assert certificate is not None
    issued = _status(owner_client, peer)
    assert (issued["status"], issued["progress"], issued["step"]) == ("issued", "issued", 4)
    assert issued["serial"] == certificate.serial
    page = owner_client.get(f"/peers/{peer.pk}/").content.decode()
    assert certificate.serial in page
    assert certificate.fingerprint_sha256 in page
    assert 'id="download" hidden' not in page
    assert f'href="/peers/{peer.pk}/certificate.pem"' in page


def test_status_shows_a_portal_made_key_being_made(client: Client, owner: Any) -> None:
    peer = _peer(owner, csr=None)
    login(client, owner)

    status = _status(client, peer)

    assert (status["status"], status["progress"], status["step"]) == ("pending", "making-key", 0)
    page = client.get(f"/peers/{peer.pk}/").content.decode()
    assert 'data-step="making-key"' in page
    assert "made by the portal" in page


def test_status_shows_a_signing_failure(client: Client, ca: CertificateAuthority, owner: Any, admin: Any) -> None:
    peer = _peer(owner)
    admin_client = Client()
    login(admin_client, admin)
    _approve(admin_client, peer)
    CertificateRequest.objects.update(
        status=CertificateRequest.Status.FAILED, failure_reason="the CA certificate expired"
    )
    login(client, owner)

    status = _status(client, peer)

    assert (status["status"], status["progress"], status["step"]) == ("failed", "failed", -1)
    assert status["failure"] == "the CA certificate expired"
    assert "Reason: the CA certificate expired" in client.get(f"/peers/{peer.pk}/").content.decode()


def test_status_and_page_show_the_rejection_reason(client: Client, owner: Any, admin: Any) -> None:
    peer = _peer(owner)
    admin_client = Client()
    login(admin_client, admin)
    reason = "laptops <must> use the corp domain"
    assert admin_client.post(f"/peers/approvals/{peer.pk}/reject/", {"reason": reason}).status_code == 302
    login(client, owner)

    status = _status(client, peer)

    assert (status["status"], status["progress"], status["reason"]) == ("rejected", "rejected", reason)
    page = client.get(f"/peers/{peer.pk}/").content.decode()
    assert "Reason: laptops &lt;must&gt; use the corp domain" in page
    assert "<must>" not in page
    assert html.unescape(page).count(reason) == 1


@pytest.mark.parametrize("method", ["post", "put", "delete"])
def test_status_accepts_only_get(client: Client, owner: Any, method: str) -> None:
    peer = _peer(owner)
    login(client, owner)

    assert getattr(client, method)(f"/peers/{peer.pk}/status.json").status_code == 405


# --- certificate.pem ----------------------------------------------------------------------------------


def test_certificate_is_404_until_it_is_issued(client: Client, ca: CertificateAuthority, owner: Any) -> None:
    peer = _peer(owner)
    login(client, owner)

    response = client.get(f"/peers/{peer.pk}/certificate.pem")

    assert response.status_code == 404
    assert response.content == b"no certificate has been issued for this peer yet\n"
    assert 'id="download" hidden' in client.get(f"/peers/{peer.pk}/").content.decode()


def _issued(owner: Any, admin: Any) -> tuple[Peer, Certificate]:
    peer = _peer(owner)
    admin_client = Client()
    login(admin_client, admin)
    _approve(admin_client, peer)
    certificate = certificate_issue(request_id=CertificateRequest.objects.get().pk)
    assert certificate is not None
    return peer, certificate


@pytest.mark.parametrize("persona", ["owner", "admin", "second_admin", "auditor"])
def test_certificate_downloads_once_issued(
    client: Client, ca: CertificateAuthority, owner: Any, admin: Any, persona: str, request: Any
) -> None:
    peer, certificate = _issued(owner, admin)
    login(client, request.getfixturevalue(persona))

    response = client.get(f"/peers/{peer.pk}/certificate.pem")

    assert response.status_code == 200
    assert response["Content-Type"] == "application/x-pem-file"
    assert response["Content-Disposition"] == f'attachment; filename="{FQDN}.crt"'
    assert response.content.decode() == certificate.pem
    loaded = x509.load_pem_x509_certificate(response.content)
    assert format(loaded.serial_number, "x") == certificate.serial
    assert b"PRIVATE KEY" not in response.content


def test_certificate_is_hidden_from_other_users_once_issued(
    client: Client, ca: CertificateAuthority, owner: Any, admin: Any, other_user: Any
) -> None:
    peer, _certificate = _issued(owner, admin)
    login(client, other_user)

    response = client.get(f"/peers/{peer.pk}/certificate.pem")

    assert response.status_code == 404
    assert b"CERTIFICATE" not in response.content


def test_the_live_status_is_announced_to_screen_readers(client: Client, owner: Any) -> None:
    """The status, the next step and the reason change without a reload: a polite live region says so."""
    peer = _peer(owner)
    login(client, owner)

    page = client.get(f"/peers/{peer.pk}/").content.decode()

    region = page[page.index('<div id="live-status"') : page.index("</div>", page.index('<div id="live-status"'))]
    assert 'role="status"' in region
    assert 'aria-live="polite"' in region
    for part in ('id="status-badge"', 'id="next-step"', 'id="failure"'):
        assert part in region
