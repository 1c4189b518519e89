"""iked.conf for OpenBSD iked (IKEv2): the gateway's passive policies or a client's active one.

Grammar and pitfalls: docs/formats.md §5 and §8 (17-19). The keyword order of a policy is fixed
(a keyword out of place is a syntax error), so the template spells the whole order once:
``ikev2 NAME [quick] passive|active esp from .. to .. [, from .. to ..] [local ..] peer ..
ikesa .. childsa .. srcid .. [dstid ..] ikelifetime .. lifetime .. rfc7427``.

How iked uses the policies (openiked policy.c, ikev2.c; iked.conf(5) "the last matching policy
decides"), which shapes every choice below:

- A responder picks one policy per IKE SA: the *last* policy that matches the peer's addresses,
  proposals and identity (``dstid``), unless a matching ``quick`` policy comes first. The
  traffic selectors the peer proposes play no part in that choice.
- The child SA then carries the chosen policy's flows, all of them, whatever the peer proposed.

So each peer gets exactly one policy, holding every flow it may use:

- A client gateway (``Site.client_networks``): one passive ``quick`` policy on the gateway,
  pinned with ``dstid`` to the client's FQDN, with a flow from every gateway network to every
  client network. ``quick`` makes it win over the generic roaming policy below it for that
  identity; ``dstid`` means no other certificate can use it.
- Roaming hosts (issued clients that are not client gateways), when there are any: one generic
  passive policy, last, ``from NET to any`` for every gateway network and without ``dstid``. A
  roaming host's inner address is its public address, which the gateway cannot know, so it
  takes what the host proposes; only peers that authenticate with a certificate from the CA get
  that far. No issued client at all: no policy, iked runs and accepts nothing.
- A client has one active policy to the gateway carrying all its flows (its networks, else its
  own address, to every gateway network) in one IKE SA and one child SA, as the gateway's side
  does. A roaming host's own address is the one in the spec when given, else ``any`` (from
  whatever address routing picks, so it keeps working when DHCP changes it).
  ``@@MY_IP_ADDRESS@@`` is not an option here: iked resolves ``from`` at parse time and refuses
  the placeholder (and a bare interface name would be resolved once, at start-up).
  ``from dynamic`` would need an address pool on the gateway.

Also checked with ``iked -n`` (tests/unit/bundles/test_iked_conf.py):

- Transforms are always explicit (the built-in defaults still include 3des, sha1 and modp1024).
- Authentication is ``rfc7427``: RFC 7427 signatures with SHA2-256, for RSA and ECDSA keys alike;
  the older ``rsa`` keyword signs with SHA-1, and the portal issues ECDSA certificates too.
- Identities are always double-quoted (an unquoted ``#`` would end the line). Policy names are
  fixed words with counters, never derived from input.
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
    dstid: str | None = None  # the peer's identity, when the policy is pinned to one peer
    quick: bool = False  # chosen at once when it matches, before later (generic) policies
    comment: str = ""  # what the policy is for, one line, rendered as a comment above it


def roaming_hosts(site: Site) -> tuple[str, ...]:
    """The issued clients without networks: every FQDN of ``issued_clients`` that is no client gateway."""
    gateways = {fqdn for fqdn, _ in site.client_networks}
    return tuple(fqdn for fqdn in site.issued_clients if fqdn not in gateways)


def iked_policies(site: Site, peer: PeerSpec) -> list[IkedPolicy]:
    """The gateway's policies (client gateways first, then roaming hosts), or a client's one policy."""
    nets = site.gateway.networks
    if not peer.is_gateway:
        sources = peer.networks or ((peer.address,) if peer.address else ("any",))
        return [IkedPolicy("gateway", tuple((src, net) for net in nets for src in sources))]
    policies = [
        IkedPolicy(
            f"client-{n}",
            tuple((net, theirs) for net in nets for theirs in networks),
            dstid=fqdn,
            quick=True,
            comment=f"client gateway {fqdn}",
        )
        for n, (fqdn, networks) in enumerate(site.client_networks, start=1)
    ]
    if roaming_hosts(site):
        policies.append(IkedPolicy("roaming", tuple((net, "any") for net in nets), comment="roaming hosts"))
    return policies


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
        roaming=roaming_hosts(site),
        # A client binds to its own address only when the spec knows it.
        local=site.gateway.address if peer.is_gateway else peer.address,
    )
