"""On PostgreSQL the database refuses to change or delete an audit event (docs/security.md T31)."""

from __future__ import annotations

import pytest
from django.db import DatabaseError, connection, transaction

from authority.audit import audit_record, audit_verify
from authority.models import AuditEvent

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _postgresql_only() -> None:
    if connection.vendor != "postgresql":
        pytest.skip("the append-only trigger is PostgreSQL's (make test runs this file there too)")


def test_events_are_appended_but_never_changed_or_deleted() -> None:
    for n in range(3):
        audit_record("test.event", actor="user:alice", target=f"thing:{n}", n=n)

    with pytest.raises(DatabaseError, match="append-only: UPDATE"), transaction.atomic():
        AuditEvent.objects.filter(seq=2).update(data={"n": 99})
    with pytest.raises(DatabaseError, match="append-only: DELETE"), transaction.atomic():
        AuditEvent.objects.filter(seq=3).delete()
    event = AuditEvent.objects.get(seq=1)
    event.actor = "user:mallory"
    with pytest.raises(DatabaseError, match="append-only: UPDATE"), transaction.atomic():
        event.save()

    assert list(AuditEvent.objects.order_by("seq").values_list("data", flat=True)) == [{"n": 0}, {"n": 1}, {"n": 2}]
    assert audit_verify().ok
    audit_record("test.event", actor="user:alice", target="thing:3", n=3)  # appending still works
    assert audit_verify().count == 4
