"""Revocation, the CRL the signer makes, /crl.pem and /crl.der, and the renewal schedule (issue 5)."""

from __future__ import annotations

import subprocess
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from django.test import Client
from django.utils import timezone

from authority import keystore
from authority.models import AuditEvent, Certificate, CertificateAuthority, Crl
from authority.revocation import (
    RevocationError,
    certificate_revoke,
    crl_health,
    crl_publish,
    crl_renew_if_due,
)
from authority.services import certificate_issue, certificate_request_create
from tests.conftest import fixture_bytes
from tests.unit.test_crl import pkilint_crl_findings

pytestmark = pytest.mark.django_db

CSR = fixture_bytes("client-nocn.csr").decode()


def _issue(fqdn: str) -> Certificate:
    request = certificate_request_create(
        fqdn=fqdn,
        kind="client",
        csr_pem=CSR,
        validity_days=None,
        requested_by=None,
        approved_by=None,
        actor="test",
        enqueue=False,
    )
    certificate = certificate_issue(request_id=request.pk)
    assert certificate is not None
    return certificate


def _actions() -> list[str]:
    return list(AuditEvent.objects.order_by("seq").values_list("action", flat=True))


def test_it_revokes_once_with_a_reason_and_an_audit_event(ca: CertificateAuthority) -> None:
    certificate = _issue("lost.example.com")

    revoked = certificate_revoke(certificate_id=certificate.pk, reason="keyCompromise", actor="user:carol")

    assert revoked.revoked_at is not None
    assert revoked.revocation_reason == "keyCompromise"
    assert revoked.revoked_by == "user:carol"
    event = AuditEvent.objects.get(action="certificate.revoked")
    assert event.target == f"certificate:{certificate.serial}"
    assert event.data["reason"] == "keyCompromise"
    with pytest.raises(RevocationError, match="already revoked") as again:
        certificate_revoke(certificate_id=certificate.pk, reason="superseded", actor="user:dave")
    assert again.value.status == 409
    certificate.refresh_from_db()
    assert certificate.revocation_reason == "keyCompromise"
    assert _actions().count("certificate.revoked") == 1


@pytest.mark.parametrize("reason", ["", "certificateHold", "removeFromCRL", "KeyCompromise", "x" * 100])
def test_it_refuses_reasons_outside_rfc_5280s_list(ca: CertificateAuthority, reason: str) -> None:
    certificate = _issue("lost.example.com")

    with pytest.raises(RevocationError) as refused:
        certificate_revoke(certificate_id=certificate.pk, reason=reason, actor="test")

    assert refused.value.status == 400
    certificate.refresh_from_db()
    assert certificate.revoked_at is None


def _write(tmp_path: Path, name: str, data: str) -> str:
    path = tmp_path / name
    path.write_text(data)
    return str(path)


def test_the_crl_lists_revoked_certificates_and_openssl_honours_it(ca: CertificateAuthority, tmp_path: Path) -> None:
    lost = _issue("lost.example.com")
    kept = _issue("kept.example.com")
    certificate_revoke(certificate_id=lost.pk, reason="keyCompromise", actor="test")

    crl = crl_publish(trigger="revocation")

    parsed = x509.load_der_x509_crl(bytes(crl.der))
    findings = pkilint_crl_findings(bytes(crl.der))
    assert findings["errors"] == [], f"warnings: {findings['warnings']}"
    assert crl.number == 1
    assert crl.entries == 1
    assert parsed.get_revoked_certificate_by_serial_number(int(lost.serial, 16)) is not None
    assert parsed.get_revoked_certificate_by_serial_number(int(kept.serial, 16)) is None
    ca_file = _write(tmp_path, "ca.pem", ca.certificate_pem)
    crl_file = _write(tmp_path, "crl.pem", crl.pem)
    checked = subprocess.run(
        ["openssl", "crl", "-in", crl_file, "-CAfile", ca_file, "-noout"], capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stderr
    assert "verify OK" in checked.stdout + checked.stderr
    for certificate, ok in ((lost, False), (kept, True)):
        leaf = _write(tmp_path, f"{certificate.fqdn}.pem", certificate.pem)
        result = subprocess.run(
            ["openssl", "verify", "-crl_check", "-CAfile", ca_file, "-CRLfile", crl_file, leaf],
            capture_output=True,
            text=True,
        )
        assert (result.returncode == 0) is ok, result.stdout + result.stderr
        if not ok:
            assert "certificate revoked" in result.stdout + result.stderr
    assert "crl.published" in _actions()


def test_crl_numbers_only_grow_and_expired_entries_drop_off(ca: CertificateAuthority) -> None:
    old = _issue("old.example.com")
    certificate_revoke(certificate_id=old.pk, reason="superseded", actor="test")
    first = crl_publish()
    Certificate.objects.filter(pk=old.pk).update(not_after=timezone.now() - timedelta(days=1))

    second = crl_publish()

    for made in (first, second):
        assert pkilint_crl_findings(bytes(made.der))["errors"] == []
    assert (first.number, second.number) == (1, 2)
    assert (first.entries, second.entries) == (1, 0)
    assert (
        x509.load_der_x509_crl(bytes(second.der)).extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
        == 2
    )


def test_the_web_tier_cannot_make_a_crl(ca: CertificateAuthority, monkeypatch: pytest.MonkeyPatch) -> None:
    # What gunicorn is: a process that never called keystore.enable_signing() and holds no key.
    keystore.forget_keys()
    monkeypatch.setattr(keystore, "_signing_enabled", False)

    with pytest.raises(keystore.SignerUnavailable):
        crl_publish()

    assert not Crl.objects.exists()
    assert "crl.published" not in _actions()


def test_the_schedule_makes_a_first_crl_then_renews_it_daily(ca: CertificateAuthority) -> None:
    now = timezone.now()

    first = crl_renew_if_due(now=now)
    fresh = crl_renew_if_due(now=now + timedelta(hours=23, minutes=59))
    renewed = crl_renew_if_due(now=now + timedelta(hours=24))

    assert first is not None
    assert fresh is None
    assert renewed is not None
    assert renewed.number == 2
    # Valid for 30 days, renewed every day: a peer that fetched it survives four weeks without the portal.
    assert renewed.next_update - renewed.this_update == timedelta(days=30)


def test_the_schedule_renews_at_half_life_when_that_comes_first(ca: CertificateAuthority, settings: Any) -> None:
    settings.CRL_VALIDITY_DAYS = 1
    settings.CRL_RENEW_HOURS = 48
    now = timezone.now()

    assert crl_renew_if_due(now=now) is not None
    assert crl_renew_if_due(now=now + timedelta(hours=11, minutes=59)) is None
    assert crl_renew_if_due(now=now + timedelta(hours=12)) is not None


def test_the_dashboard_warns_before_the_crl_runs_out(ca: CertificateAuthority) -> None:
    now = timezone.now()
    assert "No CRL" in crl_health(now=now).warning
    crl = crl_publish(now=now)

    assert crl_health(now=now + timedelta(days=1)).ok
    assert "not renewed" in crl_health(now=crl.next_update - timedelta(hours=12)).warning
    assert "expired" in crl_health(now=crl.next_update + timedelta(minutes=1)).warning


def test_crl_pem_and_der_are_public(ca: CertificateAuthority) -> None:
    client = Client()
    assert client.get("/crl.pem").status_code == 404
    crl = crl_publish()

    pem = client.get("/crl.pem")
    der = client.get("/crl.der")

    assert pem.status_code == der.status_code == 200
    assert der["Content-Type"] == "application/pkix-crl"
    assert bytes(der.content) == bytes(crl.der)
    assert pem.content.decode() == crl.pem
    assert der["X-CRL-Number"] == "1"
    assert x509.load_pem_x509_crl(pem.content).is_signature_valid(
        x509.load_pem_x509_certificate(ca.certificate_pem.encode()).public_key()  # type: ignore[arg-type]
    )
