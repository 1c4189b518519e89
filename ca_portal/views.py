"""The site's own page: home. Everything it shows comes from the apps' selectors.

Each role gets its own overview: CA admins the work waiting and, until the site is set up, the
first-run checklist; auditors the certificate counts, the last check of the audit chain and their
pages; everyone their own peers.
"""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.contrib.auth.models import User
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from audit.dashboard import certificate_counts, latest_audit_check
from bundles.gateway_selectors import setup_steps
from core.roles import is_auditor, is_ca_admin
from enrollment import selectors


@require_GET
@login_required
def home(request: HttpRequest) -> HttpResponse:
    user = request.user
    assert isinstance(user, User)
    context: dict[str, object] = {"peers": selectors.peers_recent(user), **selectors.expiry_marks()}
    if is_ca_admin(user):
        context.update(selectors.work_counts())
        steps = setup_steps()
        context["setup_steps"] = steps if not all(step.done for step in steps) else []
    if is_auditor(user):
        context["audit_counts"] = certificate_counts()
        context["audit_check"] = latest_audit_check()
        if not is_ca_admin(user):
            context["pending_count"] = selectors.pending_approvals_count()
    return render(request, "home.html", context)
