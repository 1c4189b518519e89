"""EST (RFC 7030) under /.well-known/est/: cacerts, simpleenroll and simplereenroll.

For IPsec clients that enroll themselves (strongSwan ``pki --est``). Enrolling goes through the
same services as the portal and the API (``peer_est_enroll``, ``peer_est_reenroll``), so every
request is vetted, waits for a CA admin's approval and is audited like any other: the answer is
202 with Retry-After until the certificate is issued, and the client asks again with the same
request until it gets it (200) or a refusal (4xx with a plain-text reason).

Authentication is HTTP Basic with the portal user's name and password on every request, through
Django's ``authenticate`` and so through django-axes: failures count toward the same lockout as
the sign-in page, and a locked-out user is refused before any password is checked. Nothing reads
or writes a session, and no cookie is set, so there is no CSRF token to check (``csrf_exempt``).
A browser may still hold Basic credentials and send them with another site's form; that form
cannot send ``Content-Type: application/pkcs10`` without a CORS preflight, which is never granted
here, and a POST without that type is refused before anything is read.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable

from cryptography import x509
from django.conf import settings
from django.contrib.auth import authenticate
from django.contrib.auth.models import User
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse
from django.urls import path
from django.utils import timezone
from django.views.decorators.cache import cache_control
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from authority.services import active_ca
from core.roles import is_auditor, is_ca_admin
from enrollment.models import Peer
from enrollment.services import EnrollmentError, peer_est_enroll, peer_est_reenroll
from pki.errors import PkiError
from pki.est import EstCsr, certs_only, read_csr

REALM = 'Basic realm="ca_portal EST", charset="UTF-8"'
PKCS7 = "application/pkcs7-mime"
# Once approved, the signer issues within seconds: a client that honours each Retry-After comes back soon.
SIGNING_RETRY_AFTER = 5
MAX_USERNAME = 150


class _Refusal(Exception):
    """A refusal, already turned into its response."""

    def __init__(self, response: HttpResponse) -> None:
        super().__init__(response.status_code)
        self.response = response


def _text(status: int, message: str) -> HttpResponse:
    return HttpResponse(f"{message}\n", status=status, content_type="text/plain; charset=utf-8")


def _pkcs7(body: bytes, content_type: str) -> HttpResponse:
    response = HttpResponse(body, content_type=content_type)
    # RFC 7030 clients look for it; RFC 8951 clients ignore it (the body is base64 either way).
    response["Content-Transfer-Encoding"] = "base64"
    return response


# --- authentication ------------------------------------------------------------------------------


def _unauthorized(message: str) -> _Refusal:
    response = _text(401, message)
    response["WWW-Authenticate"] = REALM
    return _Refusal(response)


def _basic_credentials(request: HttpRequest) -> tuple[str, str] | None:
    scheme, _, value = request.META.get("HTTP_AUTHORIZATION", "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):  # UnicodeDecodeError is a ValueError
        return None
    username, colon, password = decoded.partition(":")
    if not colon or not username or len(username) > MAX_USERNAME:
        return None
    return username, password


def _user(request: HttpRequest) -> User:
    """The user named by HTTP Basic credentials, if they may enroll here; else _Refusal."""
    credentials = _basic_credentials(request)
    if credentials is None:
        raise _unauthorized("sign in with HTTP Basic authentication: your portal user name and password")
    username, password = credentials
    user = authenticate(request, username=username, password=password)
    if getattr(request, "axes_locked_out", False):
        # Answered here in plain text; left set, AxesMiddleware would replace this with its HTML page.
        request.axes_locked_out = False  # type: ignore[attr-defined]
        minutes = int(settings.AXES_COOLOFF_TIME.total_seconds() // 60)
        raise _Refusal(
            _text(403, f"too many failed sign-ins for {username} from this address; try again in {minutes} minutes")
        )
    if not isinstance(user, User):
        raise _unauthorized("wrong user name or password")
    if is_ca_admin(user) and settings.OTP_REQUIRED_FOR_ADMINS:
        raise _Refusal(
            _text(
                403,
                "CA admins sign in with two-factor authentication, and EST takes a password only: "
                "enroll with a roaming user's account, or through the API with a token",
            )
        )
    if is_auditor(user) and not is_ca_admin(user):
        raise _Refusal(_text(403, "auditors review; they do not enroll"))
    return user


# --- the request ---------------------------------------------------------------------------------


def _csr(request: HttpRequest) -> EstCsr:
    if request.content_type != "application/pkcs10":
        raise _Refusal(_text(415, "send the certificate request as Content-Type: application/pkcs10 (RFC 7030)"))
    try:
        body = request.body
    except RequestDataTooBig:
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        raise _Refusal(_text(413, f"the request body is larger than {limit} bytes")) from None
    try:
        return read_csr(body)
    except PkiError as exc:
        raise _Refusal(_text(400, str(exc))) from None


# --- the answer ----------------------------------------------------------------------------------


def _answer(peer: Peer) -> HttpResponse:
    """What the client learns about its request: the certificate, "ask again later", or why not."""
    status = peer.status
    request = peer.certificate_request
    certificate = getattr(request, "certificate", None) if request is not None else None
    if status == "issued" and certificate is not None:
        if certificate.not_after <= timezone.now():
            return _text(409, f"the certificate for {peer.fqdn} with this key has expired; make a new key and request")
        issued = x509.load_der_x509_certificate(bytes(certificate.der))
        return _pkcs7(certs_only([issued]), f"{PKCS7}; smime-type=certs-only")
    if status in ("pending", "approved"):
        if status == "pending":
            wait = settings.EST_RETRY_AFTER_SECONDS
            message = f"{peer.fqdn} (peer {peer.pk}) is waiting for a CA admin's approval; ask again later"
        else:
            wait = min(settings.EST_RETRY_AFTER_SECONDS, SIGNING_RETRY_AFTER)
            message = f"{peer.fqdn} (peer {peer.pk}) is approved and its certificate is being signed"
        response = _text(202, message)
        response["Retry-After"] = str(wait)
        return response
    if status == "rejected":
        return _text(
            409,
            f"a CA admin rejected the request for {peer.fqdn}: {peer.decision_reason}. "
            "To ask again, make a new key and request",
        )
    if status == "revoked":
        return _text(
            409,
            f"the certificate for {peer.fqdn} with this key was revoked; to enroll again, make a new key and request",
        )
    reason = request.failure_reason if request is not None else ""
    return _text(409, f"signing the certificate for {peer.fqdn} failed: {reason or status}")


def _enroll(request: HttpRequest, service: Callable[..., Peer]) -> HttpResponse:
    try:
        user = _user(request)
        csr = _csr(request)
    except _Refusal as refused:
        return refused.response
    try:
        peer = service(owner=user, csr=csr)
    except EnrollmentError as exc:
        return _text(exc.status, str(exc))
    return _answer(peer)


# --- views ---------------------------------------------------------------------------------------


@require_GET
@cache_control(max_age=300, public=True)
def cacerts(request: HttpRequest) -> HttpResponse:
    """The CA certificate as a certs-only PKCS#7 (RFC 7030 §4.1), no login."""
    ca = active_ca()
    if ca is None:
        return _text(404, "there is no CA yet")
    return _pkcs7(certs_only([ca.certificate]), PKCS7)


@csrf_exempt  # HTTP Basic on every request, no session, no cookies; see the module docstring
@require_POST
def simpleenroll(request: HttpRequest) -> HttpResponse:
    """Enroll a new client: its FQDN is the request's first subjectAltName dNSName, else its CN."""
    return _enroll(request, peer_est_enroll)


@csrf_exempt  # as simpleenroll
@require_POST
def simplereenroll(request: HttpRequest) -> HttpResponse:
    """Renew the user's issued client for the request's FQDN, with the new key in the request.

    RFC 7030 §3.3.2 expects the client to prove the current certificate in the TLS handshake; the
    portal runs behind a reverse proxy that ends TLS, so it authenticates the owner with HTTP Basic
    instead, as for simpleenroll, and renews only what that owner holds.
    """
    return _enroll(request, peer_est_reenroll)


urlpatterns = [
    path("cacerts", cacerts, name="est-cacerts"),
    path("simpleenroll", simpleenroll, name="est-simpleenroll"),
    path("simplereenroll", simplereenroll, name="est-simplereenroll"),
]
