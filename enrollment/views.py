from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from enrollment.models import Peer


@require_GET
@login_required
def peer_list(request: HttpRequest) -> HttpResponse:
    """The signed-in user's own peers, newest first."""
    peers = Peer.objects.filter(owner_id=request.user.pk).select_related("certificate_request__certificate")
    return render(request, "enrollment/peer_list.html", {"peers": peers.order_by("-created_at")})
