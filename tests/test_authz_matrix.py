"""The authorization matrix (docs/security.md T23, T29): every URL with an object id × every persona.

The URL patterns are read from the project's URLconf at run time, through every include. Each
pattern that takes a path parameter (an object id) must have a row in ``GET_MATRIX`` below,
and ``test_every_object_url_has_a_row`` fails as soon as a new one appears without it: whoever
adds an endpoint decides, here, who may see it. The expected statuses are exact, so an
unexpected 200 (or any other drift) fails the test that owns the row.

EST (RFC 7030) has no object ids in its URLs and takes no session: ``EST_MATRIX`` at the end covers
every URL under /.well-known/est/ with each persona's HTTP Basic credentials instead.

Personas: the object's owner (alice, a roaming user), another roaming user (mallory), two CA
admins (carol, dave; both past two-factor), an auditor (erin) and an anonymous visitor.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver

from authority.models import AuditEvent, Certificate, CertificateAuthority, CertificateRequest
from authority.services import certificate_issue
from bundles.models import BundleDownload, DownloadLink
from bundles.services import bundle_render
from enrollment.models import Peer
from enrollment.services import peer_approve, peer_register
from tests.bundles.conftest import issue
from tests.conftest import fixture_bytes, login

pytestmark = pytest.mark.django_db

PERSONAS = ("owner", "other_user", "admin", "second_admin", "auditor", "anonymous")
LOGIN = 302  # the pages send anonymous visitors to /login/?next=...

# url name -> persona -> status of a GET on the URL for an ISSUED peer owned by alice.
GET_MATRIX: dict[str, dict[str, int]] = {
    # The peer's own pages: owner, admins and auditors; 404 for anyone else (no existence leak).
    "enrollment:detail": {
        "owner": 200, "other_user": 404, "admin": 200, "second_admin": 200, "auditor": 200, "anonymous": LOGIN,
    },
    "enrollment:status": {
        "owner": 200, "other_user": 404, "admin": 200, "second_admin": 200, "auditor": 200, "anonymous": LOGIN,
    },
    "enrollment:certificate": {
        "owner": 200, "other_user": 404, "admin": 200, "second_admin": 200, "auditor": 200, "anonymous": LOGIN,
    },
    # The review page is for CA admins only.
    "enrollment:approval": {
        "owner": 403, "other_user": 403, "admin": 200, "second_admin": 200, "auditor": 403, "anonymous": LOGIN,
    },
    # Decisions are POST only: every GET is 405, before anything else is looked at.
    "enrollment:approve": dict.fromkeys(PERSONAS, 405),
    "enrollment:reject": dict.fromkeys(PERSONAS, 405),
    # The JSON API: 401 without credentials (WWW-Authenticate: Token), 404 for a stranger's peer.
    "api-peer": {
        "owner": 200, "other_user": 404, "admin": 200, "second_admin": 200, "auditor": 200, "anonymous": 401,
    },
    "api-peer-approve": {
        "owner": 405, "other_user": 405, "admin": 405, "second_admin": 405, "auditor": 405, "anonymous": 401,
    },
    "api-peer-reject": {
        "owner": 405, "other_user": 405, "admin": 405, "second_admin": 405, "auditor": 405, "anonymous": 401,
    },
    # Bundles: everyone who sees the peer reads the files; only the owner takes a client's zip.
    "bundles:bundle": {
        "owner": 200, "other_user": 404, "admin": 200, "second_admin": 200, "auditor": 200, "anonymous": LOGIN,
    },
    "bundles:download": dict.fromkeys(PERSONAS, 405),
    "bundles:link-create": dict.fromkeys(PERSONAS, 405),
    # A one-time link's path parameter is its token, the credential itself (no session needed): an
    # unknown token is 404 for everyone, signed in or not.
    "bundles:link": dict.fromkeys(PERSONAS, 404),
    # Revocation: the confirmation page for the owner and CA admins; auditors watch, never act (403).
    "enrollment:revoke": {
        "owner": 200, "other_user": 404, "admin": 200, "second_admin": 200, "auditor": 403, "anonymous": LOGIN,
    },
    "api-peer-revoke": {
        "owner": 405, "other_user": 405, "admin": 405, "second_admin": 405, "auditor": 405, "anonymous": 401,
    },
    # Renewal: the owner only (admins see the peer but do not renew for its owner: 404 like any
    # stranger); auditors are refused before any lookup (403).
    "enrollment:renew": {
        "owner": 200, "other_user": 404, "admin": 404, "second_admin": 404, "auditor": 403, "anonymous": LOGIN,
    },
    "api-peer-bundle": {
        "owner": 200, "other_user": 404, "admin": 404, "second_admin": 404, "auditor": 404, "anonymous": 401,
    },
    # The auditor pages: auditors and CA admins only; roaming users are refused (403) before any lookup.
    # The path parameter is a certificate serial, so the peer id this matrix puts there names no
    # certificate and the roles that may look get 404; their 200 on a real serial is proven in
    # tests/audit/test_views.py.
    "audit:certificate": {
        "owner": 403, "other_user": 403, "admin": 404, "second_admin": 404, "auditor": 404, "anonymous": LOGIN,
    },
}  # fmt: skip

# POST endpoints that act on alice's ISSUED peer (with a rendered bundle): url name -> (body, persona ->
# status). A 2xx or 302 must change the world (a download, a link, a revocation); every refusal must not.
ISSUED_POST_MATRIX: dict[str, tuple[dict[str, str], dict[str, int]]] = {
    "bundles:download": ({}, {"owner": 200, "other_user": 404, "admin": 403, "auditor": 403, "anonymous": LOGIN}),
    "bundles:link-create": ({}, {"owner": 200, "other_user": 404, "admin": 403, "auditor": 403, "anonymous": LOGIN}),
    "enrollment:revoke": (
        {"reason": "keyCompromise", "confirm": "on"},
        {"owner": 302, "other_user": 404, "admin": 302, "auditor": 403, "anonymous": LOGIN},
    ),
    "api-peer-revoke": (
        {"reason": "keyCompromise"},
        {"owner": 200, "other_user": 404, "admin": 200, "auditor": 403, "anonymous": 401},
    ),
    # The owner's renewal with a portal-made key answers 200: the page with the key's passphrase, once.
    "enrollment:renew": (
        {"key_source": "portal"},
        {"owner": 200, "other_user": 404, "admin": 404, "auditor": 403, "anonymous": LOGIN},
    ),
}
# Object URLs that take both GET and POST: their POST rows are in ISSUED_POST_MATRIX, or (the one-time
# link, whose path parameter is a token) in tests/bundles/test_views.py.
READ_WRITE = {"bundles:link", "enrollment:revoke", "enrollment:renew"}

# POST-only endpoints: url name -> (form or JSON body, persona -> status for a PENDING peer of alice's).
# Every persona but the admins must be refused and leave the peer, the requests and the audit log as
# they were; the admins' row proves that the refusals are authorization, not a broken endpoint.
POST_MATRIX: dict[str, tuple[dict[str, str], dict[str, int]]] = {
    "enrollment:approve": (
        {},
        {"owner": 403, "other_user": 403, "auditor": 403, "anonymous": LOGIN, "admin": 302},
    ),
    "enrollment:reject": (
        {"reason": "not on the list"},
        {"owner": 403, "other_user": 403, "auditor": 403, "anonymous": LOGIN, "admin": 302},
    ),
    "api-peer-approve": (
        {},
        {"owner": 403, "other_user": 404, "auditor": 403, "anonymous": 401, "admin": 200},
    ),
    "api-peer-reject": (
        {"reason": "not on the list"},
        {"owner": 403, "other_user": 404, "auditor": 403, "anonymous": 401, "admin": 200},
    ),
}


# --- the URLconf --------------------------------------------------------------------------------

_PARAMETER = re.compile(r"<(?:\w+:)?(\w+)>|\(\?P<(\w+)>")


@dataclass(frozen=True)
class Route:
    name: str
    route: str
    parameters: tuple[str, ...]
    api: bool


def _walk(resolver: URLResolver, prefix: str = "", namespace: str = "") -> Iterator[Route]:
    for entry in resolver.url_patterns:
        if isinstance(entry, URLResolver):
            inner = f"{namespace}{entry.namespace}:" if entry.namespace else namespace
            yield from _walk(entry, prefix + str(entry.pattern), inner)
        else:
            assert isinstance(entry, URLPattern)
            route = prefix + str(entry.pattern)
            parameters = tuple(a or b for a, b in _PARAMETER.findall(route))
            name = f"{namespace}{entry.name}" if entry.name else f"<unnamed {route}>"
            yield Route(name, route, parameters, route.startswith("api/"))


def object_routes() -> dict[str, Route]:
    """Every URL pattern of the project that takes a path parameter, by URL name."""
    routes = [r for r in _walk(get_resolver()) if r.parameters]
    names = [r.name for r in routes]
    assert len(names) == len(set(names)), f"two object URLs share a name: {names}"
    return {r.name: r for r in routes}


def _url(route: Route, object_id: int) -> str:
    path = route.route
    for parameter in route.parameters:
        path = re.sub(rf"<(?:\w+:)?{parameter}>|\(\?P<{parameter}>[^)]*\)", str(object_id), path)
    return "/" + path.lstrip("^").rstrip("$")


def test_every_object_url_has_a_row() -> None:
    routes = object_routes()

    assert not [name for name in routes if name.startswith("<unnamed")], "name every object URL"
    missing = sorted(set(routes) - set(GET_MATRIX))
    stale = sorted(set(GET_MATRIX) - set(routes))
    assert missing == [], f"object URLs without a row in GET_MATRIX (decide who may see them): {missing}"
    assert stale == [], f"rows in GET_MATRIX for URLs that no longer exist: {stale}"
    assert set(GET_MATRIX) == set(routes)
    for name, row in GET_MATRIX.items():
        assert set(row) == set(PERSONAS), f"{name}: one status per persona"


def test_every_post_only_url_has_a_post_row() -> None:
    post_only = {name for name, row in GET_MATRIX.items() if set(row.values()) - {401} == {405}}

    assert post_only == set(POST_MATRIX) | (set(ISSUED_POST_MATRIX) - READ_WRITE)


def test_the_matrix_covers_the_peer_api() -> None:
    # The API is part of the matrix as soon as it is routed (docs/architecture.md: /api/v1/peers/{id}/...).
    routes = object_routes()
    assert routes["api-peer"].route == "api/v1/peers/<str:id>"
    assert _url(routes["api-peer-approve"], 7) == "/api/v1/peers/7/approve"
    assert _url(routes["enrollment:status"], 7) == "/peers/7/status.json"


# --- the world ---------------------------------------------------------------------------------


@pytest.fixture
def clients(owner: Any, other_user: Any, admin: Any, second_admin: Any, auditor: Any) -> dict[str, Client]:
    users = {"owner": owner, "other_user": other_user, "admin": admin, "second_admin": second_admin,
             "auditor": auditor}  # fmt: skip
    result = {"anonymous": Client()}
    for persona, user in users.items():
        client = Client()
        login(client, user)
        result[persona] = client
    return result


def _register(owner: Any, fqdn: str, csr: str) -> Peer:
    return peer_register(
        owner=owner, fqdn=fqdn, kind="client", networks=["10.1.0.0/24"], address=None,
        csr_pem=fixture_bytes(csr).decode(), actor=owner,
    )  # fmt: skip


@pytest.fixture
def issued_peer(ca: CertificateAuthority, owner: Any, admin: Any, second_admin: Any) -> Peer:
    """alice's issued client, with a rendered bundle (so the bundle URLs have something to refuse)."""
    issue(admin, second_admin, "www.example.com", kind="server", networks=("10.1.1.0/24",), address="192.0.34.72")
    peer = _register(owner, "client.example.com", "client-rsa2048.csr")
    approved = peer_approve(peer_id=peer.pk, approver=second_admin, actor=second_admin, enqueue=False)
    assert approved.certificate_request is not None
    assert certificate_issue(request_id=approved.certificate_request.pk) is not None
    approved.refresh_from_db()
    assert approved.status == "issued"
    assert bundle_render(peer_id=approved.pk).bundle is not None
    return approved


def _get(client: Client, route: Route, url: str) -> int:
    if route.api:
        return int(client.get(url, HTTP_ACCEPT="application/json").status_code)
    return int(client.get(url).status_code)


@pytest.mark.parametrize("name", sorted(GET_MATRIX))
def test_get_matrix(name: str, clients: dict[str, Client], issued_peer: Peer) -> None:
    route = object_routes()[name]
    url = _url(route, issued_peer.pk)

    got = {persona: _get(clients[persona], route, url) for persona in PERSONAS}

    assert got == GET_MATRIX[name], url
    expected_ok = {p for p, status in GET_MATRIX[name].items() if 200 <= status < 300}
    assert {p for p, status in got.items() if 200 <= status < 300} == expected_ok  # 0 unexpected 2xx


@pytest.mark.parametrize("name", sorted(GET_MATRIX))
def test_a_missing_object_is_404_for_everyone_who_may_ask(name: str, clients: dict[str, Client]) -> None:
    route = object_routes()[name]
    url = _url(route, 999999)

    for persona, expected in GET_MATRIX[name].items():
        status = _get(clients[persona], route, url)
        if expected == 200:
            assert status == 404, (persona, url)
        else:
            assert status == expected, (persona, url)  # refusals do not depend on the object existing


def _state(peer: Peer) -> tuple[Any, ...]:
    peer.refresh_from_db()
    return (peer.decision, peer.decided_by_id, peer.decision_reason, peer.certificate_request_id,
            CertificateRequest.objects.count(), list(AuditEvent.objects.values_list("seq", "action")))  # fmt: skip


@pytest.mark.parametrize(
    ("name", "persona"), [(name, persona) for name, (_body, row) in sorted(POST_MATRIX.items()) for persona in row]
)
def test_post_matrix(name: str, persona: str, ca: CertificateAuthority, owner: Any, clients: dict[str, Client]) -> None:
    data, row = POST_MATRIX[name]
    route = object_routes()[name]
    peer = _register(owner, "pending.example.com", "client-nocn.csr")
    before = _state(peer)
    client = clients[persona]
    url = _url(route, peer.pk)

    if route.api:
        response = client.post(url, data, content_type="application/json")
    else:
        response = client.post(url, data)

    assert response.status_code == row[persona], (persona, url)
    if persona == "anonymous" and not route.api:
        assert response["Location"] == f"/login/?next={url}"
    if persona == "admin":
        peer.refresh_from_db()
        assert peer.decision != Peer.Decision.PENDING
        assert str(peer.decided_by_id) == clients["admin"].session["_auth_user_id"]
    else:
        assert _state(peer) == before, "a refused POST changed something"


def _issued_world() -> tuple[int, ...]:
    return (
        BundleDownload.objects.count(),
        DownloadLink.objects.count(),
        Certificate.objects.filter(revoked_at__isnull=False).count(),
        AuditEvent.objects.count(),
    )


@pytest.mark.parametrize(
    ("name", "persona"), [(name, persona) for name, (_b, row) in sorted(ISSUED_POST_MATRIX.items()) for persona in row]
)
def test_issued_post_matrix(name: str, persona: str, clients: dict[str, Client], issued_peer: Peer) -> None:
    data, row = ISSUED_POST_MATRIX[name]
    route = object_routes()[name]
    url = _url(route, issued_peer.pk)
    before = _issued_world()

    if route.api:
        response = clients[persona].post(url, data, content_type="application/json")
    else:
        response = clients[persona].post(url, data)

    assert response.status_code == row[persona], (persona, url)
    if row[persona] in (200, 302) and persona != "anonymous":  # an anonymous 302 is LOGIN: a refusal
        assert _issued_world() != before
    else:
        assert _issued_world() == before, "a refused POST changed state"


@pytest.mark.parametrize("name", sorted(set(GET_MATRIX) - set(POST_MATRIX) - set(ISSUED_POST_MATRIX) - READ_WRITE))
def test_read_only_object_urls_refuse_post(name: str, owner: Any, clients: dict[str, Client]) -> None:
    route = object_routes()[name]
    peer = _register(owner, "pending.example.com", "client-nocn.csr")
    before = _state(peer)

    for persona in ("owner", "admin"):
        client = clients[persona]
        url = _url(route, peer.pk)
        if route.api:
            response = client.post(url, {}, content_type="application/json")
        else:
            response = client.post(url, {"reason": "x"})
        assert response.status_code == 405, (persona, url)
    assert _state(peer) == before


# --- EST (RFC 7030) -------------------------------------------------------------------------------
# EST takes no session: each persona sends HTTP Basic credentials (anonymous sends none). The object
# is the request's FQDN: a new one for simpleenroll, alice's issued client for simplereenroll.

EST_PREFIX = ".well-known/est/"
EST_PASSWORD = "correct horse battery"
EST_USERS = {"owner": "alice", "other_user": "mallory", "admin": "carol", "second_admin": "dave", "auditor": "erin"}
# url name -> (method, FQDN in the request, persona -> status)
EST_MATRIX: dict[str, tuple[str, str, dict[str, int]]] = {
    "est-cacerts": ("GET", "", dict.fromkeys(PERSONAS, 200)),
    # Roaming users enroll (for themselves); CA admins sign in with two-factor, which EST cannot do;
    # auditors change nothing.
    "est-simpleenroll": (
        "POST",
        "new.example.com",
        {"owner": 202, "other_user": 202, "admin": 403, "second_admin": 403, "auditor": 403, "anonymous": 401},
    ),
    # Only the owner renews: for anyone else alice's FQDN is not theirs (404).
    "est-simplereenroll": (
        "POST",
        "client.example.com",
        {"owner": 202, "other_user": 404, "admin": 403, "second_admin": 403, "auditor": 403, "anonymous": 401},
    ),
}


def _est_routes() -> dict[str, str]:
    return {r.name: r.route for r in _walk(get_resolver()) if r.route.startswith(EST_PREFIX)}


def test_every_est_url_has_a_row() -> None:
    routes = _est_routes()

    assert set(routes) == set(EST_MATRIX), "decide here who may use a new EST URL"
    assert routes["est-simpleenroll"] == ".well-known/est/simpleenroll"


def _est_request(fqdn: str) -> bytes:
    der = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, fqdn)]))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(fqdn)]), critical=False)
        .sign(ec.generate_private_key(ec.SECP256R1()), hashes.SHA256())
        .public_bytes(serialization.Encoding.DER)
    )
    return base64.b64encode(der)


@pytest.mark.parametrize(("name", "persona"), [(name, p) for name in sorted(EST_MATRIX) for p in PERSONAS])
def test_est_matrix(
    name: str, persona: str, owner: Any, other_user: Any, admin: Any, auditor: Any, second_admin: Any, issued_peer: Peer
) -> None:
    method, fqdn, row = EST_MATRIX[name]
    url = "/" + _est_routes()[name]
    headers: dict[str, str] = {}
    if persona != "anonymous":
        credentials = f"{EST_USERS[persona]}:{EST_PASSWORD}".encode()
        headers["HTTP_AUTHORIZATION"] = "Basic " + base64.b64encode(credentials).decode()
    before = _issued_world(), list(Peer.objects.values_list("pk", flat=True))

    if method == "GET":
        response = Client().get(url, **headers)
    else:
        response = Client().post(url, _est_request(fqdn), content_type="application/pkcs10", **headers)

    assert response.status_code == row[persona], (persona, url, response.content)
    if response.status_code == 401:
        assert response["WWW-Authenticate"].startswith("Basic ")
    if method == "POST" and response.status_code == 202:
        created = Peer.objects.exclude(pk__in=before[1]).get()
        assert created.owner.get_username() == EST_USERS[persona]
        assert created.fqdn == fqdn
    else:
        assert (_issued_world(), list(Peer.objects.values_list("pk", flat=True))) == before
