"""Bundle pages: preview and diff, download, one-time links, the gateway page, the site profile.

Downloads are POST (with CSRF): the first download of a portal-made key destroys the server's copy,
and a state change must never hang on a GET that another site can trigger. A one-time link is
redeemed by POST too, but without a session or a CSRF token: its token is the credential.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import fields
from functools import wraps
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, TypeAlias

import segno
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from bundles import gateway_selectors, pages, selectors, services, sync
from bundles.archive import content_disposition
from bundles.forms import SiteProfileForm, services_to_text
from bundles.models import BundleDownload
from core.roles import is_ca_admin

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

P = ParamSpec("P")
View: TypeAlias = Callable[Concatenate[HttpRequest, P], HttpResponse]

# Pages that show or carry a link token hold forms (download, sign out). "no-referrer" would make the
# browser send `Origin: null` with those POSTs, which Django's CSRF check rightly refuses;
# "same-origin" still keeps the token out of every request to another site (T24).
LINK_PAGE_REFERRER_POLICY = "same-origin"


def _user(request: HttpRequest) -> User:
    assert isinstance(request.user, User)
    return request.user


def _address(request: HttpRequest) -> str | None:
    return request.META.get("REMOTE_ADDR") or None


def _context(page: DataclassInstance) -> dict[str, Any]:
    """A selector's page (a dataclass) as a template context, field by field (no copies, unlike asdict)."""
    return {field.name: getattr(page, field.name) for field in fields(page)}


def zip_response(download: services.Download) -> HttpResponse:
    response = HttpResponse(download.data, content_type="application/zip")
    response["Content-Disposition"] = content_disposition(download.bundle.peer.fqdn)
    response["Content-Length"] = str(len(download.data))
    response["X-Bundle-SHA256"] = download.sha256
    response["X-Bundle-Version"] = str(download.bundle.version)
    response["Cache-Control"] = "no-store"
    response["Referrer-Policy"] = "no-referrer"
    return response


def _refusal_pages(view: View[P]) -> View[P]:
    """The bundle pages show a service's refusal on their own error page, with the way back to the
    peer's bundle page when the refusal names one. A 404 is the site's "not found" page, as for any
    peer the user does not see."""

    @wraps(view)
    def wrapped(request: HttpRequest, /, *args: P.args, **kwargs: P.kwargs) -> HttpResponse:
        try:
            return view(request, *args, **kwargs)
        except services.BundleError as exc:
            if exc.status == 404:
                raise Http404(str(exc)) from None
            context = {"message": str(exc), "peer": exc.peer}
            return render(request, "bundles/error.html", context, status=exc.status)

    return wrapped


def _link_pages(view: View[P]) -> View[P]:
    """Every page of a view that carries a one-time link's token in its URL (not the zip, which says
    "no-referrer" itself) keeps the token from other sites."""

    @wraps(view)
    def wrapped(request: HttpRequest, /, *args: P.args, **kwargs: P.kwargs) -> HttpResponse:
        response = view(request, *args, **kwargs)
        if response.get("Content-Type") != "application/zip":
            response["Referrer-Policy"] = LINK_PAGE_REFERRER_POLICY
        return response

    return wrapped


@require_GET
@login_required
def bundle_page(request: HttpRequest, peer_id: int) -> HttpResponse:
    """Every file of the latest version, what changed since the previous one, and the download."""
    page = pages.bundle_page(_user(request), peer_id)  # 404 for peers the user does not see
    return render(request, "bundles/bundle.html", _context(page))


@never_cache
@require_POST
@login_required
@_refusal_pages
def bundle_download(request: HttpRequest, peer_id: int) -> HttpResponse:
    download = services.bundle_download(
        peer_id=peer_id,
        user=_user(request),
        address=_address(request),
        via=BundleDownload.Via.PAGE,
        refusal=services.Refusal.HIDE_UNSEEN,  # 404 for other users' peers, as their pages
    )
    return zip_response(download)


@never_cache
@require_POST
@login_required
@_refusal_pages
def link_create(request: HttpRequest, peer_id: int) -> HttpResponse:
    token, link = services.link_create(
        peer_id=peer_id,
        user=_user(request),
        with_key=request.POST.get("with_key") == "on",  # a checkbox, shown only while the key waits
        refusal=services.Refusal.HIDE_UNSEEN,
    )
    url = request.build_absolute_uri(reverse("bundles:link", args=[token]))
    context = {
        "peer": link.peer,
        "url": url,
        "link": link,
        # Inline SVG (no script, no data: URL): the policy allows it, and the token never leaves the page.
        "qr_svg": segno.make(url, error="m").svg_inline(scale=4, title="QR code of the one-time link"),
    }
    response = render(request, "bundles/link_created.html", context)
    response["Referrer-Policy"] = LINK_PAGE_REFERRER_POLICY
    return response


@never_cache
@csrf_exempt
@require_http_methods(["GET", "POST"])
@_link_pages
@_refusal_pages
def link_redeem(request: HttpRequest, token: str) -> HttpResponse:
    """GET shows what the link gives and changes nothing (link previews, prefetchers and scanners
    fetch GETs); POST redeems it once and answers the zip: ``curl -fOJ -X POST <url>``.

    No session is needed: the 256-bit token is the credential, so a headless peer fetches its bundle
    with curl. That is also why the POST needs no CSRF token: a forged cross-site POST must already
    know the token, and whoever knows it may redeem it directly; no cookie of the visitor's is used.
    """
    if request.method == "GET":
        link = selectors.link_state(token)
        context = {
            "link": link,
            "peer": link.peer,
            "url": request.build_absolute_uri(),
            "key_waiting": link.with_key and selectors.portal_key_waiting(link.peer),
        }
        return render(request, "bundles/link_redeem.html", context)
    return zip_response(services.link_redeem(token=token, address=_address(request)))


@require_GET
@login_required
def gateway_page(request: HttpRequest) -> HttpResponse:
    if not is_ca_admin(request.user):
        raise PermissionDenied("only CA admins see the gateway")
    overview = gateway_selectors.gateway_overview()
    return render(
        request, "bundles/gateway.html", {**_context(overview), "sync": sync.gateway_sync_state(overview.gateway)}
    )


@never_cache
@require_GET
@login_required
def render_status(request: HttpRequest) -> JsonResponse:
    """What the gateway and site-profile pages poll (static/js/stale-count.js): the bundles waiting to
    be made, so the number goes down while the render workers catch up after a profile change."""
    if not is_ca_admin(request.user):
        raise PermissionDenied("only CA admins see the render queue")
    return JsonResponse({"stale": selectors.stale_count()})


@never_cache
@login_required
@require_http_methods(["GET", "POST"])
def profile_edit(request: HttpRequest) -> HttpResponse:
    if not is_ca_admin(request.user):
        raise PermissionDenied("only CA admins change the site profile")
    profile = selectors.profile_get()
    initial = {
        "gateway": profile.gateway_id,
        "ext_if": profile.ext_if,
        "int_if": profile.int_if,
        "client_ext_if": profile.client_ext_if,
        "client_int_if": profile.client_int_if,
        "suite": profile.suite,
        "legacy_allowed": profile.legacy_allowed,
        "remote_id_check": profile.remote_id_check,
        "services": services_to_text(profile.services),
        "admin_hosts": "\n".join(profile.admin_hosts),
    }
    form = SiteProfileForm(request.POST or None, initial=initial)
    if request.method == "POST" and form.is_valid():
        data = dict(form.cleaned_data)
        gateway = data.pop("gateway")
        try:
            services.profile_update(actor=_user(request), gateway_id=gateway.pk if gateway else None, **data)
        except services.BundleError as exc:
            form.add_error(exc.field if exc.field in form.fields else None, str(exc))
        else:
            messages.success(request, "Site profile saved. Every bundle is being rendered again.")
            return redirect("bundles:gateway")
    return render(request, "bundles/profile.html", {"form": form, "profile": profile, "stale": selectors.stale_count()})
