"""swanctl.conf for strongSwan: the gateway's responder connection or a client's initiator.

Syntax and pitfalls: ipsec-formats.md §7 and §8 (20). A value ends at a newline, ``#`` or ``}``,
so the template writes one setting per line and double-quotes every identity (``quoted`` escapes
``\\`` and ``"``; line breaks are refused by the engine). Section names are fixed words, never
input. Choices:

- ``proposals``/``esp_proposals`` always come from the suite (the ``default`` proposal still
  ends with 3des/sha1/modp2048).
- The gateway accepts any client whose certificate chains to the CA (``remote.cacerts``); its
  child offers its networks (``local_ts``) and takes the client's own address (``remote_ts =
  dynamic``), as there is no address pool in the spec.
- A client with networks carries them; a roaming host carries its own address (``local_ts =
  dynamic``). ``vips = 0.0.0.0`` would need a pool on the gateway, which we do not configure.
"""

from __future__ import annotations

import jinja2

from .engine import render
from .spec import PeerSpec, Site


def render_swanctl_conf(env: jinja2.Environment, site: Site, peer: PeerSpec) -> str:
    """/etc/swanctl/swanctl.conf (/usr/local/etc/swanctl on FreeBSD) for ``peer``."""
    gw = site.gateway
    if peer.is_gateway:
        local_ts: tuple[str, ...] = gw.networks
        remote_ts: tuple[str, ...] = ("dynamic",)
    else:
        local_ts = peer.networks or ("dynamic",)
        remote_ts = gw.networks
    return render(
        env,
        "swanctl/swanctl.conf.j2",
        site=site,
        peer=peer,
        suite=site.suite,
        gateway=gw,
        local_addrs=gw.address if peer.is_gateway else peer.address,
        local_ts=local_ts,
        remote_ts=remote_ts,
    )
