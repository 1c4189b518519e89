"""enrollment.services.peer_register: everything is validated before anything is written."""

from __future__ import annotations

import re
from typing import Any

import pytest

from authority.models import AuditEvent, CertificateRequest
from enrollment.models import Peer
from enrollment.services import MAX_NETWORKS, EnrollmentError, peer_register
from tests.conftest import fixture_bytes

pytestmark = pytest.mark.django_db

FQDN = "client.example.com"
CSR = fixture_bytes("client-rsa2048.csr").decode()


def _register(owner: Any, **overrides: Any) -> Peer:
    options: dict[str, Any] = {
        "owner": owner,
        "fqdn": FQDN,
        "kind": "client",
        "networks": [],
        "address": None,
        "csr_pem": CSR,
        "actor": owner,
    }
    options.update(overrides)
    return peer_register(**options)


def _refused(owner: Any, field: str, match: str, status: int = 400, **overrides: Any) -> EnrollmentError:
    events = AuditEvent.objects.count()
    with pytest.raises(EnrollmentError, match=re.escape(match)) as refused:
        _register(owner, **overrides)
    assert refused.value.field == field
    assert refused.value.status == status
    assert AuditEvent.objects.count() == events
    return refused.value


def test_it_registers_a_pending_peer(owner: Any) -> None:
    peer = _register(owner, networks=["10.20.0.0/16", "10.10.0.0/24", " 10.10.0.0/24 ", "172.16.0.0/255.255.0.0"])

    assert peer.owner == owner
    assert peer.fqdn == FQDN
    assert peer.kind == Peer.Kind.CLIENT
    assert peer.decision == Peer.Decision.PENDING
    assert peer.status == "pending"
    assert peer.csr_pem == CSR
    # Normalised: duplicates removed, prefix lengths, in address order (IPv6 is refused: the configs are IPv4).
    assert peer.networks == ["10.10.0.0/24", "10.20.0.0/16", "172.16.0.0/16"]
    assert peer.certificate_request is None
    assert not CertificateRequest.objects.exists()


def test_it_audits_the_registration(owner: Any) -> None:
    peer = _register(owner, networks=["10.10.0.0/24"])

    event = AuditEvent.objects.get()
    assert event.action == "peer.registered"
    assert event.actor == "user:alice"
    assert event.target == f"peer:{peer.pk}"
    assert event.data == {
        "fqdn": FQDN,
        "kind": "client",
        "networks": ["10.10.0.0/24"],
        "address": None,
        "owner": "alice",
        "key_source": "csr",
    }


def test_it_does_not_need_a_ca_to_register(owner: Any) -> None:
    assert _register(owner).status == "pending"


def test_it_registers_a_gateway_with_its_address(admin: Any) -> None:
    peer = _register(admin, kind="server", address=" 192.0.2.10 ", networks=["10.0.0.0/8"])

    assert peer.kind == Peer.Kind.SERVER
    assert peer.address == "192.0.2.10"


def test_it_refuses_an_ipv6_address_the_configs_cannot_carry(admin: Any) -> None:
    # It was accepted and normalised (2001:db8::1), and the bundle then never came (F2).
    _refused(admin, "address", "IPv6 is not supported yet", kind="server", address="2001:DB8:0:0::1")

    assert not Peer.objects.exists()


@pytest.mark.parametrize(
    ("fqdn", "match"),
    [
        ("client.example.com\n", "not allowed"),
        ('client".example.com', "not allowed"),
        ("client example.com", "not allowed"),
        ("Client.example.com", "lower case"),
        ("clïent.example.com", "non-ASCII"),
        ("a" * 64 + ".example.com", "maximum is 63"),
        ("localhost", "two labels"),
        ("", "empty"),
    ],
)
def test_it_refuses_a_bad_fqdn_on_the_fqdn_field(owner: Any, fqdn: str, match: str) -> None:
    _refused(owner, "fqdn", match, fqdn=fqdn)

    assert not Peer.objects.exists()


def test_it_refuses_an_unknown_kind(owner: Any) -> None:
    _refused(owner, "kind", "client or server", kind="router")

    assert not Peer.objects.exists()


@pytest.mark.parametrize(
    ("networks", "match"),
    [
        (["10.10.0.1/24"], "host bits must be zero"),
        (["10.10.0.0/33"], "not a network in CIDR form"),
        (["any"], "not a network in CIDR form"),
        (["10.0.0.0/8; pass in all"], "not a network in CIDR form"),
        (["10.0.0.0/8\n"], None),  # surrounding whitespace is trimmed: accepted
        ([f"10.{n // 256}.{n % 256}.0/24" for n in range(MAX_NETWORKS + 1)], f"at most {MAX_NETWORKS} networks"),
    ],
)
def test_it_refuses_bad_networks_on_the_networks_field(owner: Any, networks: list[str], match: str | None) -> None:
    if match is None:
        assert _register(owner, networks=networks).networks == ["10.0.0.0/8"]
        return
    _refused(owner, "networks", match, networks=networks)

    assert not Peer.objects.exists()


@pytest.mark.parametrize("address", ["192.0.2.300", "gateway.example.com", "192.0.2.1\nrm -rf /", "10.0.0.0/8"])
def test_it_refuses_a_bad_address_on_the_address_field(admin: Any, address: str) -> None:
    _refused(admin, "address", "is not an IP address", kind="server", address=address)

    assert not Peer.objects.exists()


@pytest.mark.parametrize("address", [None, ""])
def test_it_refuses_a_gateway_without_an_address(admin: Any, address: str | None) -> None:
    _refused(admin, "address", "needs its public address", kind="server", address=address)

    assert not Peer.objects.exists()


@pytest.mark.parametrize(
    ("csr", "match"),
    [
        ("weak-rsa1024.csr", "1024 bits"),
        ("weak-fermat.csr", "can be factored"),
        ("asks-ca-true.csr", "CA:TRUE"),
        ("other-cn.csr", "'other.example.com'"),
        ("bad-signature.csr", "does not verify"),
        ("client-rsa2048.key", "this is a private key"),
    ],
)
def test_it_refuses_a_bad_csr_on_the_csr_field(owner: Any, csr: str, match: str) -> None:
    _refused(owner, "csr", match, csr_pem=fixture_bytes(csr).decode())

    assert not Peer.objects.exists()


def test_it_refuses_a_duplicate_fqdn_with_409(owner: Any, other_user: Any) -> None:
    first = _register(owner)

    _refused(other_user, "fqdn", f"{FQDN} is already registered", status=409)

    assert list(Peer.objects.all()) == [first]


def test_it_accepts_the_fqdn_of_a_rejected_peer_again(owner: Any, other_user: Any) -> None:
    rejected = _register(owner)
    Peer.objects.filter(pk=rejected.pk).update(decision=Peer.Decision.REJECTED)

    again = _register(other_user)

    assert again.pk != rejected.pk
    assert again.status == "pending"


def test_the_live_fqdn_check_uses_an_index_not_a_scan_of_every_peer(owner: Any) -> None:
    """Registration asks "does a live peer hold this FQDN?" on every request: at 1,000 peers a
    sequential scan already cost 0.6 ms, growing with every peer ever registered."""
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip("the query plan that matters is PostgreSQL's (make test runs this file there too)")
    Peer.objects.bulk_create(
        Peer(owner=owner, fqdn=f"host{i}.example.com", kind="client", networks=[], csr_pem="") for i in range(5000)
    )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE enrollment_peer")
    live = Peer.objects.filter(fqdn="host4321.example.com", retired_at__isnull=True).exclude(
        decision=Peer.Decision.REJECTED
    )

    plan = live.explain()

    assert "peer_fqdn" in plan, plan
