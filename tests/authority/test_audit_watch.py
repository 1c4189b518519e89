"""Role changes are audit events; the scheduled chain check stores its result and alerts on a break."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import Group, User
from django.core import mail
from django.test import Client

from authority.audit import audit_record
from authority.audit_watch import audit_check, latest_check_failed
from authority.models import AuditCheck, AuditEvent
from tests.conftest import login

pytestmark = pytest.mark.django_db


def _events(action: str) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action=action).order_by("seq"))


def test_granting_and_revoking_a_role_are_events(owner: Any) -> None:
    admins = Group.objects.get(name="ca-admin")

    owner.groups.add(admins)
    owner.groups.remove(admins)
    admins.user_set.add(owner)
    owner.groups.clear()

    granted = _events("role.granted")
    revoked = _events("role.revoked")
    assert [(e.target, e.data["role"]) for e in granted] == [(f"user:{owner.pk}", "ca-admin")] * 2
    assert [(e.target, e.data["role"]) for e in revoked] == [(f"user:{owner.pk}", "ca-admin")] * 2


def test_superuser_and_active_flags_are_events(owner: Any) -> None:
    owner.is_superuser = True
    owner.save()
    owner.is_active = False
    owner.save()
    owner.first_name = "Alice"
    owner.save()  # not a security flag: no event

    changes = [e.data for e in _events("user.flags_changed")]
    assert changes == [
        {"username": "alice", "is_superuser": True},
        {"username": "alice", "is_active": False},
    ]


def test_the_scheduled_check_records_ok(owner: Any) -> None:
    check = audit_check()

    assert check.ok
    assert check.events == AuditEvent.objects.count()
    assert latest_check_failed() is None


@pytest.mark.usefixtures("audit_tamperable")
def test_a_broken_chain_alerts_the_ca_admins_once(admin: Any, second_admin: Any) -> None:
    User.objects.filter(pk=second_admin.pk).update(email="")
    audit_record("test.event", actor="test", target="x:1")
    audit_check()
    victim = AuditEvent.objects.order_by("seq")[1]
    AuditEvent.objects.filter(pk=victim.pk).update(data={"forged": True})

    first = audit_check()
    second = audit_check()

    assert not first.ok
    assert first.first_bad_seq == victim.seq
    assert not second.ok
    assert len(mail.outbox) == 1  # on the transition only, to admins with an address
    assert mail.outbox[0].to == [admin.email]
    assert str(victim.seq) in mail.outbox[0].body
    assert AuditCheck.objects.count() == 3


@pytest.mark.usefixtures("audit_tamperable")
def test_admin_pages_show_a_broken_chain(admin: Any) -> None:
    AuditEvent.objects.filter(seq=1).update(actor="someone else")
    audit_check()
    client = Client()
    login(client, admin)

    assert 'id="audit-broken"' in client.get("/peers/").content.decode()
