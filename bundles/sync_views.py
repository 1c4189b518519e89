"""The gateway page's sync token: make one (shown once), revoke it. CA admins only, POST with CSRF."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST

from bundles import sync
from bundles.errors import BundleError
from bundles.renderers.scripts import SYNC_TOKEN_FILE
from core.roles import is_ca_admin


def _admin(request: HttpRequest) -> User:
    user = request.user
    if not isinstance(user, User) or not is_ca_admin(user):
        raise PermissionDenied("only CA admins manage the gateway's sync token")
    return user


@never_cache
@require_POST
@login_required
def sync_token_create(request: HttpRequest) -> HttpResponse:
    user = _admin(request)
    try:
        token, row = sync.sync_token_create(actor=user)
    except BundleError as exc:
        messages.error(request, str(exc))
        return redirect("bundles:gateway")
    context = {
        "token": token,
        "row": row,
        "gateway": row.peer,
        "token_file": SYNC_TOKEN_FILE,
        "minutes": sync.gateway_sync_state(row.peer).minutes,
    }
    response = render(request, "bundles/sync_token_created.html", context)
    response["Referrer-Policy"] = "no-referrer"
    return response


@never_cache
@require_POST
@login_required
def sync_token_revoke(request: HttpRequest) -> HttpResponse:
    user = _admin(request)
    try:
        token = sync.sync_token_revoke(actor=user)
    except BundleError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"Sync token …{token.hint} revoked: the gateway's next sync is refused.")
    return redirect("bundles:gateway")
