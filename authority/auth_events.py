"""Sign-ins, sign-outs and failed sign-ins go into the audit log (ASVS 16.3.1).

Django announces these through its auth signals; that is the one place we listen to signals.
A failed sign-in is recorded in its own transaction, so it is kept even though no business
transaction follows it.
"""

from __future__ import annotations

import time
from typing import Any

from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed
from django.http import HttpRequest

from authority.audit import audit_record

MAX_NAME = 150


def _address(request: HttpRequest | None) -> str:
    return str(request.META.get("REMOTE_ADDR", "")) if request is not None else ""


def _logged_in(sender: Any, request: HttpRequest | None, user: Any, **_: Any) -> None:
    if request is not None and hasattr(request, "session"):
        from authority.middleware import LOGIN_AT_KEY

        request.session[LOGIN_AT_KEY] = time.time()  # the start of the absolute session timeout
    audit_record("auth.login", actor=f"user:{user.get_username()}", target=f"user:{user.pk}", address=_address(request))


def _logged_out(sender: Any, request: HttpRequest | None, user: Any, **_: Any) -> None:
    if user is not None:
        audit_record(
            "auth.logout", actor=f"user:{user.get_username()}", target=f"user:{user.pk}", address=_address(request)
        )


def _login_failed(sender: Any, credentials: dict[str, Any], request: HttpRequest | None = None, **_: Any) -> None:
    name = str(credentials.get("username", ""))[:MAX_NAME]
    audit_record("auth.login_failed", actor="anonymous", target=f"username:{name}", address=_address(request))


def connect() -> None:
    user_logged_in.connect(_logged_in, dispatch_uid="ca_portal_audit_login")
    user_logged_out.connect(_logged_out, dispatch_uid="ca_portal_audit_logout")
    user_login_failed.connect(_login_failed, dispatch_uid="ca_portal_audit_login_failed")
