"""Audit completeness: role changes become events, and a scheduled check proves the chain intact.

- Group membership (the ``ca-admin`` and ``auditor`` roles) and the superuser/active flags are
  recorded whenever they change, by whatever path (admin site, shell, migrations of users).
- ``audit_check`` runs from Celery beat: it verifies the whole chain, stores the result and, when
  the chain was intact at the last check and is broken now, mails every CA admin that has an
  address. The admin pages show a banner while the latest check failed.
"""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.contrib.auth.models import Group, User
from django.core.mail import send_mail
from django.db.models.signals import m2m_changed, pre_save

from authority.audit import audit_record, audit_verify
from authority.models import AuditCheck
from core.roles import CA_ADMIN

log = logging.getLogger(__name__)
WATCHED_FLAGS = ("is_superuser", "is_active", "is_staff")


def _groups_changed(sender: Any, instance: Any, action: str, pk_set: set[int] | None, reverse: bool, **_: Any) -> None:
    if action not in ("post_add", "post_remove", "pre_clear"):
        return
    if reverse:  # group.user_set.add(user): instance is the group
        users = (
            list(instance.user_set.all()) if action == "pre_clear" else list(User.objects.filter(pk__in=pk_set or ()))
        )
        groups = [instance]
    else:
        users = [instance]
        groups = (
            list(instance.groups.all()) if action == "pre_clear" else list(Group.objects.filter(pk__in=pk_set or ()))
        )
    verb = "role.granted" if action == "post_add" else "role.revoked"
    for user in users:
        for group in groups:
            audit_record(verb, actor="system", target=f"user:{user.pk}", username=user.get_username(), role=group.name)


def _flags_changed(sender: Any, instance: User, raw: bool = False, **_: Any) -> None:
    if raw or instance.pk is None:
        return
    before = User.objects.filter(pk=instance.pk).values(*WATCHED_FLAGS).first()
    if before is None:
        return
    changed = {flag: getattr(instance, flag) for flag in WATCHED_FLAGS if before[flag] != getattr(instance, flag)}
    if changed:
        audit_record(
            "user.flags_changed",
            actor="system",
            target=f"user:{instance.pk}",
            username=instance.get_username(),
            **changed,
        )


def connect() -> None:
    m2m_changed.connect(_groups_changed, sender=User.groups.through, dispatch_uid="ca_portal_audit_roles")
    pre_save.connect(_flags_changed, sender=User, dispatch_uid="ca_portal_audit_user_flags")


def audit_check() -> AuditCheck:
    """Verify the chain, store the result, alert the CA admins when it has just broken."""
    previous = AuditCheck.objects.order_by("-checked_at", "-pk").first()
    result = audit_verify()
    check = AuditCheck.objects.create(
        ok=result.ok, events=result.count, first_bad_seq=result.first_bad_seq, problem=result.problem[:300]
    )
    if not result.ok and (previous is None or previous.ok):
        log.error("the audit chain is broken at event %s: %s", result.first_bad_seq, result.problem)
        recipients = sorted(
            User.objects.filter(groups__name=CA_ADMIN, is_active=True).exclude(email="").values_list("email", flat=True)
        )
        if recipients:
            send_mail(
                "ca_portal: the audit log is broken",
                f"The scheduled check found the audit chain broken at event {result.first_bad_seq}: "
                f"{result.problem}\n\nRun `manage.py audit_verify` on the CA host and compare with your backups.\n"
                f"{settings.SITE_URL}/audit/log/\n",
                None,
                recipients,
            )
    return check


def latest_check_failed() -> AuditCheck | None:
    latest = AuditCheck.objects.order_by("-checked_at", "-pk").first()
    return latest if latest is not None and not latest.ok else None
