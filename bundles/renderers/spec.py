"""What a bundle is rendered from: plain, validated values (no Django, no clock, no randomness).

Every value that can reach a generated file passes an allow-list here, once, when the spec is
built (``validate_*`` and the ``__post_init__`` checks). The renderers may then trust their
input; the templates still quote where a format has quoting, and the readers in
``bundles/renderers/readers`` prove in tests that no value can change a file's structure.

Allow-lists (docs/formats.md §8):
- FQDN: ``pki.names.validate_fqdn`` (lower-case LDH, ≤ 127 bytes).
- addresses and networks: ``pki.networks``, the one definition registration, the API, EST and
  the site profile use too (so what they accept always renders, security.md T34): IPv4 only for
  now (isakmpd IPV4_ADDR_SUBNET, ipf), networks canonical and strict (host bits zero), none in
  0/8, loopback, link-local, multicast or reserved space; no loopback, link-local, multicast,
  reserved or unspecified peer address.
- interface names: ``^[a-z][a-z0-9]{0,13}[0-9]$`` (OpenBSD/FreeBSD driver name + unit, e.g.
  em0, vio0, vlan100), or a pf interface group ``egress``.
- service names (pf macros): ``^[a-z][a-z0-9_]{0,23}$`` minus pf keywords.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from pki import networks as netrules
from pki.errors import PkiError
from pki.names import validate_fqdn


class SpecRejected(ValueError):
    """A value may not go into a generated file. ``field`` names the input; the message is user-safe."""

    def __init__(self, message: str, *, field: str = "__all__") -> None:
        super().__init__(message)
        self.field = field


# --- crypto suites: bundles/renderers/suites.py -------------------------------------------------

from bundles.renderers.suites import DEFAULT_SUITE, SUITES, WEAK_TOKENS, Suite  # noqa: E402

__all__ = ["DEFAULT_SUITE", "SUITES", "WEAK_TOKENS", "Suite"]


def suite_for(key: str, *, legacy_allowed: bool) -> Suite:
    try:
        suite = SUITES[key]
    except KeyError:
        raise SpecRejected(f"unknown crypto suite {key[:40]!r}", field="suite") from None
    if suite.legacy and not legacy_allowed:
        raise SpecRejected("this suite is legacy; turn on the legacy switch first", field="suite")
    return suite


# --- value allow-lists ------------------------------------------------------------------------

_IFNAME = re.compile(r"[a-z][a-z0-9]{0,13}[0-9]")
_IFGROUPS = frozenset({"egress"})
_SERVICE_NAME = re.compile(r"[a-z][a-z0-9_]{0,23}")
# Words a service name (it becomes a pf macro name) must not be: pf.conf's grammar keywords, which
# pfctl refuses as macro names, plus the macros and service names our own templates use.
_PF_KEYWORDS = frozenset(
    """
    all altq anchor antispoof any bandwidth binat bitmask block burst cbq code const counters crop
    debug default divert drop fastroute file fingerprints flags floating flush for fragment from
    global group hfsc hostid in include inet inet6 keep label limit linkshare load log loginterface
    match max min modulate nat no on once optimization out overload parent pass persist pflow port
    prio priority priq probability proto qlimit queue quick random rdomain rdr realtime reassemble
    return rtable rule scrub set skip sloppy state table tag tagged tbrsize timeout to tos ttl
    upperlimit user yes
    """.split()
)
_RESERVED = _PF_KEYWORDS | frozenset(
    {
        "tcp", "udp", "esp", "icmp", "self", "egress", "ext_if", "int_if", "gw_addr", "lan", "vpn_nets",
        "ssh", "domain", "isakmp", "enc0", "lo", "admins", "admin_hosts", "ipencap",
    }
)  # fmt: skip
PROTOCOLS = ("tcp", "udp", "tcp-udp")
MAX_NETWORKS = netrules.MAX_NETWORKS
MAX_SERVICES = 32
MAX_PORTS = 16


def validate_fqdn_field(value: str, *, field: str = "fqdn") -> str:
    try:
        return validate_fqdn(value)
    except PkiError as exc:
        raise SpecRejected(str(exc), field=field) from None


def validate_ifname(value: str, *, field: str) -> str:
    if not isinstance(value, str) or not (_IFNAME.fullmatch(value) or value in _IFGROUPS):
        raise SpecRejected(
            "an interface name is a driver name and unit number, like em0, vio0 or vlan100 (or the pf group egress)",
            field=field,
        )
    return value


def validate_ipv4(value: str, *, field: str, public: bool = False) -> str:
    """An IPv4 address: a peer's public address (``public``) or a host inside the site (``pki.networks``)."""
    try:
        if public:
            return netrules.validate_peer_address(value, field=field)
        return netrules.validate_host_address(value, field=field)
    except netrules.NetworkRejected as exc:
        raise SpecRejected(str(exc), field=field) from None


def validate_ipv4_network(value: str, *, field: str) -> str:
    """A protected network in canonical CIDR form (``pki.networks.validate_network``)."""
    try:
        return netrules.validate_network(value, field=field)
    except netrules.NetworkRejected as exc:
        raise SpecRejected(str(exc), field=field) from None


def validate_service_name(value: str, *, field: str = "services") -> str:
    if not isinstance(value, str) or not _SERVICE_NAME.fullmatch(value) or value in _RESERVED:
        raise SpecRejected(
            "a service name is 1-24 lower-case letters, digits or _, starting with a letter, and not a pf keyword",
            field=field,
        )
    return value


# http(s), a host name or address, an optional port and a plain path: the URL goes into sh scripts
# (single-quoted as well) and into curl/wget/ftp/fetch command lines, so nothing else is allowed.
_URL = re.compile(
    r"https?://(?:[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?|\[[0-9A-Fa-f:.]{2,45}\])(?::[0-9]{1,5})?"
    r"(?:/[A-Za-z0-9._~/-]*)?"
)


def validate_url(value: str, *, field: str) -> str:
    if not isinstance(value, str) or len(value) > 300 or not _URL.fullmatch(value):
        raise SpecRejected(
            "a URL here is http:// or https://, a host, an optional port and a plain path, nothing else",
            field=field,
        )
    return value


# --- the spec -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Service:
    """A host behind the gateway that roaming peers may reach, like the case study's proxy or DNS."""

    name: str
    address: str
    protocol: str  # tcp | udp | tcp-udp
    ports: tuple[int, ...]

    def __post_init__(self) -> None:
        validate_service_name(self.name)
        validate_ipv4(self.address, field="services")
        if self.protocol not in PROTOCOLS:
            raise SpecRejected(f"protocol must be one of {', '.join(PROTOCOLS)}", field="services")
        if not self.ports or len(self.ports) > MAX_PORTS:
            raise SpecRejected(f"a service needs 1 to {MAX_PORTS} ports", field="services")
        for port in self.ports:
            if type(port) is not int or not 1 <= port <= 65535:
                raise SpecRejected("ports are numbers from 1 to 65535", field="services")

    @property
    def protocols(self) -> tuple[str, ...]:
        return ("tcp", "udp") if self.protocol == "tcp-udp" else (self.protocol,)


def validate_services(services: tuple[Service, ...]) -> tuple[Service, ...]:
    """The site's list of services as a whole (each ``Service`` checks itself): the site-profile form
    calls this too, so a profile it saves always renders."""
    if len(services) > MAX_SERVICES:
        raise SpecRejected(f"at most {MAX_SERVICES} services", field="services")
    seen: set[str] = set()
    for service in services:
        if service.name in seen:  # each name becomes a pf macro: a second one would redefine the first
            raise SpecRejected(
                f"the service name {service.name!r} is used twice; service names must be unique", field="services"
            )
        seen.add(service.name)
    return services


def validate_admin_hosts(hosts: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(validate_ipv4(host, field="admin_hosts") for host in hosts)


def _networks(values: tuple[str, ...], *, field: str, required: bool = False) -> tuple[str, ...]:
    try:
        return netrules.validate_networks(values, field=field, required=required)
    except netrules.NetworkRejected as exc:
        raise SpecRejected(str(exc), field=field) from None


def validate_client_entry(fqdn: object, networks: object) -> tuple[str, tuple[str, ...]]:
    """One issued client as the gateway's files name it (``Site.issued_clients`` and ``client_networks``),
    checked on its own, so that a client whose stored values no file can carry is left out of the
    gateway's files instead of failing them for every other client. Returns the values unchanged."""
    if not isinstance(fqdn, str):
        raise SpecRejected("the stored FQDN is not text", field="fqdn")
    validate_fqdn_field(fqdn)
    if not isinstance(networks, list | tuple):
        raise SpecRejected("the stored networks are not a list", field="networks")
    _networks(tuple(networks), field="networks")
    return fqdn, tuple(networks)


@dataclass(frozen=True)
class Gateway:
    """The VPN gateway (the ``server`` peer) as every bundle sees it."""

    fqdn: str
    address: str
    networks: tuple[str, ...]
    ext_if: str = "em0"
    int_if: str = "em1"

    def __post_init__(self) -> None:
        validate_fqdn_field(self.fqdn, field="gateway")
        validate_ipv4(self.address, field="address", public=True)
        _networks(self.networks, field="networks", required=True)
        validate_ifname(self.ext_if, field="ext_if")
        validate_ifname(self.int_if, field="int_if")
        if self.ext_if == self.int_if:
            raise SpecRejected("the external and internal interfaces must differ", field="int_if")


@dataclass(frozen=True)
class Site:
    """Everything site-wide: the CA, the gateway, the crypto suite, the firewall services."""

    ca_name: str  # the CA's common name, for comments and README text only
    ca_cert_pem: str
    ca_cert_der_b64: str  # base64 of the CA certificate's DER, no newlines (KeyNote x509-base64:)
    gateway: Gateway
    suite: Suite
    services: tuple[Service, ...] = ()
    admin_hosts: tuple[str, ...] = ()  # may ssh to peers and the gateway's inside
    remote_id_check: bool = False
    issued_clients: tuple[str, ...] = ()  # FQDNs for the gateway's remote_id list, sorted, unique
    # Issued client gateways and the networks behind them, sorted by FQDN: the gateway's iked.conf and
    # swanctl.conf need one policy per client network (IKEv2 traffic selectors are not negotiated wide).
    client_networks: tuple[tuple[str, tuple[str, ...]], ...] = ()
    portal_url: str = ""
    crl_pem: str = ""  # empty until a CRL exists
    # bin/ca-portal-refresh and bin/ca-portal-sync (bundles/renderers/scripts.py): where the CRL is
    # published ("" = portal_url + /crl.der, the CRL distribution point), how often install.sh schedules
    # the refresher (hours) and the gateway's sync (minutes).
    crl_url: str = ""
    refresh_hours: int = 6
    sync_minutes: int = 5

    def __post_init__(self) -> None:
        validate_services(self.services)
        validate_admin_hosts(self.admin_hosts)
        for fqdn in self.issued_clients:
            validate_fqdn_field(fqdn, field="issued_clients")
        if list(self.issued_clients) != sorted(set(self.issued_clients)):
            raise SpecRejected("issued_clients must be sorted and unique", field="issued_clients")
        for fqdn, networks in self.client_networks:
            validate_fqdn_field(fqdn, field="client_networks")
            if not networks:
                raise SpecRejected("a client gateway entry needs its networks", field="client_networks")
            _networks(networks, field="client_networks")
        names = [fqdn for fqdn, _ in self.client_networks]
        if names != sorted(set(names)):
            raise SpecRejected("client_networks must be sorted by FQDN and unique", field="client_networks")
        if not re.fullmatch(r"[A-Za-z0-9+/]+={0,2}", self.ca_cert_der_b64):
            raise SpecRejected("the CA certificate is not base64 DER", field="ca")
        if not re.fullmatch(r"[ -~]{1,64}", self.ca_name):
            raise SpecRejected("the CA name must be printable ASCII", field="ca")
        for name in ("portal_url", "crl_url"):
            if getattr(self, name):
                validate_url(getattr(self, name), field=name)
        if type(self.refresh_hours) is not int or not 1 <= self.refresh_hours <= 24:
            raise SpecRejected("the CRL refresh interval is 1 to 24 hours", field="refresh_hours")
        if type(self.sync_minutes) is not int or not 1 <= self.sync_minutes <= 60:
            raise SpecRejected("the gateway's sync interval is 1 to 60 minutes", field="sync_minutes")

    @property
    def legacy(self) -> bool:
        return self.suite.legacy

    @property
    def crl_distribution_point(self) -> str:
        """Where peers fetch the CRL: ``crl_url``, else the portal's /crl.der ("" without a portal URL)."""
        if self.crl_url:
            return self.crl_url
        return f"{self.portal_url.rstrip('/')}/crl.der" if self.portal_url else ""


@dataclass(frozen=True)
class PeerSpec:
    """The peer whose bundle this is (a client, or the gateway itself when ``kind == "server"``)."""

    fqdn: str
    kind: str  # client | server
    cert_pem: str
    networks: tuple[str, ...] = ()
    address: str | None = None  # a client's own public address; None leaves @@MY_IP_ADDRESS@@
    ext_if: str = "em0"  # a client's outside interface (ipf.rules)
    int_if: str | None = None  # a client gateway's inside interface (ipf.rules); None for a host
    portal_key_pem: str | None = None  # encrypted PKCS#8 PEM, only in the first download
    key_from_portal: bool = False  # the portal holds a key it made for this peer: the next download delivers it

    def __post_init__(self) -> None:
        validate_fqdn_field(self.fqdn)
        if self.kind not in ("client", "server"):
            raise SpecRejected("kind must be client or server", field="kind")
        _networks(self.networks, field="networks", required=self.kind == "server")
        if self.address is not None:
            validate_ipv4(self.address, field="address", public=True)
        validate_ifname(self.ext_if, field="ext_if")
        if self.int_if is not None:
            validate_ifname(self.int_if, field="int_if")
            if self.int_if == self.ext_if:
                raise SpecRejected("the external and internal interfaces must differ", field="int_if")
        if self.portal_key_pem is not None and "BEGIN ENCRYPTED PRIVATE KEY" not in self.portal_key_pem:
            raise SpecRejected("a portal-made key goes into a bundle only encrypted", field="portal_key")

    @property
    def is_gateway(self) -> bool:
        return self.kind == "server"

    @property
    def portal_made_key(self) -> bool:
        return self.key_from_portal or self.portal_key_pem is not None
