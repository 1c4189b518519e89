"""POST /api/v1/peers: registration with a CSR or with a portal-made key, and bad input (T10, T30)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from rest_framework.test import APIClient

from authority.models import AuditEvent
from enrollment.models import Peer, PortalKey
from tests.api.conftest import ANY_FQDN_CSR, CLIENT_CSR, CLIENT_FQDN, token_client
from tests.conftest import fixture_bytes

pytestmark = pytest.mark.django_db

URL = "/api/v1/peers"
PEER_FIELDS = {
    "id", "fqdn", "kind", "networks", "address", "status", "progress", "owner", "key_source", "created_at",
    "decision_reason", "certificate",
}  # fmt: skip


def _post(client: APIClient, body: Any) -> Any:
    return client.post(URL, body, format="json")


def test_it_registers_a_client_with_its_csr(owner: Any) -> None:
    response = _post(token_client(owner), {"fqdn": CLIENT_FQDN, "kind": "client", "csr": CLIENT_CSR})

    assert response.status_code == 201
    data = response.json()
    assert set(data) == PEER_FIELDS
    peer = Peer.objects.get()
    assert data["id"] == peer.pk
    assert (data["fqdn"], data["kind"], data["networks"], data["address"]) == (CLIENT_FQDN, "client", [], None)
    assert (data["status"], data["progress"], data["key_source"]) == ("pending", "pending", "csr")
    assert data["owner"] == "alice"
    assert data["certificate"] is None
    assert data["decision_reason"] == ""
    assert peer.owner == owner
    assert peer.csr_pem == CLIENT_CSR
    assert not PortalKey.objects.exists()
    event = AuditEvent.objects.get(action="peer.registered")
    assert event.actor == "user:alice"


def test_it_defaults_the_kind_to_client_and_sorts_networks(owner: Any) -> None:
    body = {"fqdn": "branch.example.com", "networks": ["10.2.0.0/16", "10.1.0.0/24"], "csr": ANY_FQDN_CSR}

    response = _post(token_client(owner), body)

    assert response.status_code == 201
    assert response.json()["kind"] == "client"
    assert response.json()["networks"] == ["10.1.0.0/24", "10.2.0.0/16"]


def test_it_makes_the_key_when_there_is_no_csr(owner: Any) -> None:
    response = _post(token_client(owner), {"fqdn": "laptop.example.com"})

    assert response.status_code == 201
    data = response.json()
    assert set(data) == PEER_FIELDS | {"key_passphrase", "key_passphrase_note"}
    assert data["key_source"] == "portal"
    assert (data["status"], data["progress"]) == ("pending", "making-key")
    assert len(data["key_passphrase"]) >= 24
    assert "only in this response" in data["key_passphrase_note"]
    portal_key = PortalKey.objects.get(peer_id=data["id"])
    assert portal_key.handoff_passphrase == data["key_passphrase"]
    assert portal_key.encrypted_pem == ""


def test_it_never_shows_the_passphrase_again(owner: Any) -> None:
    client = token_client(owner)
    created = _post(client, {"fqdn": "laptop.example.com"}).json()

    detail = client.get(f"{URL}/{created['id']}")
    listing = client.get(URL)

    assert detail.status_code == 200
    assert created["key_passphrase"] not in detail.content.decode()
    assert created["key_passphrase"] not in listing.content.decode()
    assert "key_passphrase" not in detail.json()


def test_it_lets_ca_admins_register_a_gateway(admin: Any) -> None:
    body = {"fqdn": "vpn.example.com", "kind": "server", "address": "192.0.2.1", "networks": ["10.0.0.0/24"]}

    response = _post(token_client(admin), body)

    assert response.status_code == 201
    data = response.json()
    assert (data["kind"], data["address"], data["owner"]) == ("server", "192.0.2.1", "carol")


def test_it_refuses_a_gateway_from_a_roaming_user(owner: Any) -> None:
    body = {"fqdn": "vpn.example.com", "kind": "server", "address": "192.0.2.1", "csr": ANY_FQDN_CSR}

    response = _post(token_client(owner), body)

    assert response.status_code == 403
    assert list(response.json()["errors"]) == ["kind"]
    assert not Peer.objects.exists()


def test_it_refuses_a_gateway_without_an_address(admin: Any) -> None:
    response = _post(token_client(admin), {"fqdn": "vpn.example.com", "kind": "server", "csr": ANY_FQDN_CSR})

    assert response.status_code == 400
    assert list(response.json()["errors"]) == ["address"]


def test_it_gives_409_for_a_taken_fqdn(owner: Any, other_user: Any) -> None:
    assert _post(token_client(owner), {"fqdn": CLIENT_FQDN, "csr": CLIENT_CSR}).status_code == 201

    response = _post(token_client(other_user), {"fqdn": CLIENT_FQDN, "csr": ANY_FQDN_CSR})

    assert response.status_code == 409
    assert list(response.json()["errors"]) == ["fqdn"]
    assert Peer.objects.count() == 1


BAD_BODIES: dict[str, tuple[Any, str]] = {
    # T10 mass assignment: fields that are not part of the request are refused, not ignored.
    "validity_days": ({"fqdn": CLIENT_FQDN, "csr": CLIENT_CSR, "validity_days": 3650}, "validity_days"),
    "is_ca": ({"fqdn": CLIENT_FQDN, "csr": CLIENT_CSR, "is_ca": 1}, "is_ca"),
    "profile": ({"fqdn": CLIENT_FQDN, "csr": CLIENT_CSR, "profile": "subca"}, "profile"),
    "owner": ({"fqdn": CLIENT_FQDN, "csr": CLIENT_CSR, "owner": "carol"}, "owner"),
    "read-only status": ({"fqdn": CLIENT_FQDN, "csr": CLIENT_CSR, "status": "issued"}, "status"),
    "key_source": ({"fqdn": CLIENT_FQDN, "key_source": "csr"}, "key_source"),
    # FQDNs that would break the generated configuration files (T1-T3).
    "fqdn newline": ({"fqdn": "a\nb.example.com", "csr": ANY_FQDN_CSR}, "fqdn"),
    "fqdn quote": ({"fqdn": 'a"b.example.com', "csr": ANY_FQDN_CSR}, "fqdn"),
    "fqdn comma": ({"fqdn": "a,b.example.com", "csr": ANY_FQDN_CSR}, "fqdn"),
    "fqdn upper case": ({"fqdn": "Client.example.com", "csr": ANY_FQDN_CSR}, "fqdn"),
    "fqdn one label": ({"fqdn": "localhost", "csr": ANY_FQDN_CSR}, "fqdn"),
    "fqdn NUL": ({"fqdn": "a\x00b.example.com", "csr": ANY_FQDN_CSR}, "fqdn"),
    "fqdn too long": ({"fqdn": "a." * 100 + "com", "csr": ANY_FQDN_CSR}, "fqdn"),
    "fqdn missing": ({"csr": ANY_FQDN_CSR}, "fqdn"),
    "cidr host bits": ({"fqdn": "gw1.example.com", "networks": ["10.0.0.1/24"], "csr": ANY_FQDN_CSR}, "networks"),
    "cidr garbage": ({"fqdn": "gw1.example.com", "networks": ["10.0.0.0/33"], "csr": ANY_FQDN_CSR}, "networks"),
    "cidr injection": ({"fqdn": "gw1.example.com", "networks": ["10.0.0.0/24\npass"], "csr": ANY_FQDN_CSR}, "networks"),
    "address garbage": ({"fqdn": "gw1.example.com", "address": "192.0.2.300", "csr": ANY_FQDN_CSR}, "address"),
    "address with zone": ({"fqdn": "gw1.example.com", "address": "fe80::1%eth0", "csr": ANY_FQDN_CSR}, "address"),
    "cidr with zone": ({"fqdn": "gw1.example.com", "networks": ["fe80::%eth0/64"], "csr": ANY_FQDN_CSR}, "networks"),
    "fqdn surrogate": ({"fqdn": "\ud800.example.com", "csr": ANY_FQDN_CSR}, "fqdn"),
    "csr NUL": ({"fqdn": CLIENT_FQDN, "csr": CLIENT_CSR + "\x00"}, "csr"),
    "csr garbage": ({"fqdn": CLIENT_FQDN, "csr": "hello"}, "csr"),
    "csr bad signature": ({"fqdn": CLIENT_FQDN, "csr": fixture_bytes("bad-signature.csr").decode()}, "csr"),
    "csr for another name": ({"fqdn": "other.example.com", "csr": CLIENT_CSR}, "csr"),
    "csr asks to be a CA": ({"fqdn": CLIENT_FQDN, "csr": fixture_bytes("asks-ca-true.csr").decode()}, "csr"),
    "csr too large": ({"fqdn": CLIENT_FQDN, "csr": "A" * 9000}, "csr"),
    # Wrong types are refused, not coerced.
    "fqdn number": ({"fqdn": 123}, "fqdn"),
    "fqdn null": ({"fqdn": None}, "fqdn"),
    "fqdn list": ({"fqdn": [CLIENT_FQDN]}, "fqdn"),
    "kind unknown": ({"fqdn": CLIENT_FQDN, "kind": "router", "csr": CLIENT_CSR}, "kind"),
    "kind number": ({"fqdn": CLIENT_FQDN, "kind": 1, "csr": CLIENT_CSR}, "kind"),
    "networks string": ({"fqdn": CLIENT_FQDN, "networks": "10.0.0.0/24", "csr": CLIENT_CSR}, "networks"),
    "networks object": ({"fqdn": CLIENT_FQDN, "networks": {"a": "10.0.0.0/24"}, "csr": CLIENT_CSR}, "networks"),
    "network number": ({"fqdn": CLIENT_FQDN, "networks": [10], "csr": CLIENT_CSR}, "networks"),
    "too many networks": (
        {"fqdn": CLIENT_FQDN, "networks": [f"10.{i}.0.0/16" for i in range(65)], "csr": CLIENT_CSR},
        "networks",
    ),
    "address number": ({"fqdn": CLIENT_FQDN, "address": 3221225985, "csr": CLIENT_CSR}, "address"),
    "csr number": ({"fqdn": CLIENT_FQDN, "csr": 7}, "csr"),
    "body is a list": ([{"fqdn": CLIENT_FQDN}], "__all__"),
    "body is a string": ("client.example.com", "__all__"),
    "body is null": (None, "__all__"),
}


@pytest.mark.parametrize("case", list(BAD_BODIES))
def test_it_refuses_bad_input_and_records_nothing(case: str, owner: Any) -> None:
    body, field = BAD_BODIES[case]

    response = token_client(owner).post(URL, json.dumps(body), content_type="application/json")

    assert response.status_code == 400, response.content
    assert field in response.json()["errors"]
    assert all(isinstance(m, str) for messages in response.json()["errors"].values() for m in messages)
    assert not Peer.objects.exists()
    assert not PortalKey.objects.exists()
    assert not AuditEvent.objects.filter(action="peer.registered").exists()


def test_it_names_each_unknown_field(owner: Any) -> None:
    body = {"fqdn": CLIENT_FQDN, "csr": CLIENT_CSR, "is_ca": True, "validity_days": 3650}

    response = _post(token_client(owner), body)

    assert response.json() == {
        "errors": {"is_ca": ["this field is not accepted here"], "validity_days": ["this field is not accepted here"]}
    }


@pytest.mark.parametrize(
    "raw",
    [
        b"{",
        b'{"fqdn": "client.example.com",}',
        b"fqdn=client.example.com",
        b'{"fqdn": NaN}',
        b"\xff\xfe",
        b"[" * 30000 + b"]" * 30000,
        b'{"fqdn": ' + b"9" * 5000 + b"}",
    ],
    ids=["truncated", "trailing comma", "form in json", "NaN", "not utf-8", "nested too deeply", "huge number"],
)
def test_it_gives_400_for_malformed_json(raw: bytes, owner: Any) -> None:
    response = token_client(owner).post(URL, raw, content_type="application/json")

    assert response.status_code == 400
    assert "__all__" in response.json()["errors"]
    assert not Peer.objects.exists()


@pytest.mark.parametrize(
    "content_type", ["application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "text/plain"]
)
def test_it_gives_415_for_a_body_that_is_not_json(content_type: str, owner: Any) -> None:
    response = token_client(owner).post(URL, b"fqdn=client.example.com", content_type=content_type)

    assert response.status_code == 415
    assert "__all__" in response.json()["errors"]
    assert not Peer.objects.exists()


def test_it_gives_413_for_a_body_over_64_kib(owner: Any) -> None:
    body = json.dumps({"fqdn": CLIENT_FQDN, "csr": "A" * (100 * 1024)})

    response = token_client(owner).post(URL, body, content_type="application/json")

    assert response.status_code == 413
    assert response["Content-Type"] == "application/json"
    assert "__all__" in response.json()["errors"]
    assert not Peer.objects.exists()


def test_it_draws_the_size_limit_at_64_kib(owner: Any) -> None:
    """A body of exactly 64 KiB is parsed (and refused for its content); one byte more is 413."""
    padding = 64 * 1024 - len(json.dumps({"fqdn": CLIENT_FQDN, "csr": ""}))
    at_limit = json.dumps({"fqdn": CLIENT_FQDN, "csr": "A" * padding})
    assert len(at_limit) == 64 * 1024

    assert token_client(owner).post(URL, at_limit, content_type="application/json").status_code == 400
    over = at_limit[:-2] + 'A"}'
    assert token_client(owner).post(URL, over, content_type="application/json").status_code == 413
