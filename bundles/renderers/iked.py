"""iked.conf for OpenBSD iked (IKEv2): the gateway's passive policies or a client's active one.

Grammar and pitfalls: ipsec-formats.md §5 and §8 (17-19). The keyword order of a policy is fixed
(a keyword out of place is a syntax error), so the template spells the whole order once:
``ikev2 NAME passive|active esp from .. to .. [, from .. to ..] [local ..] peer .. ikesa ..
childsa .. srcid .. [dstid ..] ikelifetime .. lifetime .. rfc7427``.

Choices, each checked with ``iked -n`` (tests/unit/bundles/test_iked_conf.py):

- Transforms are always explicit (the built-in defaults still include 3des, sha1 and modp1024).
- Authentication is ``rfc7427``: RFC 7427 signatures with SHA2-256, for RSA and ECDSA keys alike;
  the older ``rsa`` keyword signs with SHA-1, and the portal issues ECDSA certificates too.
- Identities are always double-quoted (an unquoted ``#`` would end the line).
- The gateway does not know its clients' inner addresses, so each of its networks gets one
  passive policy ``from NET to any``: the client proposes what it carries.
- A client gateway's policy carries its networks. A roaming host carries its own address: the
  one in the spec when given, else ``any`` (from whatever address routing picks, so it keeps
  working when DHCP changes it). ``@@MY_IP_ADDRESS@@`` is not an option here: iked resolves
  ``from`` at parse time and refuses the placeholder (and a bare interface name would be
  resolved once, at start-up). ``from dynamic`` would need an address pool on the gateway.
"""

from __future__ import annotations

from dataclasses import dataclass

import jinja2

from .engine import render
from .spec import PeerSpec, Site


@dataclass(frozen=True)
class IkedPolicy:
    name: str
    flows: tuple[tuple[str, str], ...]  # (from, to) pairs


def iked_policies(site: Site, peer: PeerSpec) -> list[IkedPolicy]:
    """One policy per gateway network, in the gateway's order, on both sides of the tunnel."""
    nets = site.gateway.networks
    if peer.is_gateway:
        return [IkedPolicy(f"roaming-{n}", ((net, "any"),)) for n, net in enumerate(nets, start=1)]
    sources = peer.networks or ((peer.address,) if peer.address else ("any",))
    return [IkedPolicy(f"gateway-{n}", tuple((src, net) for src in sources)) for n, net in enumerate(nets, start=1)]


def render_iked_conf(env: jinja2.Environment, site: Site, peer: PeerSpec) -> str:
    """/etc/iked.conf (mode 0600) for ``peer``: the gateway form when it is the gateway, else a client's."""
    return render(
        env,
        "iked/iked.conf.j2",
        site=site,
        peer=peer,
        suite=site.suite,
        gateway=site.gateway,
        policies=iked_policies(site, peer),
        # A client binds to its own address only when the spec knows it.
        local=site.gateway.address if peer.is_gateway else peer.address,
    )
