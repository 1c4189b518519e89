"""services.certificates_issue_pending: the signer's batched drain, and the debounced wakeup."""

from __future__ import annotations

from typing import Any

import pytest
from cryptography import x509

from authority import issuance, keystore, services, task_names
from authority.audit import audit_verify
from authority.models import (
    AuditEvent,
    Certificate,
    CertificateAuthority,
    CertificateRequest,
    IssuanceIntent,
    TaskWakeup,
)
from authority.services import certificate_request_create, certificates_issue_pending, signer_wakeup
from ca_portal import celery as portal_celery
from tests.conftest import fixture_bytes

pytestmark = pytest.mark.django_db

CSR = fixture_bytes("client-nocn.csr").decode()


def _requests(count: int, prefix: str = "host") -> list[CertificateRequest]:
    return [
        certificate_request_create(
            fqdn=f"{prefix}{i}.example.com",
            kind="client",
            csr_pem=CSR,
            validity_days=30,
            requested_by=None,
            approved_by=None,
            actor="test",
            enqueue=False,
        )
        for i in range(count)
    ]


def _assert_issued_as_recorded(ca: CertificateAuthority) -> None:
    for cert in Certificate.objects.select_related("request__intent"):
        parsed = x509.load_der_x509_certificate(bytes(cert.der))
        intent = cert.request.intent
        assert cert.serial == intent.serial == format(parsed.serial_number, "x")
        assert parsed.tbs_certificate_bytes == bytes(intent.tbs_der)
        parsed.verify_directly_issued_by(ca.certificate)


def test_it_issues_every_pending_request_in_batches(ca: CertificateAuthority) -> None:
    _requests(7)

    assert certificates_issue_pending(batch=3) == 7

    assert set(CertificateRequest.objects.values_list("status", flat=True)) == {"issued"}
    assert Certificate.objects.count() == IssuanceIntent.objects.count() == 7
    assert len(set(Certificate.objects.values_list("serial", flat=True))) == 7
    _assert_issued_as_recorded(ca)
    actions = list(AuditEvent.objects.values_list("action", flat=True))
    assert actions.count("certificate.intent") == actions.count("certificate.issued") == 7
    assert audit_verify().ok


def test_it_does_nothing_the_second_time(ca: CertificateAuthority) -> None:
    _requests(2)
    certificates_issue_pending()
    events = AuditEvent.objects.count()

    assert certificates_issue_pending() == 0
    assert Certificate.objects.count() == 2
    assert AuditEvent.objects.count() == events


def test_it_signs_recorded_intents_with_their_serials_after_a_crash(
    ca: CertificateAuthority, monkeypatch: pytest.MonkeyPatch
) -> None:
    _requests(3)

    def crash(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("the worker died while signing")

    monkeypatch.setattr(issuance, "sign", crash)
    with pytest.raises(RuntimeError):
        certificates_issue_pending()
    recorded = dict(IssuanceIntent.objects.values_list("request_id", "serial"))
    assert len(recorded) == 3
    assert Certificate.objects.count() == 0
    assert set(CertificateRequest.objects.values_list("status", flat=True)) == {"signing"}

    monkeypatch.undo()
    assert certificates_issue_pending() == 3

    assert dict(Certificate.objects.values_list("request_id", "serial")) == recorded
    assert IssuanceIntent.objects.count() == 3, "a retry never allocates a second serial"
    _assert_issued_as_recorded(ca)


def test_it_fails_one_request_and_issues_the_rest(ca: CertificateAuthority, monkeypatch: pytest.MonkeyPatch) -> None:
    first, second, third = _requests(3)
    # Record the intents, then alter one recorded TBS hash behind the portal's back.
    monkeypatch.setattr(issuance, "sign", lambda *a: (_ for _ in ()).throw(RuntimeError("stop")))
    with pytest.raises(RuntimeError):
        certificates_issue_pending()
    monkeypatch.undo()
    IssuanceIntent.objects.filter(request=second).update(tbs_sha256="0" * 64)

    assert certificates_issue_pending() == 3

    statuses = dict(CertificateRequest.objects.values_list("pk", "status"))
    assert statuses == {first.pk: "issued", second.pk: "failed", third.pk: "issued"}
    second.refresh_from_db()
    assert "altered" in second.failure_reason
    assert not Certificate.objects.filter(request=second).exists()
    assert AuditEvent.objects.filter(action="certificate.failed", target=f"request:{second.pk}").count() == 1
    assert audit_verify().ok


def test_a_web_process_records_nothing(ca: CertificateAuthority) -> None:
    _requests(2)
    keystore._signing_enabled = False
    keystore.forget_keys()

    with pytest.raises(keystore.SignerUnavailable):
        certificates_issue_pending()

    assert IssuanceIntent.objects.count() == 0
    assert set(CertificateRequest.objects.values_list("status", flat=True)) == {"pending"}


def test_a_burst_of_requests_wakes_the_signer_once(ca: CertificateAuthority, monkeypatch: pytest.MonkeyPatch) -> None:
    sent: list[str] = []
    monkeypatch.setattr(portal_celery.app, "send_task", lambda name, **kw: sent.append(name))

    for _ in range(5):
        assert signer_wakeup()
    assert sent == [task_names.CERTIFICATES_ISSUE_PENDING]
    assert TaskWakeup.objects.get(name=task_names.CERTIFICATES_ISSUE_PENDING).pending

    certificates_issue_pending()  # the drain clears the flag before it looks for work
    assert not TaskWakeup.objects.get(name=task_names.CERTIFICATES_ISSUE_PENDING).pending
    signer_wakeup()
    assert len(sent) == 2


def test_the_sweeper_wakes_the_signer_even_when_a_wakeup_seems_pending(
    ca: CertificateAuthority, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A wakeup whose message was lost (a killed worker, a broker that was down) must not block
    issuance forever: the sweeper sends one regardless of the flag."""
    sent: list[str] = []
    monkeypatch.setattr(portal_celery.app, "send_task", lambda name, **kw: sent.append(name))
    _requests(2)
    TaskWakeup.objects.update_or_create(name=task_names.CERTIFICATES_ISSUE_PENDING, defaults={"pending": True})

    from datetime import timedelta

    assert services.requests_requeue_stale(older_than=timedelta(0)) == 2
    assert sent == [task_names.CERTIFICATES_ISSUE_PENDING]
