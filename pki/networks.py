"""What a peer's networks and addresses may be: the one definition every entry point and every renderer uses.

Registration (the page, the API, EST, renewal), the site-profile form and the renderers'
``bundles.renderers.spec`` all call these functions, so nothing an entry point accepts can be
refused when a bundle is rendered (security.md T34), and two peers cannot silently claim the same
addresses (T35, ``overlaps``).

The generated files are IPv4 only (isakmpd's IPV4_ADDR_SUBNET IDs, ipf.rules), so:

- a **protected network** (behind a client gateway, or the VPN gateway's LAN) is IPv4 in CIDR form
  with zero host bits, and must not reach into the blocks that are never a LAN: 0.0.0.0/8 ("this
  network", so no default route and no 0.0.0.0/1 half of one), 127.0.0.0/8 (loopback),
  169.254.0.0/16 (link-local), 224.0.0.0/4 (multicast) and 240.0.0.0/4 (reserved, with the
  broadcast address); a peer has at most ``MAX_NETWORKS``; a gateway needs at least one;
- a **peer address** (the public address a peer is reached at) is one IPv4 address that is none of
  unspecified, loopback, link-local, multicast, reserved or broadcast;
- a **host address** inside the site (a service, an admin host) follows the same rules except
  link-local.

Pure: standard library only; refusals raise ``NetworkRejected`` with a message a person can act on
and ``field`` naming the input ("networks" or "address" unless the caller says otherwise).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from pki.errors import PkiError

MAX_NETWORKS = 64
MAX_TEXT = 60  # how much of a refused value a message repeats

# Blocks no protected network may touch, with why, in the words of the refusal.
NEVER_PROTECTED: tuple[tuple[ipaddress.IPv4Network, str], ...] = (
    (ipaddress.IPv4Network("0.0.0.0/8"), "0.0.0.0/8 is not a network (a default route is not a protected network)"),
    (ipaddress.IPv4Network("127.0.0.0/8"), "127.0.0.0/8 is loopback"),
    (ipaddress.IPv4Network("169.254.0.0/16"), "169.254.0.0/16 is link-local"),
    (ipaddress.IPv4Network("224.0.0.0/4"), "224.0.0.0/4 is multicast"),
    (ipaddress.IPv4Network("240.0.0.0/4"), "240.0.0.0/4 is reserved"),
)

NETWORK_EXAMPLE = "10.10.10.0/24"
IPV6_NOT_YET = "IPv6 is not supported yet: the generated configs (isakmpd, ipf) are IPv4 only"


class NetworkRejected(PkiError):
    """A network or address cannot go into a peer's configs. ``field`` names the input at fault."""

    def __init__(self, message: str, *, field: str) -> None:
        super().__init__(message)
        self.field = field


def _shown(value: object) -> str:
    return repr(str(value)[:MAX_TEXT])


def _text(value: object, *, what: str, field: str) -> str:
    """The value as plain text: a str of ASCII without surrounding space, no IPv6 zone."""
    if not isinstance(value, str) or not value.isascii() or value != value.strip() or not value:
        raise NetworkRejected(f"{_shown(value)} is not {what}", field=field)
    if "%" in value:  # an IPv6 zone (fe80::1%eth0) is local to one host and must not reach the configs
        raise NetworkRejected(f"{_shown(value)} is not {what}: a zone (%...) is local to one host", field=field)
    return value


# --- networks -----------------------------------------------------------------------------------


def parse_network(value: object, *, field: str = "networks") -> ipaddress.IPv4Network:
    """One protected network, as an ``IPv4Network``; refuses anything the configs cannot carry."""
    text = _text(value, what=f"a network in CIDR form like {NETWORK_EXAMPLE}", field=field)
    try:
        network = ipaddress.ip_network(text, strict=True)
    except ValueError:
        try:
            loose = ipaddress.ip_network(text, strict=False)
        except ValueError:
            raise NetworkRejected(
                f"{_shown(text)} is not a network in CIDR form like {NETWORK_EXAMPLE}", field=field
            ) from None
        raise NetworkRejected(
            f"{_shown(text)} has host bits set: write {loose} (host bits must be zero)", field=field
        ) from None
    if not isinstance(network, ipaddress.IPv4Network):
        raise NetworkRejected(f"{text}: {IPV6_NOT_YET}", field=field)
    if network.prefixlen == 0:
        raise NetworkRejected(f"{network} is everything, not a protected network", field=field)
    for block, why in NEVER_PROTECTED:
        if network.overlaps(block):
            raise NetworkRejected(f"{network} cannot be a protected network: {why}", field=field)
    return network


def validate_network(value: object, *, field: str = "networks") -> str:
    """The canonical form of an acceptable protected network ("10.1.0.0/255.255.0.0" gives "10.1.0.0/16")."""
    return str(parse_network(value, field=field))


def validate_networks(values: Sequence[object], *, field: str = "networks", required: bool = False) -> tuple[str, ...]:
    """A peer's list of protected networks as the renderers take it; returns them canonical."""
    if len(values) > MAX_NETWORKS:
        raise NetworkRejected(f"at most {MAX_NETWORKS} networks are accepted", field=field)
    if required and not values:
        raise NetworkRejected("a VPN gateway needs at least one protected network", field=field)
    return tuple(validate_network(value, field=field) for value in values)


def clean_networks(values: Sequence[object], *, field: str = "networks", required: bool = False) -> list[str]:
    """What a person typed, made canonical: trimmed, checked, duplicates dropped, in address order.

    Whatever this returns passes ``validate_networks`` (the property the tests check).
    """
    if len(values) > MAX_NETWORKS:
        raise NetworkRejected(f"at most {MAX_NETWORKS} networks are accepted", field=field)
    networks = {parse_network(value.strip() if isinstance(value, str) else value, field=field) for value in values}
    if required and not networks:
        raise NetworkRejected("a VPN gateway needs at least one protected network", field=field)
    return [str(network) for network in sorted(networks)]


# --- addresses ----------------------------------------------------------------------------------


def _ipv4(value: object, *, field: str, public: bool) -> str:
    text = _text(value, what="an IPv4 address", field=field)
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        raise NetworkRejected(
            f"{_shown(text)} is not an IP address (not an IPv4 address like 192.0.2.10)", field=field
        ) from None
    if not isinstance(address, ipaddress.IPv4Address):
        raise NetworkRejected(f"{text}: {IPV6_NOT_YET}", field=field)
    if address.is_unspecified:
        raise NetworkRejected(f"{address} is unspecified, not the address of a host", field=field)
    if address.is_loopback:
        raise NetworkRejected(f"{address} is loopback: it never leaves the host", field=field)
    if address.is_multicast:
        raise NetworkRejected(f"{address} is a multicast address", field=field)
    if address.is_reserved:  # 240.0.0.0/4, 255.255.255.255 included
        raise NetworkRejected(f"{address} is reserved (or broadcast), not the address of a host", field=field)
    if public and address.is_link_local:
        raise NetworkRejected(f"{address} is link-local; give the address the peer is reached at", field=field)
    return str(address)


def validate_peer_address(value: object, *, field: str = "address") -> str:
    """The public address a peer (the VPN gateway, a client) is reached at, canonical."""
    return _ipv4(value, field=field, public=True)


def validate_host_address(value: object, *, field: str) -> str:
    """A host inside the site (a service behind the gateway, an admin host), canonical."""
    return _ipv4(value, field=field, public=False)


def clean_peer_address(value: object, *, field: str = "address") -> str | None:
    """What a person typed as a peer's address: trimmed, checked; "" or None is None."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    return validate_peer_address(value.strip() if isinstance(value, str) else value, field=field)


# --- overlaps -----------------------------------------------------------------------------------

Owner = TypeVar("Owner")


@dataclass(frozen=True)
class Overlap(Generic[Owner]):
    """``network`` (the candidate's) shares addresses with ``other`` (a network ``owner`` holds)."""

    network: str
    other: str
    owner: Owner


def overlaps(networks: Iterable[str], taken: Iterable[tuple[Owner, Iterable[str]]]) -> list[Overlap[Owner]]:
    """Every pair of a candidate network and a network already taken that share an address.

    Equal networks, subnets and supernets all overlap: two policies for one address are ambiguous
    to iked and strongSwan (and a supernet captures the other peer's traffic). Values that are not
    networks are skipped here; they are refused by ``validate_network`` elsewhere. In the order of
    ``networks``, then of ``taken``.
    """
    mine = [(text, network) for text in networks if (network := _maybe_network(text)) is not None]
    found: list[Overlap[Owner]] = []
    for owner, theirs in taken:
        for other in theirs:
            network = _maybe_network(other)
            if network is None:
                continue
            found.extend(Overlap(text, other, owner) for text, candidate in mine if candidate.overlaps(network))
    order = {text: index for index, (text, _) in enumerate(mine)}
    found.sort(key=lambda overlap: order[overlap.network])  # stable: ``taken`` order within one network
    return found


def _maybe_network(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
    try:
        return ipaddress.ip_network(text, strict=False)
    except (TypeError, ValueError):
        return None
