"""The register page /peers/new/: pasted and uploaded CSRs, portal-made keys, and refused input."""

from __future__ import annotations

import html
import re
from typing import Any

import pytest
from django.apps import apps
from django.contrib.sessions.models import Session
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from authority.models import AuditEvent
from enrollment.models import Peer, PortalKey
from enrollment.services import peer_key_generate
from pki.csr import MAX_CSR_BYTES
from pki.keys import load_private_key
from tests.conftest import fixture_bytes, login

pytestmark = pytest.mark.django_db

URL = "/peers/new/"
FQDN = "client.example.com"
CSR = fixture_bytes("client-rsa2048.csr").decode()
ANY_CSR = fixture_bytes("client-nocn.csr").decode()  # no CN: fits any FQDN


def _form(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {"fqdn": FQDN, "kind": "client", "networks": "", "address": "", "key_source": "csr"}
    data["csr"] = CSR
    data.update(overrides)
    return data


def _page(response: Any) -> str:
    return html.unescape(response.content.decode())


def _refused(client: Client, field: str, message: str, **overrides: Any) -> Any:
    """POST the form; it must come back with ``message`` on ``field`` and nothing recorded."""
    events = AuditEvent.objects.count()
    response = client.post(URL, _form(**overrides))

    assert response.status_code == 200
    assert response.templates[0].name == "enrollment/peer_register.html"
    errors = response.context["form"].errors
    assert any(message in error for error in errors.get(field, [])), errors
    assert message in _page(response)
    assert 'class="field-error"' in response.content.decode()
    assert not Peer.objects.exists()
    assert not PortalKey.objects.exists()
    assert AuditEvent.objects.count() == events
    return response


# --- the page ---------------------------------------------------------------------------------


def test_it_sends_anonymous_users_to_login(client: Client) -> None:
    response = client.get(URL)

    assert response.status_code == 302
    assert response["Location"] == f"/login/?next={URL}"


def test_it_offers_a_roaming_user_only_the_client_kind(client: Client, owner: Any) -> None:
    login(client, owner)

    response = client.get(URL)

    assert response.status_code == 200
    page = response.content.decode()
    # Only one kind to choose from is no choice: the kind is a hidden "client", never a one-item menu.
    assert '<input type="hidden" name="kind" value="client" id="id_kind">' in page
    assert "<option" not in page
    assert 'enctype="multipart/form-data"' in page
    assert "csrfmiddlewaretoken" in page


def test_it_offers_a_ca_admin_the_server_kind(client: Client, admin: Any) -> None:
    login(client, admin)

    page = client.get(URL).content.decode()

    assert '<option value="client"' in page
    assert '<option value="server"' in page


# --- with the peer's own CSR -------------------------------------------------------------------------


def test_it_registers_a_pasted_csr(client: Client, owner: Any) -> None:
    login(client, owner)

    response = client.post(URL, _form(networks="10.10.0.0/24\n\n10.20.0.0/16\n"))

    peer = Peer.objects.get()
    assert response.status_code == 302
    assert response["Location"] == f"/peers/{peer.pk}/"
    assert (peer.owner, peer.fqdn, peer.kind) == (owner, FQDN, "client")
    assert peer.csr_pem == CSR.strip()  # the form trims surrounding whitespace
    assert peer.key_source == Peer.KeySource.CSR
    assert peer.networks == ["10.10.0.0/24", "10.20.0.0/16"]
    assert peer.status == "pending"
    assert not PortalKey.objects.exists()
    event = AuditEvent.objects.get(action="peer.registered")
    assert (event.actor, event.target) == ("user:alice", f"peer:{peer.pk}")
    followed = client.get(response["Location"])
    assert f"{FQDN} is registered and waits for a CA admin." in followed.content.decode()


def test_it_registers_an_uploaded_csr_file(client: Client, owner: Any) -> None:
    login(client, owner)
    upload = SimpleUploadedFile("laptop.csr", ANY_CSR.encode(), content_type="application/pkcs10")

    response = client.post(URL, _form(fqdn="laptop1.example.org", csr="", csr_file=upload))

    assert response.status_code == 302
    peer = Peer.objects.get()
    assert peer.fqdn == "laptop1.example.org"
    assert peer.csr_pem == ANY_CSR  # the file's bytes, as uploaded
    assert peer.key_source == Peer.KeySource.CSR


def test_the_uploaded_file_wins_over_the_pasted_text(client: Client, owner: Any) -> None:
    login(client, owner)
    upload = SimpleUploadedFile("client.csr", CSR.encode())

    response = client.post(URL, _form(csr="garbage", csr_file=upload))

    assert response.status_code == 302
    assert Peer.objects.get().csr_pem == CSR


def test_it_refuses_an_oversized_csr_file(client: Client, owner: Any) -> None:
    login(client, owner)
    upload = SimpleUploadedFile("huge.csr", b"A" * (MAX_CSR_BYTES + 1))

    _refused(client, "csr_file", f"a CSR is at most {MAX_CSR_BYTES}", csr="", csr_file=upload)


def test_it_asks_for_a_csr_when_none_is_given(client: Client, owner: Any) -> None:
    login(client, owner)

    _refused(client, "csr", "Paste or upload your certificate request, or choose 'Make the key for me'.", csr="")


# --- with a key made by the portal ---------------------------------------------------------------------


def _db_text_holding(secret: str) -> list[str]:
    """Every stored value, in every table, that holds ``secret``; sessions are decoded first."""
    hits: list[str] = []
    for model in apps.get_models():
        for row in model.objects.all():
            for field in model._meta.concrete_fields:
                value = getattr(row, field.attname)
                if isinstance(value, memoryview):
                    value = bytes(value)
                text = value.decode("latin-1") if isinstance(value, bytes) else str(value)
                if secret in text:
                    hits.append(f"{model._meta.label}.{field.name}")
            if isinstance(row, Session) and secret in str(row.get_decoded()):
                hits.append("sessions.Session.decoded")
    return hits


def test_it_shows_the_passphrase_of_a_portal_made_key_once(client: Client, owner: Any, signer: None) -> None:
    login(client, owner)

    response = client.post(URL, _form(csr="", key_source="portal"))

    assert response.status_code == 200
    assert response.templates[0].name == "enrollment/passphrase_once.html"
    cache_control = response["Cache-Control"]
    for directive in ("no-store", "no-cache", "must-revalidate", "private", "max-age=0"):
        assert directive in cache_control
    assert "Expires" in response
    match = re.search(r'<code id="passphrase">([^<]+)</code>', response.content.decode())
    assert match is not None
    passphrase = match.group(1)
    assert len(passphrase) >= 24
    assert "only this once" in response.content.decode()

    peer = Peer.objects.get()
    assert peer.key_source == Peer.KeySource.PORTAL
    assert peer.csr_pem == ""
    assert peer.progress == "making-key"
    assert "key_passphrase" not in str(AuditEvent.objects.get(action="peer.registered").data)

    # A later request shows the peer, never the passphrase; the database holds it in exactly one
    # place, the hand-off column the signer reads and wipes.
    detail = client.get(f"/peers/{peer.pk}/")
    assert detail.status_code == 200
    assert passphrase not in detail.content.decode()
    assert passphrase not in str(client.cookies)
    assert _db_text_holding(passphrase) == ["enrollment.PortalKey.handoff_passphrase"]
    assert PortalKey.objects.get(peer=peer).handoff_passphrase == passphrase

    assert peer_key_generate(peer_id=peer.pk) is True

    assert _db_text_holding(passphrase) == []
    portal_key = PortalKey.objects.get(peer=peer)
    assert portal_key.handoff_passphrase == ""
    assert load_private_key(portal_key.encrypted_pem.encode(), passphrase.encode()).key_size == 3072  # type: ignore[union-attr]
    assert passphrase not in client.get(f"/peers/{peer.pk}/").content.decode()


def test_it_ignores_a_pasted_csr_when_the_portal_makes_the_key(client: Client, owner: Any) -> None:
    login(client, owner)

    response = client.post(URL, _form(key_source="portal"))

    assert response.status_code == 200
    peer = Peer.objects.get()
    assert peer.key_source == Peer.KeySource.PORTAL
    assert peer.csr_pem == ""


# --- refused input ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fqdn", "message"),
    [
        ("laptop\n.example.com", "characters that are not allowed: '\\n'"),
        ('laptop".example.com', "characters that are not allowed: '\"'"),
        ("laptop one.example.com", "characters that are not allowed: ' '"),
        ("läptop.example.com", "non-ASCII"),
        ("Laptop.example.com", "lower case"),
        ("laptop", "at least two labels"),
    ],
)
def test_it_refuses_a_bad_fqdn(client: Client, owner: Any, fqdn: str, message: str) -> None:
    login(client, owner)

    response = _refused(client, "fqdn", message, fqdn=fqdn, csr=ANY_CSR)

    assert response.context["form"]["fqdn"].value() == fqdn.strip()  # the input is kept for correction


def test_it_trims_whitespace_around_the_fqdn(client: Client, owner: Any) -> None:
    login(client, owner)

    response = client.post(URL, _form(fqdn=f"  {FQDN}\r\n"))

    assert response.status_code == 302
    assert Peer.objects.get().fqdn == FQDN


@pytest.mark.parametrize(
    ("networks", "message"),
    [
        ("10.10.0.1/24", "host bits must be zero"),
        ("10.10.0.0/33", "not a network in CIDR form"),
        ("10.0.0.0/8; pass in all", "not a network in CIDR form"),
        ("any", "not a network in CIDR form"),
        ("fe80::%eth0/64", "not a network in CIDR form"),
    ],
)
def test_it_refuses_a_bad_network(client: Client, owner: Any, networks: str, message: str) -> None:
    login(client, owner)

    _refused(client, "networks", message, networks=networks)


@pytest.mark.parametrize(
    ("csr", "message"),
    [
        ("weak-rsa1024.csr", "1024 bits; at least 2048 are required"),
        ("weak-e3.csr", "public exponent is 3"),
        ("weak-fermat.csr", "can be factored"),
        ("weak-p224.csr", "secp224r1 is not accepted"),
        ("weak-secp256k1.csr", "secp256k1 is not accepted"),
        ("asks-ca-true.csr", "CA:TRUE"),
        ("bad-signature.csr", "does not verify"),
        ("other-cn.csr", "is for 'other.example.com', not for 'client.example.com'"),
        ("client-rsa2048.key", "This is a private key, not a certificate request."),
    ],
)
def test_it_refuses_a_bad_csr(client: Client, owner: Any, csr: str, message: str) -> None:
    login(client, owner)

    _refused(client, "csr", message, csr=fixture_bytes(csr).decode())


def test_it_never_sends_a_pasted_private_key_back(client: Client, owner: Any) -> None:
    login(client, owner)
    key = fixture_bytes("client-rsa2048.key").decode()

    response = client.post(
        "/peers/new/", {"fqdn": "client.example.com", "kind": "client", "key_source": "csr", "csr": key}
    )

    assert response.status_code == 200
    body = response.content.decode()
    assert "This is a private key" in body
    assert "PRIVATE KEY-----" not in body
    assert key.splitlines()[1] not in body


def test_it_refuses_a_bad_uploaded_csr_on_the_csr_field(client: Client, owner: Any) -> None:
    login(client, owner)
    upload = SimpleUploadedFile("weak.csr", fixture_bytes("weak-rsa1024.csr"))

    _refused(client, "csr", "at least 2048 are required", csr="", csr_file=upload)


def test_it_refuses_a_server_kind_from_a_roaming_user(client: Client, owner: Any) -> None:
    login(client, owner)

    message = "Select a valid choice. server is not one of the available choices."

    response = client.post(URL, _form(kind="server", address="192.0.2.10"))

    assert response.status_code == 200
    assert response.context["form"].errors["kind"] == [message]
    assert f"Kind: {message}" in _page(response)  # in the summary: the field itself is hidden
    assert not Peer.objects.exists()


def test_it_registers_a_gateway_for_a_ca_admin(client: Client, admin: Any) -> None:
    login(client, admin)

    response = client.post(
        URL, _form(fqdn="vpn.example.org", kind="server", address="192.0.2.10", networks="10.0.0.0/24", csr=ANY_CSR)
    )

    assert response.status_code == 302
    peer = Peer.objects.get()
    assert (peer.kind, peer.address, peer.networks) == ("server", "192.0.2.10", ["10.0.0.0/24"])


def test_it_refuses_a_gateway_without_an_address(client: Client, admin: Any) -> None:
    login(client, admin)

    _refused(client, "address", "needs its public address", fqdn="vpn.example.org", kind="server", csr=ANY_CSR)


def test_it_refuses_a_duplicate_fqdn(client: Client, owner: Any, other_user: Any) -> None:
    login(client, owner)
    assert client.post(URL, _form()).status_code == 302
    first = Peer.objects.get()
    login(client, other_user)
    events = AuditEvent.objects.count()

    response = client.post(URL, _form())

    assert response.status_code == 200
    assert f"{FQDN} is already registered" in response.context["form"].errors["fqdn"][0]
    assert f"{FQDN} is already registered" in _page(response)
    assert list(Peer.objects.all()) == [first]
    assert AuditEvent.objects.count() == events


@pytest.mark.parametrize("field", ["validity_days", "is_ca", "owner", "profile"])
def test_it_ignores_fields_that_are_not_on_the_form(client: Client, owner: Any, other_user: Any, field: str) -> None:
    login(client, owner)

    response = client.post(URL, _form(**{field: "3650" if field == "validity_days" else str(other_user.pk)}))

    assert response.status_code == 302
    peer = Peer.objects.get()
    assert peer.owner == owner
    assert AuditEvent.objects.get(action="peer.registered").data["owner"] == "alice"


def test_it_accepts_only_get_and_post(client: Client, owner: Any) -> None:
    login(client, owner)

    assert client.put(URL, _form()).status_code == 405
    assert not Peer.objects.exists()


# --- the same form sent again (a reload of the answer, or Back) ------------------------------------


def test_a_reload_of_the_passphrase_page_leads_to_the_peer_not_to_a_refusal(
    client: Client, owner: Any, signer: None
) -> None:
    login(client, owner)
    first = client.post(URL, _form(csr="", key_source="portal", networks="10.1.0.0/24"))
    assert first.templates[0].name == "enrollment/passphrase_once.html"
    passphrase = re.search(r'<code id="passphrase">([^<]+)</code>', first.content.decode()).group(1)  # type: ignore[union-attr]
    peer = Peer.objects.get()
    events = AuditEvent.objects.count()

    again = client.post(URL, _form(csr="", key_source="portal", networks="10.1.0.0/24"))

    assert again.status_code == 302
    assert again["Location"] == f"/peers/{peer.pk}/"
    assert list(Peer.objects.all()) == [peer]
    assert AuditEvent.objects.count() == events
    page = _page(client.get(again["Location"]))
    assert "your browser sent the same form again" in page
    assert "shown once" in page
    assert "already registered" not in page.replace("registered already", "")
    assert passphrase not in page
    assert _db_text_holding(passphrase) == ["enrollment.PortalKey.handoff_passphrase"]  # nothing kept for the reload


def test_the_passphrase_page_offers_a_copy_button_and_the_peer(client: Client, owner: Any) -> None:
    login(client, owner)

    response = client.post(URL, _form(csr="", key_source="portal"))

    body = response.content.decode()
    peer = Peer.objects.get()
    assert 'data-copy-target="passphrase"' in body
    assert "js/copy-text.js" in body
    assert f'href="/peers/{peer.pk}/"' in body


def test_a_resent_csr_registration_leads_to_the_peer(client: Client, owner: Any) -> None:
    login(client, owner)
    assert client.post(URL, _form()).status_code == 302
    peer = Peer.objects.get()

    again = client.post(URL, _form())

    assert again.status_code == 302
    assert again["Location"] == f"/peers/{peer.pk}/"
    assert Peer.objects.count() == 1
    assert "This is its page." in _page(client.get(again["Location"]))


@pytest.mark.parametrize(
    "change",
    [{"networks": "10.9.0.0/24"}, {"key_source": "portal", "csr": ""}, {"address": "192.0.2.7"}],
    ids=["other-networks", "other-key", "other-address"],
)
def test_a_different_registration_of_the_same_fqdn_is_still_refused(
    client: Client, owner: Any, change: dict[str, str]
) -> None:
    login(client, owner)
    assert client.post(URL, _form()).status_code == 302

    response = client.post(URL, _form(**change))

    assert response.status_code == 200
    assert f"{FQDN} is already registered" in _page(response)
    assert Peer.objects.count() == 1


def test_another_users_resent_form_is_refused(client: Client, owner: Any, other_user: Any) -> None:
    login(client, owner)
    assert client.post(URL, _form()).status_code == 302
    login(client, other_user)

    response = client.post(URL, _form())

    assert response.status_code == 200
    assert f"{FQDN} is already registered" in _page(response)


# --- the page for each role: what is shown, the error summary, the wording ----------------------------


def test_a_roaming_user_gets_the_client_gateway_fields_folded_away(client: Client, owner: Any) -> None:
    login(client, owner)

    page = _page(client.get(URL))

    folded = re.search(r'<details class="client-gateway" id="client-gateway">(.*?)</details>', page, re.S)
    assert folded is not None  # closed: a laptop needs neither
    assert 'id="id_networks"' in folded.group(1)
    assert 'id="id_address"' in folded.group(1)
    assert "Only for a host with a fixed public IP address" in folded.group(1)
    assert "Required for the VPN gateway" not in page


def test_the_client_gateway_fields_unfold_when_used(client: Client, owner: Any) -> None:
    login(client, owner)

    response = client.post(URL, _form(networks="10.10.0.1/24"))

    assert '<details class="client-gateway" id="client-gateway" open>' in response.content.decode()


def test_a_ca_admin_gets_every_field_unfolded(client: Client, admin: Any) -> None:
    login(client, admin)

    page = _page(client.get(URL))

    assert 'id="client-gateway"' not in page
    assert '<select name="kind"' in page
    assert "Required for the VPN gateway (kind server)" in page


def test_errors_are_summed_up_at_the_top_with_links_to_their_fields(client: Client, owner: Any) -> None:
    login(client, owner)

    response = client.post(URL, _form(fqdn="", csr=""))

    page = _page(response)
    summary = re.search(
        r'<div class="banner danger error-summary" role="alert" id="error-summary">(.*?)</div>', page, re.S
    )
    assert summary is not None
    assert page.index('id="error-summary"') < page.index('id="field-fqdn"')
    assert "The peer was not registered." in summary.group(1)
    listed = summary.group(1)
    assert '<a href="#id_fqdn">FQDN of the peer</a>: This field is required.' in listed
    assert '<a href="#id_csr">Certificate request (PEM)</a>: Paste or upload your certificate request' in listed


def test_a_page_without_errors_has_no_summary(client: Client, owner: Any) -> None:
    login(client, owner)

    assert 'id="error-summary"' not in client.get(URL).content.decode()


@pytest.mark.parametrize(
    "overrides",
    [
        {"fqdn": ""},
        {"fqdn": "Laptop.example.com", "csr": ANY_CSR},
        {"networks": "10.10.0.1/24"},
        {"address": "not-an-address"},
        {"csr": ""},
        {"csr": "not a csr"},
        {"csr": fixture_bytes("weak-rsa1024.csr").decode()},
        {"csr": fixture_bytes("client-rsa2048.key").decode()},
        {"key_source": "neither"},
    ],
    ids=["required", "fqdn", "network", "address", "no-csr", "not-a-csr", "weak-csr", "private-key", "choice"],
)
def test_every_message_is_a_sentence(client: Client, owner: Any, overrides: dict[str, str]) -> None:
    """Before: "This field is required." beside "paste or upload your certificate request" and
    "the FQDN must be lower case (IPsec peers compare IDs byte for byte)"."""
    login(client, owner)

    response = client.post(URL, _form(**overrides))

    messages = [m for errors in response.context["form"].errors.values() for m in errors]
    assert messages
    for message in messages:
        assert message[0].isupper() or message[0] in "'\"", message
        assert message.endswith("."), message


def test_a_duplicate_keeps_the_fqdn_as_written(client: Client, owner: Any, other_user: Any) -> None:
    login(client, owner)
    client.post(URL, _form())
    login(client, other_user)

    response = client.post(URL, _form())

    assert response.context["form"].errors["fqdn"] == [f"{FQDN} is already registered."]


@pytest.mark.parametrize(
    ("message", "shown"),
    [
        (
            "the RSA key has 1024 bits; at least 2048 are required",
            "The RSA key has 1024 bits; at least 2048 are required.",
        ),
        ("laptop.example.com is already registered", "laptop.example.com is already registered."),
        ("'x' is not an IP address", "'x' is not an IP address."),
        ("This field is required.", "This field is required."),
        ("at most 64 networks are accepted", "At most 64 networks are accepted."),
        ("  ", ""),
    ],
)
def test_sentence(message: str, shown: str) -> None:
    from enrollment.forms import sentence

    assert sentence(message) == shown
