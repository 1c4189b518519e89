"""Two-factor enforcement for CA admins (TOTP through django-otp), unless OTP_REQUIRED is off."""

from __future__ import annotations

import time
from collections.abc import Callable
from urllib.parse import urlencode

from django.conf import settings
from django.contrib.auth import logout
from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.urls import reverse

from core.roles import is_ca_admin

LOGIN_AT_KEY = "ca_portal_login_at"

# EST authenticates every request itself (HTTP Basic) and never reads the session.
# /healthz, /readyz and /metrics answer monitors, which never sign in.
EXEMPT_PREFIXES = (
    "/login/",
    "/logout/",
    "/otp/",
    "/static/",
    "/ca.pem",
    "/healthz",
    "/readyz",
    "/metrics",
    "/crl.",
    "/.well-known/est/",
)


def require_admin_otp(get_response: Callable[[HttpRequest], HttpResponse]) -> Callable[[HttpRequest], HttpResponse]:
    def middleware(request: HttpRequest) -> HttpResponse:
        user = request.user
        if (
            settings.OTP_REQUIRED_FOR_ADMINS
            and is_ca_admin(user)
            and not user.is_verified()  # type: ignore[union-attr]
            and not request.path.startswith(EXEMPT_PREFIXES)
        ):
            if request.path.startswith("/api/"):
                message = "CA admins must complete two-factor sign-in in the browser, or use an API token"
                return JsonResponse({"errors": {"__all__": [message]}}, status=403)
            from django_otp.plugins.otp_totp.models import TOTPDevice

            has_device = TOTPDevice.objects.filter(user=user, confirmed=True).exists()
            target = reverse("otp-verify" if has_device else "otp-setup")
            return HttpResponseRedirect(f"{target}?{urlencode({'next': request.get_full_path()})}")
        return get_response(request)

    return middleware


def session_absolute_timeout(
    get_response: Callable[[HttpRequest], HttpResponse],
) -> Callable[[HttpRequest], HttpResponse]:
    """Sign out a session SESSION_ABSOLUTE_SECONDS after its sign-in, however active it was."""

    def middleware(request: HttpRequest) -> HttpResponse:
        if request.user.is_authenticated:
            login_at = request.session.get(LOGIN_AT_KEY)
            if not isinstance(login_at, (int, float)) or time.time() - login_at > settings.SESSION_ABSOLUTE_SECONDS:
                logout(request)
                if request.path.startswith("/api/"):
                    return JsonResponse(
                        {"errors": {"__all__": ["your session has expired; sign in again"]}}, status=403
                    )
                return redirect_to_login(request.get_full_path())
        return get_response(request)

    return middleware
