"""The authority pages: the public CA certificate, the CA page, the overview, sign-in and health."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.test import Client

from authority.models import CertificateAuthority
from enrollment.services import peer_register
from tests.conftest import fixture_bytes, login

pytestmark = pytest.mark.django_db

PASSWORD = "correct horse battery"


def _page(client: Client, url: str) -> str:
    response = client.get(url)
    assert response.status_code == 200
    return response.content.decode()


# --- /ca.pem -------------------------------------------------------------------------------------


def test_ca_pem_is_404_before_there_is_a_ca(client: Client) -> None:
    assert client.get("/ca.pem").status_code == 404


def test_ca_pem_serves_the_ca_certificate_without_login(client: Client, ca: CertificateAuthority) -> None:
    response = client.get("/ca.pem")

    assert response.status_code == 200
    assert response.content.decode() == ca.certificate_pem
    assert response.content == fixture_bytes("ca-rsa2048.crt")
    assert response["Content-Type"] == "application/x-pem-file"
    assert response["Content-Disposition"] == 'attachment; filename="ca.pem"'
    assert b"PRIVATE KEY" not in response.content


def test_ca_pem_accepts_only_get(client: Client, ca: CertificateAuthority) -> None:
    assert client.post("/ca.pem").status_code == 405


# --- /ca/ ----------------------------------------------------------------------------------------


def test_ca_page_is_for_ca_admins(client: Client, ca: CertificateAuthority, admin: Any) -> None:
    login(client, admin)

    page = _page(client, "/ca/")

    assert "CN=Fixture RSA CA" in page
    fingerprint = ":".join(ca.fingerprint_sha256[i : i + 2] for i in range(0, 64, 2)).upper()
    assert fingerprint in page
    assert "rsa-2048" in page


def test_ca_page_counts_a_superuser_as_ca_admin(
    client: Client, ca: CertificateAuthority, django_user_model: Any
) -> None:
    root = django_user_model.objects.create_superuser("root", "root@example.org", PASSWORD)
    login(client, root)

    assert client.get("/ca/").status_code == 200


def test_ca_page_tells_an_admin_how_to_make_the_ca(client: Client, admin: Any) -> None:
    login(client, admin)

    assert "init_ca" in _page(client, "/ca/")


@pytest.mark.parametrize("persona", ["owner", "auditor"])
def test_ca_page_shows_its_public_part_to_everyone_signed_in(
    client: Client, ca: CertificateAuthority, persona: str, request: Any
) -> None:
    """Before: 403, although the README tells roaming users to compare the CA fingerprint with this page."""
    login(client, request.getfixturevalue(persona))

    page = _page(client, "/ca/")

    assert "CN=Fixture RSA CA" in page
    fingerprint = ":".join(ca.fingerprint_sha256[i : i + 2] for i in range(0, 64, 2)).upper()
    assert f'<code class="wrap" id="fingerprint">{fingerprint}</code>' in page
    assert ca.not_after.strftime("%Y-%m-%d %H:%M") in page
    for link in ('href="/ca.pem"', 'href="/crl.pem"', 'href="/crl.der"'):
        assert link in page
    # How the key is kept and the CRL's health stay with CA admins.
    assert 'id="ca-origin"' not in page
    assert "Key storage" not in page
    assert 'id="crl"' not in page
    assert "init_ca" not in page


def test_ca_page_shows_the_admin_parts_to_admins(client: Client, ca: CertificateAuthority, admin: Any) -> None:
    login(client, admin)

    page = _page(client, "/ca/")

    assert 'id="ca-origin"' in page
    assert "Key storage" in page
    assert 'id="crl"' in page


def test_ca_page_tells_others_that_there_is_no_ca_yet(client: Client, owner: Any) -> None:
    login(client, owner)

    page = _page(client, "/ca/")

    assert "An administrator has not set up the CA yet" in page
    assert "init_ca" not in page


def test_ca_page_sends_anonymous_users_to_login(client: Client, ca: CertificateAuthority) -> None:
    response = client.get("/ca/")

    assert response.status_code == 302
    assert response["Location"] == "/login/?next=/ca/"


def test_ca_page_sends_a_deactivated_admin_to_login(client: Client, admin: Any) -> None:
    login(client, admin)
    admin.is_active = False
    admin.save()

    # The live session of a deactivated user no longer authenticates: back to the login page.
    response = client.get("/ca/")
    assert response.status_code == 302
    assert response["Location"] == "/login/?next=/ca/"


# --- / --------------------------------------------------------------------------------------------


def test_overview_shows_the_ca_link_to_admins(client: Client, ca: CertificateAuthority, admin: Any) -> None:
    login(client, admin)

    page = _page(client, "/")

    assert '<a href="/ca/"' in page
    assert "Certificate authority" in page
    assert "CA admin" in page
    assert "waiting for approval" in page


@pytest.mark.parametrize("persona", ["owner", "auditor"])
def test_overview_shows_other_roles_the_ca_link_but_not_the_admin_work(
    client: Client, ca: CertificateAuthority, persona: str, request: Any
) -> None:
    login(client, request.getfixturevalue(persona))

    page = _page(client, "/")

    assert '<a href="/ca/"' in page  # the CA page's public part is everyone's (item 8 of issue 10)
    assert 'href="/peers/approvals/"' not in page
    assert "waiting for approval" not in page
    assert "My peers" in page


def test_overview_labels_the_auditor(client: Client, auditor: Any) -> None:
    login(client, auditor)

    assert '<span class="role">auditor</span>' in _page(client, "/")


def test_overview_tells_a_user_that_there_is_no_ca_yet(client: Client, owner: Any) -> None:
    login(client, owner)

    assert "An administrator has not set up the CA yet" in _page(client, "/")


def test_overview_sends_anonymous_users_to_login(client: Client) -> None:
    response = client.get("/")

    assert response.status_code == 302
    assert response["Location"] == "/login/?next=/"


# --- sign in and out ---------------------------------------------------------------------------------


def test_it_signs_in_and_out(client: Client, owner: Any) -> None:
    assert "Sign in" in _page(client, "/login/")

    response = client.post("/login/", {"username": "alice", "password": PASSWORD})
    assert response.status_code == 302
    assert response["Location"] == "/"
    assert "alice" in _page(client, "/")

    response = client.post("/logout/")
    assert response.status_code == 302
    assert response["Location"] == "/login/"
    assert client.get("/").status_code == 302


def test_it_rotates_the_session_key_on_sign_in(client: Client, owner: Any) -> None:
    before = client.session.session_key  # the test client makes and stores an anonymous session
    assert before

    client.post("/login/", {"username": "alice", "password": PASSWORD})

    assert client.session.session_key != before
    assert client.session["_auth_user_id"] == str(owner.pk)


def test_it_refuses_a_wrong_password(client: Client, owner: Any) -> None:
    response = client.post("/login/", {"username": "alice", "password": "wrong horse"})

    assert response.status_code == 200
    assert "did not match" in response.content.decode()
    assert "_auth_user_id" not in client.session


def test_it_refuses_an_inactive_user(client: Client, owner: Any) -> None:
    owner.is_active = False
    owner.save()

    response = client.post("/login/", {"username": "alice", "password": PASSWORD})

    assert response.status_code == 200
    assert "_auth_user_id" not in client.session


def test_logout_needs_post(client: Client, owner: Any) -> None:
    login(client, owner)

    assert client.get("/logout/").status_code == 405
    assert client.get("/").status_code == 200  # still signed in


def test_login_redirects_a_signed_in_user(client: Client, owner: Any) -> None:
    login(client, owner)

    response = client.get("/login/")

    assert response.status_code == 302
    assert response["Location"] == "/"


# --- /healthz ---------------------------------------------------------------------------------------


def test_healthz_is_ok_without_login(client: Client) -> None:
    response = client.get("/healthz")

    assert response.status_code == 200
    assert response.json() == {"status": "ok", "ca": False}


def test_healthz_reports_the_ca(client: Client, ca: CertificateAuthority) -> None:
    assert client.get("/healthz").json() == {"status": "ok", "ca": True}


# --- /peers/ --------------------------------------------------------------------------------------


def _peer_for(user: Any, fqdn: str, network: str = "10.1.0.0/24") -> None:
    peer_register(
        owner=user, fqdn=fqdn, kind="client", networks=[network], address=None,
        csr_pem=fixture_bytes("client-nocn.csr").decode(), actor=user,
    )  # fmt: skip


def test_peers_lists_only_the_users_own_peers(client: Client, owner: Any, other_user: Any) -> None:
    _peer_for(owner, "alice-laptop.example.com")
    _peer_for(other_user, "mallory-laptop.example.com", "10.2.0.0/24")  # two peers never share a network (T35)
    login(client, owner)

    for url in ("/peers/", "/"):
        page = _page(client, url)
        assert "alice-laptop.example.com" in page
        assert "mallory-laptop.example.com" not in page
    assert "pending" in _page(client, "/peers/")


def test_peers_show_when_each_certificate_expires(client: Client, ca: Any, owner: Any, admin: Any) -> None:
    from datetime import timedelta

    from django.utils import timezone

    from authority.models import Certificate
    from tests.bundles.conftest import issue

    issued, _ = issue(owner, admin, "laptop.example.com")
    soon, _ = issue(owner, admin, "tablet.example.com")
    gone, _ = issue(owner, admin, "old.example.com")
    _peer_for(owner, "waiting.example.com")
    Certificate.objects.filter(request__peer=soon).update(not_after=timezone.now() + timedelta(days=5))
    Certificate.objects.filter(request__peer=gone).update(not_after=timezone.now() - timedelta(days=1))
    login(client, owner)

    for url in ("/peers/", "/"):
        page = _page(client, url)
        assert "<th>Expires</th>" in page
        rows = {fqdn: row for fqdn, row in re.findall(r"<code>([a-z.]+)</code></a></td>(.*?)</tr>", page, re.S)}
        not_after = Certificate.objects.get(request__peer=issued).not_after
        assert not_after.strftime("%Y-%m-%d") in rows["laptop.example.com"]
        assert "renew soon" not in rows["laptop.example.com"]
        assert "renew soon" in rows["tablet.example.com"]
        assert "expired" in rows["old.example.com"]
        assert "not issued" in rows["waiting.example.com"]


def test_the_overview_reads_the_certificates_with_the_peers(
    client: Client, ca: Any, owner: Any, admin: Any, django_assert_max_num_queries: Any
) -> None:
    from tests.bundles.conftest import issue

    login(client, owner)
    issue(owner, admin, "one.example.com")
    _page(client, "/")
    with django_assert_max_num_queries(30) as few:
        _page(client, "/")
    for n in range(5):
        issue(owner, admin, f"host{n}.example.com")
    with django_assert_max_num_queries(len(few.captured_queries)):
        _page(client, "/")  # no query per peer for its expiry


def test_peers_shows_an_empty_list(client: Client, other_user: Any, owner: Any) -> None:
    _peer_for(owner, "alice-laptop.example.com")
    login(client, other_user)

    page = _page(client, "/peers/")

    assert "You have no peers yet" in page
    assert "alice-laptop.example.com" not in page


def test_peers_sends_anonymous_users_to_login(client: Client) -> None:
    response = client.get("/peers/")

    assert response.status_code == 302
    assert response["Location"] == "/login/?next=/peers/"
