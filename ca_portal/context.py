"""The context processor of every page: role flags for the navigation and the site-wide warnings.

It runs on every rendered page, so it stays cheap: for everyone, one read of the active CA and one
of the site profile (never a write); for CA admins only, the number of requests waiting for approval
(one COUNT, for the navigation), the gateway banner (one query when the gateway is found at once),
the CRL's health and the latest audit check. A page renders one template
with the request, so the processor runs once per request and a per-request cache would save nothing.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest

from authority.audit_watch import latest_check_failed
from authority.revocation import crl_health
from authority.services import active_ca
from bundles import gateway_selectors, selectors
from core.roles import is_auditor, is_ca_admin
from enrollment.selectors import pending_approvals_count


def portal(request: HttpRequest) -> dict[str, Any]:
    """Role flags for the navigation, and the legacy-CA warning that every page must show."""
    user = getattr(request, "user", None)
    ca = active_ca()
    admin = is_ca_admin(user)
    return {
        **_bundle_flags(admin),
        "is_ca_admin": admin,
        "is_auditor": is_auditor(user),
        "portal_ca": ca,
        "legacy_ca_warning": "; ".join(ca.legacy_reasons) if ca is not None and ca.is_legacy else "",
    }


def _bundle_flags(admin: bool) -> dict[str, Any]:
    """The legacy-suite warning (every page) and, for CA admins, the requests waiting for approval,
    whether the gateway needs new files, the CRL warning and a failed audit check."""
    profile = selectors.profile_get()
    flags: dict[str, Any] = {"legacy_suite_warning": profile.legacy_allowed and profile.suite.startswith("legacy")}
    if admin:
        flags["pending_approvals"] = pending_approvals_count()
        flags["gateway_needs_update"] = gateway_selectors.gateway_needs_update(profile)
        flags["crl_warning"] = crl_health().warning
        flags["audit_broken"] = latest_check_failed()
    return flags
