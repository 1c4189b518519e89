from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.db import DatabaseError, connection
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
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


def _crl_response(request: HttpRequest, *, der: bool) -> HttpResponse:
    from authority.revocation import current_crl

    crl = current_crl()
    if crl is None:
        return HttpResponse("no CRL has been published yet\n", status=404, content_type="text/plain; charset=utf-8")
    if der:
        response = HttpResponse(bytes(crl.der), content_type="application/pkix-crl")
        response["Content-Disposition"] = 'attachment; filename="ca.crl"'
    else:
        response = HttpResponse(crl.pem, content_type="application/x-pem-file")
        response["Content-Disposition"] = 'attachment; filename="crl.pem"'
    # Peers fetch this on a schedule; let caches keep it until the next CRL is due at the latest.
    remaining = int((crl.next_update - crl.this_update).total_seconds() // 2)
    response["Cache-Control"] = f"public, max-age={max(60, min(remaining, 3600))}"
    response["X-CRL-Number"] = str(crl.number)
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
    if not is_ca_admin(request.user):
        raise PermissionDenied("only CA admins see the CA page")
    ca = active_ca()
    fingerprint = ""
    if ca is not None:
        fingerprint = ":".join(ca.fingerprint_sha256[i : i + 2] for i in range(0, 64, 2)).upper()
    from authority.revocation import crl_health

    health = crl_health()
    context = {"ca": ca, "fingerprint": fingerprint, "crl": health.crl, "crl_problem": health.warning}
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
