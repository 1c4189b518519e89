"""Packet filter rules: pf.conf for the gateway (OpenBSD) and ipf.rules for a client (FreeBSD ipfilter).

The case study's rules ("VPNs using *BSD", "Firewalling"), corrected and brought up to date
(docs/formats.md §6): modern pf syntax with NAT-T, if-bound state on enc0 and numeric addresses
only; ipf with explicit ``port =`` operators and ``keep state`` where state is wanted.

Every value in the context was allow-listed by ``spec``; the templates still pass each one through
the engine's ``quoted``/``plain`` filters, and tests/unit/bundles/test_firewall_injection.py reads
the output back (``readers.pf``) to prove the rule count and macro set cannot be changed by input.
"""

from __future__ import annotations

from dataclasses import dataclass

import jinja2

from .engine import RenderError, render
from .spec import PeerSpec, Site

# install.sh replaces this with the host's address when the bundle did not know it (PeerSpec.address).
MY_IP_PLACEHOLDER = "@@MY_IP_ADDRESS@@"


@dataclass(frozen=True)
class PfService:
    """One ``site.services`` entry as pf.conf writes it: a macro name and the rule fragments."""

    name: str
    address: str
    proto: str  # "tcp", "udp" or "{ tcp, udp }"
    port: str  # "3128" or "{ 53, 853 }"
    summary: str  # for the comment above the rules


def _pf_list(items: tuple[str, ...]) -> str:
    """pf's list syntax; a single item stays bare (``port 22``, not ``port { 22 }``)."""
    return items[0] if len(items) == 1 else "{ " + ", ".join(items) + " }"


def pf_services(site: Site) -> list[PfService]:
    out = []
    for service in site.services:
        ports = tuple(str(p) for p in service.ports)
        out.append(
            PfService(
                name=service.name,
                address=service.address,
                proto=_pf_list(service.protocols),
                port=_pf_list(ports),
                summary=f"{service.protocol} {', '.join(ports)}",
            )
        )
    return out


def render_pf_conf(env: jinja2.Environment, site: Site, peer: PeerSpec) -> str:
    """/etc/pf.conf for the gateway: IKE/ESP on the outside, the site's services for VPN clients."""
    if not peer.is_gateway:
        raise RenderError("pf.conf is rendered for the gateway only; clients get ipf.rules")
    gw = site.gateway
    return render(
        env,
        "pf/pf.conf.j2",
        peer=peer,
        site=site,
        ext_if=gw.ext_if,
        int_if=gw.int_if,
        gw_addr=gw.address,
        lan=gw.networks,
        services=pf_services(site),
        admin_hosts=site.admin_hosts,
    )


def render_ipf_rules(env: jinja2.Environment, site: Site, peer: PeerSpec) -> str:
    """/etc/ipf.rules for a client: a roaming host (no ``int_if``) or a client gateway (with one).

    A roaming host's own address is both its outside address and the inner address of its tunnel
    traffic (the case study's laptop); a client gateway's tunnel carries its networks instead.
    """
    if peer.is_gateway:
        raise RenderError("ipf.rules is rendered for clients only; the gateway gets pf.conf")
    my_ip = peer.address or MY_IP_PLACEHOLDER
    return render(
        env,
        "ipf/ipf.rules.j2",
        peer=peer,
        site=site,
        ext_if=peer.ext_if,
        # Inside rules only where there is an inside: an interface and the networks behind it.
        int_if=peer.int_if if peer.networks else None,
        my_ip=my_ip,
        placeholder=peer.address is None,
        gw_addr=site.gateway.address,
        gw_nets=site.gateway.networks,
        # What the tunnel carries on this side: the client's networks, else its own address.
        local=peer.networks or (my_ip,),
        # Admins may ssh through the tunnel into a client's networks, never into a roaming host.
        admin_hosts=site.admin_hosts if peer.networks else (),
    )
