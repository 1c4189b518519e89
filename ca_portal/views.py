"""The site's own page: home. Everything it shows comes from the apps' selectors."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.contrib.auth.models import User
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from core.roles import is_ca_admin
from enrollment import selectors


@require_GET
@login_required
def home(request: HttpRequest) -> HttpResponse:
    user = request.user
    assert isinstance(user, User)
    context: dict[str, object] = {"peers": selectors.peers_recent(user), **selectors.expiry_marks()}
    if is_ca_admin(user):
        context.update(selectors.work_counts())
    return render(request, "home.html", context)
