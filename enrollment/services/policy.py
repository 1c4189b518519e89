"""The site policy's write path: saved by CA admins, audited with what changed."""

from __future__ import annotations

from django.contrib.auth.models import User
from django.db import transaction

from authority.audit import audit_record
from authority.services import actor_name
from enrollment.models import SitePolicy
from enrollment.services.errors import EnrollmentError
from pki.errors import PkiError
from pki.names import validate_fqdn
from pki.profiles import MAX_LEAF_DAYS


def policy_update(
    *,
    allowed_domains: list[str],
    default_validity_days: int,
    allow_self_approval: bool,
    actor: User,
    auto_approve_renewals: bool | None = None,
) -> SitePolicy:
    """Save the site policy. ``auto_approve_renewals`` None leaves that setting as it is (and out of the audit)."""
    domains = []
    for raw in allowed_domains:
        domain = raw.strip().lower().lstrip(".")
        if not domain:
            continue
        try:
            validate_fqdn(domain)
        except PkiError as exc:
            raise EnrollmentError(f"{raw[:60]!r}: {exc}", field="allowed_domains") from None
        domains.append(domain)
    if not 1 <= default_validity_days <= MAX_LEAF_DAYS:
        raise EnrollmentError(f"the validity must be between 1 and {MAX_LEAF_DAYS} days", field="default_validity_days")
    with transaction.atomic():
        policy = SitePolicy.objects.select_for_update().get_or_create(pk=1)[0]
        before: dict[str, object] = {
            "allowed_domains": policy.allowed_domains,
            "default_validity_days": policy.default_validity_days,
            "allow_self_approval": policy.allow_self_approval,
        }
        if auto_approve_renewals is not None:
            before["auto_approve_renewals"] = policy.auto_approve_renewals
            policy.auto_approve_renewals = auto_approve_renewals
        policy.allowed_domains = sorted(set(domains))
        policy.default_validity_days = default_validity_days
        policy.allow_self_approval = allow_self_approval
        policy.updated_by = actor
        policy.save()
        after: dict[str, object] = {
            "allowed_domains": policy.allowed_domains,
            "default_validity_days": policy.default_validity_days,
            "allow_self_approval": policy.allow_self_approval,
        }
        if auto_approve_renewals is not None:
            after["auto_approve_renewals"] = policy.auto_approve_renewals
        audit_record("policy.updated", actor=actor_name(actor), target="policy", before=before, after=after)
    return policy
