"""What a render is made of: the database rows turned into the pure renderers' specs.

The rows are read by ``bundles.selectors`` (``render_context``, ``issued_clients``); these functions
only translate them, so the renderers (``bundles.renderers``) never see a model.
"""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from django.conf import settings

from authority.models import CertificateAuthority, Crl
from bundles.models import SiteProfile
from bundles.renderers import engine
from bundles.renderers.spec import Gateway, PeerSpec, Service, Site, suite_for
from bundles.selectors import IssuedClients
from enrollment.models import Peer


def _ca_der_b64(ca: CertificateAuthority) -> str:
    cert = x509.load_pem_x509_certificate(ca.certificate_pem.encode())
    return base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode("ascii")


def site_spec(
    profile: SiteProfile, ca: CertificateAuthority, gateway: Peer, clients: IssuedClients, crl: Crl | None = None
) -> Site:
    suite = suite_for(profile.suite, legacy_allowed=profile.legacy_allowed)
    return Site(
        ca_name=ca.common_name[:64],
        ca_cert_pem=ca.certificate_pem,
        ca_cert_der_b64=_ca_der_b64(ca),
        gateway=Gateway(
            fqdn=gateway.fqdn,
            address=str(gateway.address),
            networks=tuple(gateway.networks),
            ext_if=profile.ext_if,
            int_if=profile.int_if,
        ),
        suite=suite,
        services=tuple(
            Service(name=s["name"], address=s["address"], protocol=s["protocol"], ports=tuple(s["ports"]))
            for s in profile.services
        ),
        admin_hosts=tuple(profile.admin_hosts),
        remote_id_check=profile.remote_id_check,
        issued_clients=clients.fqdns,
        client_networks=clients.networks,
        portal_url=settings.SITE_URL,
        crl_pem=crl.pem if crl is not None else "",
        crl_url=settings.CA_CRL_URL,  # bin/ca-portal-refresh and bin/ca-portal-sync
        refresh_hours=settings.CRL_REFRESH_HOURS,
        sync_minutes=settings.GATEWAY_SYNC_MINUTES,
    )


def peer_spec(peer: Peer, profile: SiteProfile, *, key_from_portal: bool) -> PeerSpec:
    """The peer's side of a render; ``key_from_portal``: a portal-made key awaits its first download."""
    certificate = peer.certificate_request.certificate  # type: ignore[union-attr]
    is_gateway = peer.kind == Peer.Kind.SERVER
    return PeerSpec(
        fqdn=peer.fqdn,
        kind=peer.kind,
        cert_pem=certificate.pem,
        networks=tuple(peer.networks),
        address=str(peer.address) if peer.address else None,
        ext_if=profile.ext_if if is_gateway else profile.client_ext_if,
        int_if=profile.int_if if is_gateway else (profile.client_int_if if peer.networks else None),
        key_from_portal=key_from_portal,
    )


def template_environment() -> Any:
    """The renderers' template environment: the site's overrides first, then the built-in templates."""
    return engine.environment([settings.CONFIG_TEMPLATE_OVERRIDES])


def peer_inputs(fqdn: object, networks: object, address: object, clients_digest: str = "") -> str:
    """A digest of the peer's own values that a render reads (for the gateway, with its issued clients'
    digest): a failing peer is retried as soon as this changes (``bundles.services.sweeper``)."""
    values = [fqdn, networks, str(address) if address else None, clients_digest]
    return hashlib.sha256(json.dumps(values, default=str).encode()).hexdigest()
