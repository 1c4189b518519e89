from __future__ import annotations

import base64

from django.contrib.auth.decorators import login_required
from django.db import DatabaseError, connection
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.utils.cache import get_conditional_response
from django.utils.http import http_date
from django.views.decorators.cache import cache_control, never_cache
from django.views.decorators.http import require_GET

from authority.services import active_ca
from core.roles import is_ca_admin


@require_GET
@cache_control(max_age=300, public=True)
def ca_pem(request: HttpRequest) -> HttpResponse:
    """The CA certificate, no login: peers and admins fetch it to configure trust."""
    ca = active_ca()
    if ca is None:
        raise Http404("there is no CA yet")
    response = HttpResponse(ca.certificate_pem, content_type="application/x-pem-file")
    response["Content-Disposition"] = 'attachment; filename="ca.pem"'
    return response


def crl_etag(*, ca_fingerprint: str, number: int, der: bool) -> str:
    """The CRL's entity tag: the CA (first 16 hex digits of its SHA-256 fingerprint), the cRLNumber
    in hex and the representation. bin/ca-portal-refresh computes the same from the CRL it has
    installed (openssl x509 -fingerprint, openssl crl -crlnumber), so its conditional request costs
    the portal one indexed query and a 304."""
    return f'"{ca_fingerprint.replace(":", "").lower()[:16]}-{number:x}-{"der" if der else "pem"}"'


def _pem(der: bytes) -> str:
    """PEM of the stored DER without parsing it (Crl.pem parses a 10,000-entry CRL: 45 ms a request)."""
    body = base64.b64encode(der).decode("ascii")
    lines = "\n".join(body[i : i + 64] for i in range(0, len(body), 64))
    return f"-----BEGIN X509 CRL-----\n{lines}\n-----END X509 CRL-----\n"


def _crl_response(request: HttpRequest, *, der: bool) -> HttpResponse:
    from authority.models import Crl

    # One query for what the validators need; the DER (up to megabytes) is read only for a 200.
    crl = (
        Crl.objects.filter(ca__is_active=True)
        .select_related("ca")
        .only("number", "this_update", "next_update", "ca__fingerprint_sha256")
        .order_by("-number")
        .first()
    )
    if crl is None:
        return HttpResponse("no CRL has been published yet\n", status=404, content_type="text/plain; charset=utf-8")
    etag = crl_etag(ca_fingerprint=crl.ca.fingerprint_sha256, number=crl.number, der=der)
    last_modified = int(crl.this_update.timestamp())
    # Peers fetch this on a schedule; let caches keep it for an hour at most (a revocation publishes a
    # new CRL at once) and never past the time the next CRL is due.
    remaining = int((crl.next_update - crl.this_update).total_seconds() // 2)
    validators = {
        "ETag": etag,
        "Last-Modified": http_date(last_modified),
        "Cache-Control": f"public, max-age={max(60, min(remaining, 3600))}",
        "X-CRL-Number": str(crl.number),
    }
    not_modified = get_conditional_response(request, etag=etag, last_modified=last_modified)
    if not_modified is not None:  # 304 (or 412 for a failed If-Match): no body, no DER read
        for name, value in validators.items():
            not_modified[name] = value
        return not_modified
    if der:
        response = HttpResponse(bytes(crl.der), content_type="application/pkix-crl")
        response["Content-Disposition"] = 'attachment; filename="ca.crl"'
    else:
        response = HttpResponse(_pem(bytes(crl.der)), content_type="application/x-pem-file")
        response["Content-Disposition"] = 'attachment; filename="crl.pem"'
    for name, value in validators.items():
        response[name] = value
    return response


@require_GET
def crl_der(request: HttpRequest) -> HttpResponse:
    """The current CRL in DER, no login: the CRL distribution point named in every certificate."""
    return _crl_response(request, der=True)


@require_GET
def crl_pem(request: HttpRequest) -> HttpResponse:
    """The current CRL in PEM, no login: what isakmpd's crls/ directory and iked want."""
    return _crl_response(request, der=False)


@require_GET
@login_required
def ca_detail(request: HttpRequest) -> HttpResponse:
    """The CA page. Its public part (subject, fingerprint, validity, downloads) is for everyone signed in:
    owners compare the fingerprint of the CA their peer fetched (EST, the bundle) with it. How the key is
    kept, and the CRL's health and policy, are for CA admins."""
    ca = active_ca()
    fingerprint = ""
    if ca is not None:
        fingerprint = ":".join(ca.fingerprint_sha256[i : i + 2] for i in range(0, 64, 2)).upper()
    context: dict[str, object] = {"ca": ca, "fingerprint": fingerprint}
    if is_ca_admin(request.user):
        from authority.crl_policy import crl_policy
        from authority.revocation import crl_health

        health = crl_health()
        policy = crl_policy()
        context.update(
            crl=health.crl,
            crl_problem=health.warning,
            crl_policy=policy.spans(),
            crl_policy_warnings=policy.warnings(),
        )
    return render(request, "authority/ca_detail.html", context)


@require_GET
@never_cache
def healthz(request: HttpRequest) -> JsonResponse:
    """Liveness: the process answers. A database that does not answer makes ``ca`` null, not a 500,
    so a monitor does not restart healthy web processes for it; /readyz says what is wrong."""
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        has_ca: bool | None = active_ca() is not None
    except DatabaseError:
        has_ca = None
    return JsonResponse({"status": "ok", "ca": has_ca})
