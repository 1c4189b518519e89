"""Bundle pages: preview and diff, download, one-time links, the gateway page, the site profile.

Downloads are POST (with CSRF): the first download of a portal-made key destroys the server's copy,
and a state change must never hang on a GET that another site can trigger.
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from bundles import selectors, services, sync
from bundles.archive import content_disposition
from bundles.forms import SiteProfileForm, services_to_text
from bundles.models import BundleDownload
from core.roles import is_ca_admin
from enrollment import selectors as peer_selectors
from enrollment.models import Peer, PortalKey

# Pages that show or carry a link token hold forms (download, sign out). "no-referrer" would make the
# browser send `Origin: null` with those POSTs, which Django's CSRF check rightly refuses;
# "same-origin" still keeps the token out of every request to another site (T24).
LINK_PAGE_REFERRER_POLICY = "same-origin"


def _user(request: HttpRequest) -> User:
    assert isinstance(request.user, User)
    return request.user


def _address(request: HttpRequest) -> str | None:
    return request.META.get("REMOTE_ADDR") or None


def zip_response(download: services.Download) -> HttpResponse:
    response = HttpResponse(download.data, content_type="application/zip")
    response["Content-Disposition"] = content_disposition(download.bundle.peer.fqdn)
    response["Content-Length"] = str(len(download.data))
    response["X-Bundle-SHA256"] = download.sha256
    response["X-Bundle-Version"] = str(download.bundle.version)
    response["Cache-Control"] = "no-store"
    response["Referrer-Policy"] = "no-referrer"
    return response


def _error_page(request: HttpRequest, exc: services.BundleError, peer: Peer | None = None) -> HttpResponse:
    return render(request, "bundles/error.html", {"message": str(exc), "peer": peer}, status=exc.status)


@require_GET
@login_required
def bundle_page(request: HttpRequest, peer_id: int) -> HttpResponse:
    """Every file of the latest version, what changed since the previous one, and the download."""
    user = _user(request)
    peer = peer_selectors.peer_for_user(user, peer_id)
    versions = selectors.bundle_versions(peer)
    bundle = versions[0] if versions else None
    previous = versions[1] if len(versions) > 1 else None
    portal_key = PortalKey.objects.filter(peer=peer).first()
    downloads = BundleDownload.objects.filter(bundle__peer=peer).select_related("user", "bundle").order_by("-at")[:10]
    waiting = ""
    if bundle is None:
        waiting = services.bundle_render_blocker(peer)
    context = {
        "peer": peer,
        "bundle": bundle,
        "previous": previous,
        "files": selectors.previews(bundle, previous) if bundle is not None else [],
        "removed": selectors.removed_paths(bundle, previous) if bundle is not None else [],
        "may_download": services.may_download(user, peer),
        "portal_key": portal_key,
        "downloads": downloads,
        "waiting": waiting,
    }
    return render(request, "bundles/bundle.html", context)


@never_cache
@require_POST
@login_required
def bundle_download(request: HttpRequest, peer_id: int) -> HttpResponse:
    user = _user(request)
    peer = peer_selectors.peer_for_user(user, peer_id)  # 404 for other users' peers
    try:
        download = services.bundle_download(
            peer_id=peer.pk, user=user, address=_address(request), via=BundleDownload.Via.PAGE
        )
    except services.BundleError as exc:
        return _error_page(request, exc, peer)
    return zip_response(download)


@never_cache
@require_POST
@login_required
def link_create(request: HttpRequest, peer_id: int) -> HttpResponse:
    user = _user(request)
    peer = peer_selectors.peer_for_user(user, peer_id)
    try:
        token, link = services.link_create(peer_id=peer.pk, user=user)
    except services.BundleError as exc:
        return _error_page(request, exc, peer)
    url = request.build_absolute_uri(f"/bundles/link/{token}/")
    response = render(request, "bundles/link_created.html", {"peer": peer, "url": url, "link": link})
    response["Referrer-Policy"] = LINK_PAGE_REFERRER_POLICY
    return response


@never_cache
@login_required
@require_http_methods(["GET", "POST"])
def link_redeem(request: HttpRequest, token: str) -> HttpResponse:
    """GET shows what the link gives (no state change); POST redeems it once."""
    user = _user(request)
    try:
        if request.method == "GET":
            link = services.link_state(token, user)
            response = render(request, "bundles/link_redeem.html", {"link": link, "peer": link.peer})
        else:
            response = zip_response(services.link_redeem(token=token, user=user, address=_address(request)))
    except services.BundleError as exc:
        if exc.status == 404:
            raise Http404(str(exc)) from None
        response = _error_page(request, exc)
    if not isinstance(response, HttpResponse) or response.get("Content-Type") != "application/zip":
        response["Referrer-Policy"] = LINK_PAGE_REFERRER_POLICY
    return response


@require_GET
@login_required
def gateway_page(request: HttpRequest) -> HttpResponse:
    if not is_ca_admin(request.user):
        raise PermissionDenied("only CA admins see the gateway")
    profile = services.profile_get()
    gateway = services.gateway_peer(profile)
    state = selectors.gateway_state(profile, gateway)
    context = {
        "profile": profile,
        "gateway": gateway,
        "state": state,
        "servers": Peer.objects.filter(kind=Peer.Kind.SERVER).order_by("fqdn"),
        "stale": len(services.stale_peer_ids()),
        "issued_clients": services.issued_client_fqdns(),
        "sync": sync.gateway_sync_state(gateway),
    }
    return render(request, "bundles/gateway.html", context)


@never_cache
@login_required
@require_http_methods(["GET", "POST"])
def profile_edit(request: HttpRequest) -> HttpResponse:
    if not is_ca_admin(request.user):
        raise PermissionDenied("only CA admins change the site profile")
    profile = services.profile_get()
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
    return render(request, "bundles/profile.html", {"form": form, "profile": profile})
