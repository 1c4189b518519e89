"""/readyz: each check named with ok/detail, 200 only when all pass; /healthz only says the process answers."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import pytest
from django.db import DatabaseError
from django.test import Client
from django.utils import timezone

from authority.health import crl_check, requests_check, signer_check
from authority.models import CertificateRequest, SignerHeartbeat
from core import health
from tests.conftest import login

CHECKS = {"database", "broker", "signer", "crl", "requests"}


def test_it_is_ready_when_every_check_passes(client: Client, heartbeat: Any, fresh_crl: Any) -> None:
    response = client.get("/readyz")

    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["status"] == "ready"
    assert set(body["checks"]) == CHECKS
    assert all(check["ok"] for check in body["checks"].values())
    assert all(isinstance(check["detail"], str) and check["detail"] for check in body["checks"].values())
    assert response["Cache-Control"].startswith("max-age=0")


def test_it_needs_no_login_and_is_not_held_by_the_admin_otp(client: Client, admin: Any, heartbeat: Any) -> None:
    client.force_login(admin)  # a CA admin who has not passed two-factor is redirected everywhere else

    assert client.get("/readyz").status_code in {200, 503}
    assert client.get("/ca/").status_code == 302


def test_it_is_not_ready_without_a_signer_heartbeat(client: Client, fresh_crl: Any) -> None:
    response = client.get("/readyz")

    assert response.status_code == 503
    assert response.json()["status"] == "not ready"
    assert response.json()["checks"]["signer"] == {
        "ok": False,
        "detail": "no signer worker has ever sent a heartbeat",
    }
    assert response.json()["checks"]["crl"]["ok"] is True


def test_a_heartbeat_older_than_two_minutes_fails(heartbeat: Any) -> None:
    now = timezone.now()
    SignerHeartbeat.objects.update(seen_at=now - timedelta(seconds=119))
    assert signer_check(now=now).ok

    SignerHeartbeat.objects.update(seen_at=now - timedelta(seconds=121))
    check = signer_check(now=now)
    assert not check.ok
    assert "121 s ago" in check.detail
    assert "signer-1" not in check.detail  # no host names in an answer anyone can read


def test_a_signer_that_cannot_use_the_ca_key_is_not_ready(ca: Any) -> None:
    from authority import keystore
    from authority.heartbeat import signer_heartbeat_record

    keystore._signing_enabled = False  # a worker on the signer queue without its passphrase
    keystore.forget_keys()
    signer_heartbeat_record(worker="celery@web-1")

    check = signer_check()
    assert not check.ok
    assert "cannot use the CA key" in check.detail


def test_a_crl_past_three_quarters_of_its_life_fails(fresh_crl: Any) -> None:
    life = fresh_crl.next_update - fresh_crl.this_update

    assert crl_check(now=fresh_crl.this_update + life * 0.74).ok
    late = crl_check(now=fresh_crl.this_update + life * 0.76)
    assert not late.ok
    assert late.detail.startswith(f"CRL {fresh_crl.number}: 76% of its life used")
    assert not crl_check(now=fresh_crl.next_update + timedelta(hours=1)).ok


def test_a_ca_without_a_crl_is_not_ready(ca: Any) -> None:
    assert crl_check() == health.Check("crl", False, "no CRL has been published yet")


def test_no_ca_yet_needs_no_crl(db: Any) -> None:
    assert crl_check().ok


def test_a_request_waiting_longer_than_the_requeue_interval_fails(
    settings: Any, ca: Any, owner: Any, admin: Any
) -> None:
    from enrollment.services import peer_approve, peer_register_full
    from tests.bundles.conftest import ANY_CSR

    settings.CA_REQUEUE_AFTER_SECONDS = 60
    assert requests_check() == health.Check("requests", True, "none waiting")
    peer = peer_register_full(
        owner=owner, fqdn="laptop.example.org", kind="client", networks=[], address=None, csr_pem=ANY_CSR, actor=owner
    ).peer
    peer_approve(peer_id=peer.pk, approver=admin, actor=admin, enqueue=False)
    now = timezone.now()
    assert requests_check(now=now).ok

    # The sweeper moves queued_at each time it wakes the signer; the age counts from the approval.
    CertificateRequest.objects.update(created_at=now - timedelta(seconds=61), queued_at=now)
    check = requests_check(now=now)
    assert not check.ok
    assert check.detail == "1 waiting, the oldest for 61 s (more than 60 s)"


def test_a_check_that_raises_fails_without_saying_why(monkeypatch: pytest.MonkeyPatch, client: Client) -> None:
    def broken() -> health.Check:
        raise DatabaseError('could not connect to server at "db.internal" (10.0.0.5), password authentication')

    monkeypatch.setattr("authority.health.signer_check", broken)
    monkeypatch.setattr("authority.health.checks", lambda: [("signer", broken)])

    response = client.get("/readyz")

    assert response.status_code == 503
    assert response.json()["checks"]["signer"] == {"ok": False, "detail": "could not be checked (see the portal's log)"}
    assert b"db.internal" not in response.content
    assert b"10.0.0.5" not in response.content


def test_the_embedded_broker_answers(db: Any) -> None:
    check = health.broker_check()

    assert check.ok, check.detail
    assert check.detail.startswith("answers")


def test_a_broker_folder_that_is_gone_fails(settings: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    from celery._state import get_current_app

    app = get_current_app()
    options = dict(app.conf.broker_transport_options)
    monkeypatch.setitem(app.conf, "broker_transport_options", {**options, "data_folder_in": str(tmp_path / "gone")})

    check = health.broker_check()

    assert not check.ok
    assert check.detail == "the broker does not answer"
    assert str(tmp_path) not in check.detail


def test_a_redis_that_refuses_fails_at_once() -> None:
    from celery import Celery

    app = Celery("probe", broker="redis://127.0.0.1:9/0", set_as_current=False)  # discard port: refused
    started = time.monotonic()

    with pytest.raises(Exception, match=r"(?i)connect|refused"):
        health._probe_broker(app)

    assert time.monotonic() - started < 2


def test_a_broker_that_hangs_does_not_hold_the_request(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(health, "_probe_broker", lambda app: time.sleep(3))
    started = time.monotonic()

    check = health.broker_check(timeout=0.3)

    assert time.monotonic() - started < 1
    assert check == health.Check("broker", False, "no answer within 0.3 s")


def test_the_broker_check_in_readyz_fails_softly(monkeypatch: pytest.MonkeyPatch, client: Client) -> None:
    def refused(app: Any) -> None:
        raise ConnectionRefusedError("Error 111 connecting to redis.internal:6379. Connection refused.")

    monkeypatch.setattr(health, "_probe_broker", refused)

    response = client.get("/readyz")

    assert response.status_code == 503
    assert response.json()["checks"]["broker"] == {"ok": False, "detail": "the broker does not answer"}
    assert b"redis.internal" not in response.content


def test_readyz_takes_only_get(client: Client, admin: Any) -> None:
    login(client, admin)
    client.handler.enforce_csrf_checks = True

    assert client.post("/readyz").status_code == 403  # CSRF first, like every other URL
    assert Client().put("/readyz").status_code == 405


# --- /healthz ------------------------------------------------------------------------------------


def test_healthz_answers_while_the_database_does_not(monkeypatch: pytest.MonkeyPatch, client: Client, db: Any) -> None:
    def down(*args: Any, **kwargs: Any) -> None:
        raise DatabaseError("connection refused")

    monkeypatch.setattr("authority.views.active_ca", down)

    response = client.get("/healthz")

    assert response.status_code == 200
    assert response.json() == {"status": "ok", "ca": None}
