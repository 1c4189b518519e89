from __future__ import annotations

from typing import Any

from django.http import HttpRequest

from ca_portal.authority.roles import is_auditor, is_ca_admin


def portal(request: HttpRequest) -> dict[str, Any]:
    """Role flags for the navigation, and the legacy-CA warning that every page must show."""
    from ca_portal.authority.services import active_ca

    user = getattr(request, "user", None)
    ca = active_ca()
    return {
        "is_ca_admin": is_ca_admin(user),
        "is_auditor": is_auditor(user),
        "portal_ca": ca,
        "legacy_ca_warning": "; ".join(ca.legacy_reasons) if ca is not None and ca.is_legacy else "",
    }
