"""The two roles of docs/architecture.md, as Django groups made by a migration. Superusers count as ca-admin."""

from __future__ import annotations

from typing import Any

CA_ADMIN = "ca-admin"
AUDITOR = "auditor"


def _in_group(user: Any, name: str) -> bool:
    if not getattr(user, "is_authenticated", False) or not user.is_active:
        return False
    cache = getattr(user, "_ca_portal_groups", None)
    if cache is None:
        cache = set(user.groups.values_list("name", flat=True))
        user._ca_portal_groups = cache
    return name in cache


def is_ca_admin(user: Any) -> bool:
    return bool(getattr(user, "is_superuser", False) and user.is_active) or _in_group(user, CA_ADMIN)


def is_auditor(user: Any) -> bool:
    return _in_group(user, AUDITOR)


def role_names(user: Any) -> list[str]:
    roles = []
    if is_ca_admin(user):
        roles.append(CA_ADMIN)
    if is_auditor(user):
        roles.append(AUDITOR)
    return roles
