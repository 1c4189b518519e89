from __future__ import annotations

from typing import Any

from django.http import HttpRequest

from core.roles import is_auditor, is_ca_admin


def portal(request: HttpRequest) -> dict[str, Any]:
    """Role flags for the navigation, and the legacy-CA warning that every page must show."""
    from authority.services import active_ca

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
    """The legacy-suite warning (every page) and, for CA admins, whether the gateway needs new files."""
    from bundles import selectors, services

    profile = services.profile_get()
    flags: dict[str, Any] = {"legacy_suite_warning": profile.legacy_allowed and profile.suite.startswith("legacy")}
    if admin:
        from authority.revocation import crl_health
        from bundles.sync import gateway_sync_state

        gateway = services.gateway_peer(profile)
        needs = selectors.gateway_state(profile, gateway).needs_update
        if needs:  # a gateway that syncs fetches new files itself; its page says when
            state = gateway_sync_state(gateway)
            needs = not state.current and not (state.on and not state.silent)
        flags["gateway_needs_update"] = needs
        from authority.audit_watch import latest_check_failed

        flags["crl_warning"] = crl_health().warning
        flags["audit_broken"] = latest_check_failed()
    return flags
