"""Behind the TLS proxy: the client's address from the proxy's X-Forwarded-For.

gunicorn sees the proxy as its peer (or nobody, on a unix socket), so ``REMOTE_ADDR`` would name
the proxy for every request: the sign-in lockout (per user name and address) would lock a user out
for everyone, and the audit log and download records would lose the address. With
``BEHIND_TLS_PROXY=1`` the settings put this middleware first. The proxy appends the address it
accepted the connection from as the last X-Forwarded-For entry (deploy/nginx/ca-portal.conf
replaces the header with exactly that address); entries before it were written by the client and
are never used. Only a proxy can reach the web tier in that set-up (gunicorn listens on a socket
only nginx may open), the same trust the settings already give its X-Forwarded-Proto.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse


def client_address(forwarded_for: str) -> str | None:
    """The last entry of an X-Forwarded-For value if it is an IP address, else None."""
    last = forwarded_for.rsplit(",", 1)[-1].strip()
    try:
        return str(ipaddress.ip_address(last))
    except ValueError:
        return None


def forwarded_client_address(
    get_response: Callable[[HttpRequest], HttpResponse],
) -> Callable[[HttpRequest], HttpResponse]:
    def middleware(request: HttpRequest) -> HttpResponse:
        address = client_address(str(request.META.get("HTTP_X_FORWARDED_FOR", "")))
        if address is not None:
            request.META["REMOTE_ADDR"] = address
        return get_response(request)

    return middleware
