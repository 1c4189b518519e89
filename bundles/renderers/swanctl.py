"""swanctl.conf for strongSwan: the gateway's responder connections or a client's initiator.

Syntax and pitfalls: docs/formats.md §7 and §8 (20). A value ends at a newline, ``#`` or ``}``,
so the template writes one setting per line and double-quotes every identity (``quoted`` escapes
``\\`` and ``"``; line breaks are refused by the engine). Section names are fixed words with
counters, never input. Choices:

- ``proposals``/``esp_proposals`` always come from the suite (the ``default`` proposal still
  ends with 3des/sha1/modp2048).
- The gateway has one connection per client gateway (``Site.client_networks``): ``remote.id``
  is the client's FQDN and its child offers the gateway's networks (``local_ts``) to exactly the
  client's networks (``remote_ts``). charon picks the connection whose remote identity matches
  best (an exact FQDN beats ``%any``) and then narrows the traffic selectors to the child's, so
  a client gateway gets its own networks and nothing else.
- When there are roaming hosts (issued clients without networks), one more connection takes
  any client whose certificate chains to the CA (``remote.id = %any``, ``remote.cacerts``) and
  its own address (``remote_ts = dynamic``: a roaming host's inner address is its public one; no
  address pool in the spec). No issued client at all: an empty ``connections`` section.
- A client with networks carries them; a roaming host carries its own address (``local_ts =
  dynamic``). ``vips = 0.0.0.0`` would need a pool on the gateway, which we do not configure.
"""

from __future__ import annotations

from dataclasses import dataclass

import jinja2

from .engine import render
from .iked import roaming_hosts
from .spec import PeerSpec, Site


@dataclass(frozen=True)
class SwanctlConnection:
    name: str  # the connection's and its child's section name: a fixed word and a counter
    remote_id: str
    local_ts: tuple[str, ...]
    remote_ts: tuple[str, ...]
    comment: str = ""  # one line, rendered as a comment above the connection


def swanctl_connections(site: Site, peer: PeerSpec) -> list[SwanctlConnection]:
    """The gateway's connections (client gateways first, then roaming hosts), or a client's one."""
    gw = site.gateway
    if not peer.is_gateway:
        local_ts = peer.networks or ("dynamic",)
        return [SwanctlConnection("gateway", gw.fqdn, local_ts, gw.networks)]
    conns = [
        SwanctlConnection(f"client-{n}", fqdn, gw.networks, networks, f"client gateway {fqdn}: its networks only")
        for n, (fqdn, networks) in enumerate(site.client_networks, start=1)
    ]
    if roaming_hosts(site):
        comment = "roaming hosts: any certificate from the CA above; each carries its own address"
        conns.append(SwanctlConnection("roaming", "%any", gw.networks, ("dynamic",), comment))
    return conns


def render_swanctl_conf(env: jinja2.Environment, site: Site, peer: PeerSpec) -> str:
    """/etc/swanctl/swanctl.conf (/usr/local/etc/swanctl on FreeBSD) for ``peer``."""
    return render(
        env,
        "swanctl/swanctl.conf.j2",
        site=site,
        peer=peer,
        suite=site.suite,
        gateway=site.gateway,
        local_addrs=site.gateway.address if peer.is_gateway else peer.address,
        connections=swanctl_connections(site, peer),
    )
