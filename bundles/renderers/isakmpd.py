"""isakmpd.conf and isakmpd.policy (KeyNote) for one peer: validated spec in, text out.

The gateway gets the case study's generic form (docs/formats.md §1.8): no client address anywhere,
phase 1 from any address (``[Phase 1] Default``), passive phase 2 connections whose remote side is
negotiated, so adding a client never changes the gateway's isakmpd.conf. A client (a client gateway
with networks behind it, or a roaming host without) names the gateway explicitly and starts the
connections itself; its own address stays ``@@MY_IP_ADDRESS@@`` for install.sh unless it is known.

Section names are fixed strings chosen here (never built from user values), so no input can reach
a ``[header]`` or a reference. Every interpolated value goes through the engine's ``conf`` or
``quoted`` filter in the templates; readers in ``bundles/renderers/readers`` prove the structure.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

import jinja2

from bundles.renderers import engine
from bundles.renderers.spec import PeerSpec, Site, SpecRejected

MY_ADDRESS = "@@MY_IP_ADDRESS@@"  # install.sh substitutes the peer's own address
LICENSEE_WIDTH = 64  # base64 characters per continuation line of the x509-base64 licensee


@dataclass(frozen=True)
class IdSection:
    """An IPV4_ADDR_SUBNET (or, with ``netmask`` None, IPV4_ADDR) ID section."""

    section: str
    address: str
    netmask: str | None = None


@dataclass(frozen=True)
class Connection:
    section: str
    local_id: str
    remote_id: str


def _subnets(prefix: str, networks: tuple[str, ...]) -> list[IdSection]:
    out = []
    for index, text in enumerate(networks, start=1):
        network = ipaddress.IPv4Network(text, strict=True)
        out.append(IdSection(f"{prefix}-{index}", str(network.network_address), str(network.netmask)))
    return out


def _address(value: str) -> str:
    # The gateway address is also a *tag* in the client's [Phase 1]; a canonical dotted quad cannot
    # contain the space, TAB or '=' that would end a tag early.
    return str(ipaddress.IPv4Address(value))


def render_isakmpd_conf(env: jinja2.Environment, site: Site, peer: PeerSpec) -> str:
    """The peer's /etc/isakmpd/isakmpd.conf: the gateway form when ``peer.is_gateway``, else the client form."""
    gateway = site.gateway
    suite = site.suite
    if peer.is_gateway:
        if peer.fqdn != gateway.fqdn:
            raise SpecRejected("the gateway peer's FQDN must be the site's gateway FQDN", field="fqdn")
        local = _subnets("net-local", gateway.networks)
        connections = [Connection(f"conn-roaming-{i}", net.section, "net-roaming") for i, net in enumerate(local, 1)]
        return engine.render(
            env,
            "isakmpd/gateway.conf.j2",
            legacy=suite.legacy,
            gateway_fqdn=gateway.fqdn,
            gateway_address=_address(gateway.address),
            local_networks=local,
            connections=connections,
            isakmp_transform=suite.isakmp_transform,
            quick_mode_suite=suite.quick_mode_suite,
        )
    my_address = _address(peer.address) if peer.address is not None else MY_ADDRESS
    remote = _subnets("net-remote", gateway.networks)
    if peer.networks:
        local = _subnets("net-local", peer.networks)
        connections = [
            Connection(f"conn-local-{li}-remote-{ri}", lnet.section, rnet.section)
            for li, lnet in enumerate(local, 1)
            for ri, rnet in enumerate(remote, 1)
        ]
    else:
        # A roaming host protects only itself: its phase 2 ID is its own (outside) address.
        local = [IdSection("host-local", my_address)]
        connections = [
            Connection(f"conn-host-remote-{ri}", "host-local", rnet.section) for ri, rnet in enumerate(remote, 1)
        ]
    return engine.render(
        env,
        "isakmpd/client.conf.j2",
        legacy=suite.legacy,
        peer_fqdn=peer.fqdn,
        is_host=not peer.networks,
        address_known=peer.address is not None,
        my_address=my_address,
        gateway_fqdn=gateway.fqdn,
        gateway_address=_address(gateway.address),
        local_ids=local,
        remote_networks=remote,
        connections=connections,
        isakmp_transform=suite.isakmp_transform,
        quick_mode_suite=suite.quick_mode_suite,
    )


def render_isakmpd_policy(env: jinja2.Environment, site: Site, peer: PeerSpec) -> str:
    """The peer's /etc/isakmpd/isakmpd.policy: one KeyNote assertion trusting the site's CA.

    With ``site.remote_id_check`` the gateway also pins the FQDNs of the issued client certificates
    (none issued: nobody is accepted) and a client pins the gateway's FQDN.
    """
    if peer.is_gateway:
        remote_ids = list(site.issued_clients)
    else:
        remote_ids = [site.gateway.fqdn]
    return engine.render(
        env,
        "isakmpd/isakmpd.policy.j2",
        legacy=site.suite.legacy,
        peer_fqdn=peer.fqdn,
        is_gateway=peer.is_gateway,
        ca_name=site.ca_name,
        ca_der_b64=site.ca_cert_der_b64,
        licensee_width=LICENSEE_WIDTH,
        keynote_enc=site.suite.keynote_enc,
        keynote_auth=site.suite.keynote_auth,
        pfs=site.suite.pfs,
        remote_id_check=site.remote_id_check,
        remote_ids=remote_ids,
    )
