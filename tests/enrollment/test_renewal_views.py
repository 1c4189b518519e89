"""Renewal pages: the Renew card, /peers/<id>/renew/ for the owner, the links between old and new peers."""

from __future__ import annotations

import html
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from authority.models import Certificate
from authority.services import certificate_issue
from enrollment.models import Peer, PortalKey
from enrollment.selectors import policy_get
from enrollment.services import peer_approve, peer_renew, renewals_supersede
from tests.bundles.conftest import ANY_CSR, issue
from tests.conftest import login

pytestmark = pytest.mark.django_db

FQDN = "laptop.example.com"


@pytest.fixture
def laptop(ca: Any, owner: Any, admin: Any) -> Peer:
    peer, _ = issue(owner, admin, FQDN)
    return peer


def _client(user: Any) -> Client:
    client = Client()
    login(client, user)
    return client


def _page(client: Client, url: str) -> str:
    response = client.get(url)
    assert response.status_code == 200, url
    return html.unescape(response.content.decode())


def _serial(peer: Peer) -> str:
    return Certificate.objects.get(request__peer=peer).serial


# --- the Renew card -------------------------------------------------------------------------------


def test_the_owner_sees_the_renew_card_highlighted_when_expiry_is_near(laptop: Peer, owner: Any) -> None:
    client = _client(owner)

    calm = _page(client, f"/peers/{laptop.pk}/")
    Certificate.objects.filter(request__peer=laptop).update(not_after=timezone.now() + timedelta(days=10, hours=1))
    urgent = _page(client, f"/peers/{laptop.pk}/")

    assert 'id="renew"' in calm
    assert f'href="/peers/{laptop.pk}/renew/"' in calm
    assert 'id="renew-soon"' not in calm
    assert '<section class="card warn" id="renew">' in urgent
    assert "This certificate expires in 10 days" in urgent


@pytest.mark.parametrize("persona", ["admin", "auditor"])
def test_others_who_see_the_peer_get_no_renew_card(laptop: Peer, persona: str, request: Any) -> None:
    page = _page(_client(request.getfixturevalue(persona)), f"/peers/{laptop.pk}/")

    assert 'id="renew"' not in page


# --- /peers/<id>/renew/ ---------------------------------------------------------------------------


def test_the_renew_form_for_the_owner(laptop: Peer, owner: Any) -> None:
    response = _client(owner).get(f"/peers/{laptop.pk}/renew/")

    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    page = html.unescape(response.content.decode())
    assert 'name="key_source" value="portal"' in page
    assert 'name="csr"' in page
    assert 'name="csr_file"' in page
    assert 'name="fqdn"' not in page  # the identity is the peer's, not the form's
    assert _serial(laptop) in page


def test_a_csr_renewal_goes_to_the_new_peers_page_and_the_pages_link_each_other(
    laptop: Peer, owner: Any, admin: Any
) -> None:
    client = _client(owner)

    response = client.post(f"/peers/{laptop.pk}/renew/", {"key_source": "csr", "csr": ANY_CSR})

    renewal = Peer.objects.get(renews=laptop)
    assert response.status_code == 302
    assert response["Location"] == f"/peers/{renewal.pk}/"
    new_page = _page(client, response["Location"])
    assert "waits for a CA admin" in new_page
    assert 'id="renews-note"' in new_page
    assert f'href="/peers/{laptop.pk}/"' in new_page
    assert f"serial {_serial(laptop)}" in new_page
    old_page = _page(client, f"/peers/{laptop.pk}/")
    assert 'id="renewed-by"' in old_page
    assert f'href="/peers/{renewal.pk}/"' in old_page
    assert 'id="renew-blocker"' in old_page  # one renewal at a time
    assert 'id="renew-link"' not in old_page
    queue = _page(_client(admin), "/peers/approvals/")
    assert f"renewal of {FQDN} (serial {_serial(laptop)}" in queue


def test_a_portal_key_renewal_shows_the_passphrase_once(laptop: Peer, owner: Any) -> None:
    response = _client(owner).post(f"/peers/{laptop.pk}/renew/", {"key_source": "portal"})

    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    page = response.content.decode()
    renewal = Peer.objects.get(renews=laptop)
    assert "is being renewed" in page
    assert PortalKey.objects.get(peer=renewal).handoff_passphrase in page
    assert f'href="/peers/{renewal.pk}/"' in page


def test_the_form_says_what_is_missing(laptop: Peer, owner: Any) -> None:
    client = _client(owner)

    empty = client.post(f"/peers/{laptop.pk}/renew/", {"key_source": "csr"})
    wrong = client.post(f"/peers/{laptop.pk}/renew/", {"key_source": "csr", "csr": "not a csr"})

    assert empty.status_code == wrong.status_code == 200
    assert "Paste or upload your certificate request" in html.unescape(empty.content.decode())
    assert 'class="field-error"' in wrong.content.decode()
    assert not Peer.objects.filter(renews=laptop).exists()


def test_a_second_renewal_is_refused_on_the_page(laptop: Peer, owner: Any) -> None:
    peer_renew(peer_id=laptop.pk, user=owner, csr_pem=ANY_CSR)
    client = _client(owner)

    page = _page(client, f"/peers/{laptop.pk}/renew/")
    # Another renewal (a portal-made key this time): the same form sent again is a reload, below.
    response = client.post(f"/peers/{laptop.pk}/renew/", {"key_source": "portal"})

    assert 'id="renew-blocker"' in page
    assert 'id="renew-form"' not in page
    assert response.status_code == 200
    assert "already being renewed" in html.unescape(response.content.decode())
    assert Peer.objects.filter(renews=laptop).count() == 1


def test_a_reload_of_the_renewal_passphrase_page_leads_to_the_renewal(laptop: Peer, owner: Any) -> None:
    client = _client(owner)
    first = client.post(f"/peers/{laptop.pk}/renew/", {"key_source": "portal"})
    renewal = Peer.objects.get(renews=laptop)
    passphrase = PortalKey.objects.get(peer=renewal).handoff_passphrase
    assert passphrase in first.content.decode()

    again = client.post(f"/peers/{laptop.pk}/renew/", {"key_source": "portal"})

    assert again.status_code == 302
    assert again["Location"] == f"/peers/{renewal.pk}/"
    assert Peer.objects.filter(renews=laptop).count() == 1
    page = _page(client, again["Location"])
    assert f"The renewal of {FQDN} is requested already: your browser sent the same form again" in page
    assert passphrase not in page


@pytest.mark.parametrize(("persona", "status"), [("other_user", 404), ("admin", 404), ("auditor", 403)])
def test_the_renew_page_is_the_owners_only(laptop: Peer, persona: str, status: int, request: Any) -> None:
    client = _client(request.getfixturevalue(persona))

    assert client.get(f"/peers/{laptop.pk}/renew/").status_code == status
    assert client.post(f"/peers/{laptop.pk}/renew/", {"key_source": "portal"}).status_code == status
    assert not Peer.objects.filter(renews=laptop).exists()


def test_anonymous_visitors_are_sent_to_sign_in(laptop: Peer) -> None:
    response = Client().get(f"/peers/{laptop.pk}/renew/")

    assert response.status_code == 302
    assert response["Location"].startswith("/login/")


def test_the_renew_form_needs_the_csrf_token(laptop: Peer, owner: Any) -> None:
    client = Client(enforce_csrf_checks=True)
    login(client, owner)
    token = client.get(f"/peers/{laptop.pk}/renew/").context["csrf_token"]

    forged = client.post(f"/peers/{laptop.pk}/renew/", {"key_source": "csr", "csr": ANY_CSR})
    assert forged.status_code == 403
    assert not Peer.objects.filter(renews=laptop).exists()
    genuine = client.post(
        f"/peers/{laptop.pk}/renew/", {"key_source": "csr", "csr": ANY_CSR, "csrfmiddlewaretoken": str(token)}
    )

    assert genuine.status_code == 302
    assert Peer.objects.filter(renews=laptop).count() == 1


# --- after the renewal ---------------------------------------------------------------------------------


def test_the_superseded_page_shows_the_revocation(gateway: Peer, laptop: Peer, owner: Any, admin: Any) -> None:
    from bundles.models import BundleDownload
    from bundles.services import bundle_download
    from tests.bundles.conftest import render

    renewal = peer_renew(peer_id=laptop.pk, user=owner, csr_pem=ANY_CSR).peer
    approved = peer_approve(peer_id=renewal.pk, approver=admin, actor=admin, enqueue=False)
    assert certificate_issue(request_id=approved.certificate_request_id) is not None  # type: ignore[arg-type]
    render(approved)
    bundle_download(peer_id=approved.pk, user=owner, address=None, via="page")
    BundleDownload.objects.update(at=timezone.now() - timedelta(days=4))
    assert renewals_supersede() == 1
    client = _client(owner)

    old_page = _page(client, f"/peers/{laptop.pk}/")
    new_page = _page(client, f"/peers/{approved.pk}/")

    assert 'id="revoked-note"' in old_page
    assert "superseded by its renewal" in old_page
    assert 'id="renew"' not in old_page
    assert 'id="renew-link"' in new_page  # the renewal is the live peer now, renewable in its turn


# --- the policy page -------------------------------------------------------------------------------------


def test_the_policy_page_sets_automatic_renewal_approval(admin: Any) -> None:
    client = _client(admin)

    page = _page(client, "/peers/policy/")
    response = client.post(
        "/peers/policy/", {"allowed_domains": "", "default_validity_days": "365", "auto_approve_renewals": "on"}
    )

    assert 'name="auto_approve_renewals"' in page
    assert response.status_code == 302
    assert policy_get().auto_approve_renewals is True
    assert 'id="id_auto_approve_renewals" checked' in _page(client, "/peers/policy/")


def test_an_automatically_approved_renewal_says_so(laptop: Peer, owner: Any, admin: Any) -> None:
    _client(admin).post(
        "/peers/policy/", {"allowed_domains": "", "default_validity_days": "365", "auto_approve_renewals": "on"}
    )
    client = _client(owner)

    response = client.post(f"/peers/{laptop.pk}/renew/", {"key_source": "csr", "csr": ANY_CSR}, follow=True)

    assert "approved by the site policy" in html.unescape(response.content.decode())
    assert Peer.objects.get(renews=laptop).decision == Peer.Decision.APPROVED
