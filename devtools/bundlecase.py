"""The case study's scenario as bundle specs, shared by the renderer, archive and golden tests.

CA "EuroBSDcon CA"; gateway www.example.com 192.0.34.72 protecting 10.1.1.0/24 (pf on rl0/dc0,
the proxy, name server, Citrix and admin hosts of the case study's pf.conf); client gateway
client.example.com with 10.10.10.0/24 behind it (ipf on fxp0/fxp1); and a roaming laptop,
laptop.example.com, whose key the portal made (encrypted, in tests/fixtures/casestudy).
"""

from __future__ import annotations

import base64
import dataclasses
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from bundles.renderers.spec import SUITES, Gateway, PeerSpec, Service, Site

FIXTURES = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "casestudy"
LAPTOP_PASSPHRASE = "correct horse battery staple"


def pem(name: str) -> str:
    return (FIXTURES / name).read_text()


def ca_der_b64() -> str:
    cert = x509.load_pem_x509_certificate(pem("ca.crt").encode())
    return base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()


def gateway() -> Gateway:
    return Gateway(fqdn="www.example.com", address="192.0.34.72", networks=("10.1.1.0/24",), ext_if="rl0", int_if="dc0")


def site(**changes: object) -> Site:
    base = Site(
        ca_name="EuroBSDcon CA",
        ca_cert_pem=pem("ca.crt"),
        ca_cert_der_b64=ca_der_b64(),
        gateway=gateway(),
        suite=SUITES["aes256-sha256-modp2048"],
        services=(
            Service(name="proxy", address="10.1.1.10", protocol="tcp", ports=(3128,)),
            Service(name="nameserver", address="10.1.1.11", protocol="tcp-udp", ports=(53,)),
            Service(name="citrix", address="10.1.1.12", protocol="tcp", ports=(1494,)),
            Service(name="citrix_udp", address="10.1.1.12", protocol="udp", ports=(1604,)),
        ),
        admin_hosts=("10.1.1.14", "10.1.1.100"),
        remote_id_check=True,
        issued_clients=("client.example.com", "laptop.example.com"),
        client_networks=(("client.example.com", ("10.10.10.0/24",)),),
        portal_url="https://ca.example.com",
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def gateway_peer(**changes: object) -> PeerSpec:
    base = PeerSpec(
        fqdn="www.example.com",
        kind="server",
        cert_pem=pem("www.example.com.crt"),
        networks=("10.1.1.0/24",),
        address="192.0.34.72",
        ext_if="rl0",
        int_if="dc0",
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def client_peer(**changes: object) -> PeerSpec:
    """The case study's client gateway: its own address left as @@MY_IP_ADDRESS@@ for install time."""
    base = PeerSpec(
        fqdn="client.example.com",
        kind="client",
        cert_pem=pem("client.example.com.crt"),
        networks=("10.10.10.0/24",),
        address=None,
        ext_if="fxp0",
        int_if="fxp1",
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def laptop_peer(**changes: object) -> PeerSpec:
    """A roaming host with no networks behind it and a portal-made (encrypted) key."""
    base = PeerSpec(
        fqdn="laptop.example.com",
        kind="client",
        cert_pem=pem("laptop.example.com.crt"),
        networks=(),
        address=None,
        ext_if="em0",
        int_if=None,
        portal_key_pem=pem("laptop.example.com.key.enc"),
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]
