"""Refusals that Django itself makes, as pages in the site's style instead of its bare defaults.

- ``csrf_failure`` (``CSRF_FAILURE_VIEW``): a form sent without a valid CSRF token. Django's own
  page is a bare "Forbidden (403)" that tells a person nothing they can act on.
- ``method_not_allowed_pages`` (middleware): a page address opened with the wrong method, such as a
  reload (Enter in the address bar, history, a bookmark) of the target of a POST button like
  /audit/log/verify/. Django answers with an empty 405, which Chromium shows as "HTTP ERROR 405".

The API and EST keep their own answers: JSON, or the bare status.
"""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlsplit

from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed
from django.shortcuts import render
from django.urls import Resolver404, resolve
from django.utils.http import url_has_allowed_host_and_scheme

MACHINE_PREFIXES = ("/api/", "/.well-known/")


def _way_back(request: HttpRequest, *, here_too: bool = False) -> str:
    """Where "back" goes: the page the person came from (this site only; this very address only with
    ``here_too``, for a form that posts to itself), else the page above this address when there is
    one (/audit/log/ for /audit/log/verify/), else the overview."""
    referer = request.headers.get("Referer", "")
    same_site = url_has_allowed_host_and_scheme(referer, allowed_hosts={request.get_host()})
    if referer and same_site and (here_too or urlsplit(referer).path != request.path):
        return referer
    parent = request.path.rstrip("/").rsplit("/", 1)[0] + "/"
    try:
        resolve(parent)
    except Resolver404:
        return "/"
    return parent


def csrf_failure(request: HttpRequest, reason: str = "") -> HttpResponse:
    """The page for a form refused by the CSRF check (403). ``reason`` is Django's, for the log only."""
    return render(request, "csrf_failure.html", {"back": _way_back(request, here_too=True)}, status=403)


def _wants_html(request: HttpRequest) -> bool:
    return not request.path.startswith(MACHINE_PREFIXES) and "text/html" in request.headers.get("Accept", "")


def method_not_allowed_pages(
    get_response: Callable[[HttpRequest], HttpResponse],
) -> Callable[[HttpRequest], HttpResponse]:
    """Turn Django's empty 405 for a browser's page request into a page that says what happened."""

    def middleware(request: HttpRequest) -> HttpResponse:
        response = get_response(request)
        if not isinstance(response, HttpResponseNotAllowed) or not _wants_html(request):
            return response
        allowed = [method.strip() for method in response.get("Allow", "").split(",") if method.strip()]
        page = render(
            request,
            "405.html",
            {"method": request.method, "allowed": allowed, "back": _way_back(request)},
            status=405,
        )
        page["Allow"] = response["Allow"]
        return page

    return middleware
