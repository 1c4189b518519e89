from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.db import connection
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.cache import cache_control
from django.views.decorators.http import require_GET

from ca_portal.authority.models import Certificate, CertificateRequest
from ca_portal.authority.roles import is_ca_admin
from ca_portal.authority.services import active_ca
from enrollment.models import Peer


@require_GET
@login_required
def home(request: HttpRequest) -> HttpResponse:
    peers = (
        Peer.objects.filter(owner_id=request.user.pk).select_related("certificate_request").order_by("-created_at")[:10]
    )
    context: dict[str, object] = {"peers": peers}
    if is_ca_admin(request.user):
        context.update(
            pending_count=Peer.objects.filter(decision=Peer.Decision.PENDING).count(),
            signing_count=CertificateRequest.objects.filter(
                status__in=[CertificateRequest.Status.PENDING, CertificateRequest.Status.SIGNING]
            ).count(),
            issued_count=Certificate.objects.count(),
        )
    return render(request, "home.html", context)


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


@require_GET
@login_required
def ca_detail(request: HttpRequest) -> HttpResponse:
    if not is_ca_admin(request.user):
        raise PermissionDenied("only CA admins see the CA page")
    ca = active_ca()
    fingerprint = ""
    if ca is not None:
        fingerprint = ":".join(ca.fingerprint_sha256[i : i + 2] for i in range(0, 64, 2)).upper()
    return render(request, "authority/ca_detail.html", {"ca": ca, "fingerprint": fingerprint})


@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return JsonResponse({"status": "ok", "ca": active_ca() is not None})
