"""The auditor pages: dashboard, certificate inventory and exports, one certificate's chain of
custody, the audit log and its verification.

Read-only, for auditors and CA admins: roaming users get 403, anonymous visitors the sign-in
page. Bad filter values never fail a page: the form shows what is wrong (exports answer 400).
Verifying the audit chain is a POST (it is work, and CSRF-protected) but changes nothing.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import wraps
from typing import Any

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST

from audit import auditlog, custody, exports, selectors
from audit.dashboard import certificate_counts, dashboard_charts
from audit.forms import AuditFilterForm, InventoryFilterForm
from authority.checkpoints import log_verify, newest_checkpoint
from core.roles import is_auditor, is_ca_admin

View = Callable[..., HttpResponseBase]

MAX_PAGE = 1_000_000


def reviewer_required(view: View) -> View:
    """Signed in (else the sign-in page), and an auditor or a CA admin (else 403)."""

    @wraps(view)
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        if not (is_auditor(request.user) or is_ca_admin(request.user)):
            raise PermissionDenied("only auditors and CA admins see the audit pages")
        return view(request, *args, **kwargs)

    return login_required(wrapped)


def _positive_int(value: str | None, default: int | None = None, *, limit: int = 2**62) -> int | None:
    """A cursor or page number from the query string; garbage or out of range means "not given"."""
    try:
        number = int((value or "")[:20])
    except ValueError:
        return default
    return number if 0 < number <= limit else default


# --- pages -----------------------------------------------------------------------------------


@never_cache
@require_GET
@reviewer_required
def dashboard(request: HttpRequest) -> HttpResponse:
    now = timezone.now()
    issued_chart, expiry_chart = dashboard_charts(now=now)
    return render(
        request,
        "audit/dashboard.html",
        {
            "counts": certificate_counts(now=now),
            "issued_chart": issued_chart,
            "expiry_chart": expiry_chart,
            "now": now,
        },
    )


@never_cache
@require_GET
@reviewer_required
def certificate_list(request: HttpRequest) -> HttpResponse:
    form = InventoryFilterForm(request.GET)
    page = None
    filters = selectors.InventoryFilters()
    if form.is_valid():
        filters = form.filters()
        number = _positive_int(request.GET.get("page"), 1, limit=MAX_PAGE) or 1
        page = selectors.inventory_page(filters, page=number)
    return render(
        request,
        "audit/certificates.html",
        {"form": form, "page": page, "filters": filters, "sort_columns": _sort_columns(filters)},
    )


def _sort_columns(filters: selectors.InventoryFilters) -> dict[str, dict[str, str]]:
    """For each sortable column header: the direction a click asks for, and the arrow to show."""
    columns = {}
    for key in selectors.SORTS:
        active = filters.sort == key
        if active:
            next_dir = "asc" if filters.direction == "desc" else "desc"
            arrow = "▼" if filters.direction == "desc" else "▲"
        else:
            next_dir = "asc" if key in ("fqdn", "owner") else "desc"
            arrow = ""
        columns[key] = {"dir": next_dir, "arrow": arrow, "aria": "descending" if arrow == "▼" else "ascending"}
    return columns


def _export_filters(request: HttpRequest) -> selectors.InventoryFilters | HttpResponse:
    form = InventoryFilterForm(request.GET)
    if not form.is_valid():
        errors = {name: [str(message) for message in messages] for name, messages in form.errors.items()}
        return JsonResponse({"errors": errors}, status=400)
    return form.filters()


def _export_name(extension: str) -> str:
    return f"certificates-{timezone.now():%Y%m%dT%H%M%SZ}.{extension}"


@never_cache
@require_GET
@reviewer_required
def export_csv(request: HttpRequest) -> HttpResponseBase:
    filters = _export_filters(request)
    if isinstance(filters, HttpResponse):
        return filters
    response = StreamingHttpResponse(exports.export_csv(filters), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{_export_name("csv")}"'
    return response


@never_cache
@require_GET
@reviewer_required
def export_json(request: HttpRequest) -> HttpResponseBase:
    filters = _export_filters(request)
    if isinstance(filters, HttpResponse):
        return filters
    response = StreamingHttpResponse(exports.export_json(filters), content_type="application/json")
    response["Content-Disposition"] = f'attachment; filename="{_export_name("json")}"'
    return response


@never_cache
@require_GET
@reviewer_required
def certificate_detail(request: HttpRequest, serial: str) -> HttpResponse:
    certificate = custody.certificate_by_serial(serial)
    if certificate is None:
        raise Http404("no such certificate")
    now = timezone.now()
    timeline = custody.certificate_timeline(certificate)
    return render(
        request,
        "audit/certificate.html",
        {
            "certificate": certificate,
            "peer": getattr(certificate.request, "peer", None),
            "status": selectors.certificate_status(
                revoked_at=certificate.revoked_at, not_after=certificate.not_after, now=now
            ),
            "owner": custody.certificate_owner(certificate),
            "serial_colons": selectors.serial_colons(certificate.serial),
            "timeline": timeline,
            "revoked_by": certificate.revoked_by.removeprefix("user:"),
        },
    )


def _target_url(target: str) -> str | None:
    """The auditor page of an event's target, where there is one (certificates)."""
    kind, _, ident = target.partition(":")
    if kind == "certificate" and selectors.normalize_serial(ident) is not None:
        return reverse("audit:certificate", args=[ident])
    if kind == "peer" and ident.isdigit():
        return reverse("enrollment:detail", args=[int(ident)])
    return None


def _audit_log_response(request: HttpRequest, *, verify: Any = None) -> HttpResponse:
    form = AuditFilterForm(request.GET)
    page = None
    if form.is_valid():
        before = _positive_int(request.GET.get("before"))
        after = None if before is not None else _positive_int(request.GET.get("after"))
        page = auditlog.audit_page(form.filters(), before=before, after=after)
    events = page.events if page is not None else []
    rows = [(e, json.dumps(e.data, sort_keys=True, ensure_ascii=False), _target_url(e.target)) for e in events]
    return render(
        request,
        "audit/log.html",
        {
            "form": form,
            "page": page,
            "rows": rows,
            "head_seq": auditlog.audit_head_seq(),
            "verify": verify,
            "checkpoint": newest[0] if (newest := newest_checkpoint()) is not None else None,
        },
    )


@never_cache
@require_GET
@reviewer_required
def audit_log(request: HttpRequest) -> HttpResponse:
    return _audit_log_response(request)


@never_cache
@require_POST
@reviewer_required
def audit_log_verify(request: HttpRequest) -> HttpResponse:
    """Walk the hash chain and show the result above the log; records nothing, changes nothing."""
    return _audit_log_response(request, verify=log_verify())


@never_cache
@require_GET
@reviewer_required
def audit_checkpoint_download(request: HttpRequest) -> HttpResponse:
    """The newest signed checkpoint, as text, for auditors to keep off the host (docs/security.md T37)."""
    newest = newest_checkpoint()
    if newest is None:
        raise Http404("no signed checkpoint yet")
    checkpoint, line = newest
    text = (
        f"# ca_portal audit checkpoint: event {checkpoint.seq}, signed {checkpoint.at:%Y-%m-%d %H:%M:%S} UTC.\n"
        "# Check ca= against the SHA-256 fingerprint of the CA certificate you pinned (/ca.pem), then later:\n"
        "#   manage.py audit_verify --checkpoint THIS_FILE\n"
        f"{line}\n"
    )
    response = HttpResponse(text, content_type="text/plain; charset=us-ascii")
    response["Content-Disposition"] = f'attachment; filename="audit-checkpoint-{checkpoint.seq}.txt"'
    return response
