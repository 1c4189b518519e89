"""Sign-in: sessions (T27), lockout and its audit trail (T28), and TOTP for CA admins."""

from __future__ import annotations

import base64
import re
from datetime import timedelta
from typing import Any

import pytest
from django.conf import settings
from django.contrib.sessions.models import Session
from django.test import Client
from django.utils import timezone
from django_otp import DEVICE_ID_SESSION_KEY
from django_otp.oath import totp
from django_otp.plugins.otp_totp.models import TOTPDevice

from authority.models import AuditEvent
from tests.conftest import login

pytestmark = pytest.mark.django_db

PASSWORD = "correct horse battery"


def _sign_in(client: Client, username: str, password: str = PASSWORD, **extra: Any) -> Any:
    return client.post("/login/", {"username": username, "password": password}, **extra)


def _signed_in_as(client: Client, user: Any) -> bool:
    return client.session.get("_auth_user_id") == str(user.pk)


def _code(device: TOTPDevice, *, offset: int = 0) -> str:
    device.refresh_from_db()
    token = totp(device.bin_key, step=device.step, t0=device.t0, digits=device.digits, drift=device.drift + offset)
    return f"{token:0{device.digits}d}"


# --- sessions (T27) ---------------------------------------------------------------------------------


def test_the_session_key_rotates_on_sign_in(client: Client, owner: Any) -> None:
    planted = client.session  # a session made before sign-in, as a session-fixation attacker would plant it
    planted["planted"] = True
    planted.save()
    anonymous = planted.session_key
    assert client.cookies[settings.SESSION_COOKIE_NAME].value == anonymous

    response = _sign_in(client, "alice")

    assert response.status_code == 302
    after = client.cookies[settings.SESSION_COOKIE_NAME].value
    assert after != anonymous
    assert _signed_in_as(client, owner)
    assert not Session.objects.filter(session_key=anonymous).exists()
    replay = Client()
    replay.cookies[settings.SESSION_COOKIE_NAME] = anonymous
    assert replay.get("/peers/").status_code == 302


def test_the_session_expires_after_the_idle_timeout(client: Client, owner: Any) -> None:
    assert settings.SESSION_SAVE_EVERY_REQUEST is True
    assert settings.SESSION_COOKIE_AGE == 30 * 60
    assert settings.SESSION_EXPIRE_AT_BROWSER_CLOSE is False

    response = _sign_in(client, "alice")

    cookie = response.cookies[settings.SESSION_COOKIE_NAME]
    assert int(cookie["max-age"]) == settings.SESSION_COOKIE_AGE
    assert cookie["httponly"] is True
    assert cookie["samesite"] == "Lax"
    assert client.session.get_expiry_age() == settings.SESSION_COOKIE_AGE
    stored = Session.objects.get(session_key=client.session.session_key)
    assert abs((stored.expire_date - timezone.now()) - timedelta(seconds=settings.SESSION_COOKIE_AGE)) < timedelta(
        seconds=5
    )


def test_each_request_pushes_the_idle_timeout_back(client: Client, owner: Any) -> None:
    _sign_in(client, "alice")
    key = client.session.session_key
    Session.objects.filter(session_key=key).update(expire_date=timezone.now() + timedelta(seconds=60))

    response = client.get("/peers/")

    assert response.status_code == 200
    assert settings.SESSION_COOKIE_NAME in response.cookies  # re-sent with a fresh max-age
    expires = Session.objects.get(session_key=key).expire_date
    assert expires > timezone.now() + timedelta(seconds=settings.SESSION_COOKIE_AGE - 60)


def test_an_idle_session_is_sent_to_sign_in(client: Client, owner: Any) -> None:
    _sign_in(client, "alice")
    Session.objects.filter(session_key=client.session.session_key).update(
        expire_date=timezone.now() - timedelta(seconds=1)
    )

    response = client.get("/peers/")

    assert response.status_code == 302
    assert response["Location"] == "/login/?next=/peers/"


def test_an_active_session_ends_after_the_absolute_timeout(client: Client, owner: Any) -> None:
    """However busy the user is, a session ends SESSION_ABSOLUTE_SECONDS after sign-in (ASVS 7.3.2)."""
    from authority.middleware import LOGIN_AT_KEY

    _sign_in(client, "alice")
    assert client.get("/peers/").status_code == 200
    session = client.session
    session[LOGIN_AT_KEY] = session[LOGIN_AT_KEY] - settings.SESSION_ABSOLUTE_SECONDS - 1
    session.save()

    response = client.get("/peers/")

    assert response.status_code == 302
    assert response["Location"] == "/login/?next=/peers/"
    assert client.get("/peers/").status_code == 302, "the session is gone, not just this one request"


def test_the_old_cookie_is_dead_after_sign_out(client: Client, owner: Any) -> None:
    _sign_in(client, "alice")
    old = client.cookies[settings.SESSION_COOKIE_NAME].value

    assert client.post("/logout/").status_code == 302

    replay = Client()
    replay.cookies[settings.SESSION_COOKIE_NAME] = old
    response = replay.get("/peers/")
    assert response.status_code == 302
    assert response["Location"] == "/login/?next=/peers/"
    assert not Session.objects.filter(session_key=old).exists()
    logout = AuditEvent.objects.get(action="auth.logout")
    assert (logout.actor, logout.target) == ("user:alice", f"user:{owner.pk}")


@pytest.mark.parametrize("persona", ["owner", "admin", "auditor"])
def test_a_deactivated_users_live_session_is_refused(client: Client, persona: str, request: Any) -> None:
    user = request.getfixturevalue(persona)
    login(client, user)
    assert client.get("/peers/").status_code == 200

    user.is_active = False
    user.save()

    response = client.get("/peers/")
    assert response.status_code == 302
    assert response["Location"] == "/login/?next=/peers/"
    assert client.get("/peers/1/status.json").status_code == 302


# --- sign-in audit and lockout (T28) ----------------------------------------------------------------


def test_a_sign_in_is_audited(client: Client, owner: Any) -> None:
    _sign_in(client, "alice")

    event = AuditEvent.objects.get()
    assert (event.action, event.actor, event.target) == ("auth.login", "user:alice", f"user:{owner.pk}")
    assert event.data == {"address": "127.0.0.1"}


def test_a_failed_sign_in_is_audited_without_the_password(client: Client, owner: Any) -> None:
    response = _sign_in(client, "alice", "Tr0ub4dor&3")

    assert response.status_code == 200
    event = AuditEvent.objects.get()
    assert (event.action, event.actor, event.target) == ("auth.login_failed", "anonymous", "username:alice")
    assert event.data == {"address": "127.0.0.1"}
    assert "Tr0ub4dor" not in str(event.data)


def test_a_failed_sign_in_for_an_unknown_user_is_audited(client: Client) -> None:
    _sign_in(client, "nobody")

    assert AuditEvent.objects.get().target == "username:nobody"


def test_five_failures_lock_the_account_for_that_address(client: Client, owner: Any, other_user: Any) -> None:
    assert settings.AXES_FAILURE_LIMIT == 5
    statuses = [_sign_in(client, "alice", f"wrong {n}").status_code for n in range(5)]

    assert statuses == [200, 200, 200, 200, 429]  # the fifth failure already answers with the lockout

    response = _sign_in(client, "alice")  # the right password, sixth attempt
    assert response.status_code == 429
    assert "Too many failed sign-ins" in response.content.decode()
    assert "registration/locked_out.html" in [t.name for t in response.templates]
    assert "_auth_user_id" not in client.session
    assert client.get("/peers/").status_code == 302

    failures = AuditEvent.objects.filter(action="auth.login_failed")
    assert failures.count() == 6  # the five failures and the refused sixth attempt
    assert {(e.target, e.data["address"]) for e in failures} == {("username:alice", "127.0.0.1")}
    assert not AuditEvent.objects.filter(action="auth.login").exists()

    # Another user from the same address is not locked, nor is alice from another address.
    assert _sign_in(client, "mallory").status_code == 302
    assert _signed_in_as(client, other_user)
    elsewhere = Client()
    assert _sign_in(elsewhere, "alice", REMOTE_ADDR="198.51.100.7").status_code == 302
    assert _signed_in_as(elsewhere, owner)


def test_a_success_before_the_limit_resets_the_count(client: Client, owner: Any) -> None:
    for n in range(4):
        _sign_in(client, "alice", f"wrong {n}")
    assert _sign_in(client, "alice").status_code == 302
    client.post("/logout/")

    statuses = [_sign_in(client, "alice", f"wrong again {n}").status_code for n in range(4)]

    assert statuses == [200, 200, 200, 200]
    assert _sign_in(client, "alice").status_code == 302


# --- TOTP for CA admins --------------------------------------------------------------------------


@pytest.mark.parametrize("url", ["/", "/peers/", "/peers/approvals/", "/ca/", "/peers/new/?x=1"])
def test_an_admin_without_a_device_is_sent_to_set_one_up(client: Client, admin: Any, url: str) -> None:
    assert _sign_in(client, "carol").status_code == 302

    response = client.get(url)

    assert response.status_code == 302
    assert response["Location"].startswith("/otp/setup/?next=")
    assert client.get(response["Location"]).status_code == 200


def test_an_admin_with_a_device_is_sent_to_verify(client: Client, admin: Any) -> None:
    TOTPDevice.objects.create(user=admin, name="phone", confirmed=True)
    _sign_in(client, "carol")

    response = client.get("/peers/approvals/")

    assert response.status_code == 302
    assert response["Location"] == "/otp/verify/?next=%2Fpeers%2Fapprovals%2F"
    assert client.get("/otp/setup/?next=/peers/").status_code == 302  # no second device


def test_an_admin_without_otp_cannot_decide(client: Client, admin: Any, owner: Any) -> None:
    _sign_in(client, "carol")

    response = client.post("/peers/approvals/bulk-approve/", {"peer": ["1"]})

    assert response.status_code == 302
    assert response["Location"].startswith("/otp/setup/")


def test_an_admin_without_otp_gets_403_from_the_api(client: Client, admin: Any) -> None:
    _sign_in(client, "carol")

    response = client.get("/api/v1/peers")

    assert response.status_code == 403
    assert "two-factor" in response.json()["errors"]["__all__"][0]


def test_setting_up_a_device_shows_a_qr_code_and_the_secret_then_lets_the_admin_in(client: Client, admin: Any) -> None:
    _sign_in(client, "carol")

    response = client.get("/otp/setup/?next=/peers/approvals/")

    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    page = response.content.decode()
    assert "<svg" in page
    device = TOTPDevice.objects.get(user=admin)
    assert device.confirmed is False
    secret = re.search(r'<code class="wrap" id="otp-secret">([A-Z2-7]+)</code>', page)
    assert secret is not None
    assert base64.b32decode(secret.group(1) + "=" * (-len(secret.group(1)) % 8)) == device.bin_key
    assert 'name="next" value="/peers/approvals/"' in page
    # Reloading the page keeps the same unconfirmed device (the QR code already scanned stays valid).
    client.get("/otp/setup/")
    assert TOTPDevice.objects.filter(user=admin).count() == 1

    response = client.post("/otp/setup/", {"token": _code(device), "next": "/peers/approvals/"})

    assert response.status_code == 302
    assert response["Location"] == "/peers/approvals/"
    device.refresh_from_db()
    assert device.confirmed is True
    assert client.session[DEVICE_ID_SESSION_KEY] == device.persistent_id
    assert client.get("/peers/approvals/").status_code == 200
    assert AuditEvent.objects.filter(action="auth.otp_enrolled", target=f"user:{admin.pk}").count() == 1


def test_setting_up_refuses_a_wrong_code(client: Client, admin: Any) -> None:
    _sign_in(client, "carol")
    client.get("/otp/setup/")
    device = TOTPDevice.objects.get(user=admin)
    wrong = f"{(int(_code(device)) + 1) % 1_000_000:06d}"

    for token in (wrong, "12345", "abcdef"):
        response = client.post("/otp/setup/", {"token": token})
        assert response.status_code == 200
        assert response.context["form"].errors["token"]

    device.refresh_from_db()
    assert device.confirmed is False
    assert DEVICE_ID_SESSION_KEY not in client.session
    assert client.get("/peers/").status_code == 302


def test_verifying_lets_the_admin_in_and_refuses_a_wrong_code(client: Client, admin: Any) -> None:
    device = TOTPDevice.objects.create(user=admin, name="phone", confirmed=True)
    _sign_in(client, "carol")
    wrong = f"{(int(_code(device)) + 1) % 1_000_000:06d}"

    refused = client.post("/otp/verify/", {"token": wrong, "next": "/ca/"})

    assert refused.status_code == 200
    assert "That code is not valid" in refused.content.decode()
    assert DEVICE_ID_SESSION_KEY not in client.session
    assert AuditEvent.objects.filter(action="auth.otp_failed").count() == 1
    assert client.get("/ca/").status_code == 302

    device.throttling_failure_count = 0  # the failure above throttles the next try for a second
    device.throttling_failure_timestamp = None
    device.save()
    response = client.post("/otp/verify/", {"token": _code(device), "next": "/ca/"})

    assert response.status_code == 302
    assert response["Location"] == "/ca/"
    assert client.get("/ca/").status_code == 200
    assert AuditEvent.objects.filter(action="auth.otp_verified").count() == 1


def test_a_code_the_throttle_refuses_is_not_called_invalid(client: Client, admin: Any) -> None:
    """Before: "That code is not valid", although the throttle never looked at the (right) code."""
    device = TOTPDevice.objects.create(user=admin, name="phone", confirmed=True)
    _sign_in(client, "carol")
    wrong = f"{(int(_code(device)) + 1) % 1_000_000:06d}"
    assert "That code is not valid" in client.post("/otp/verify/", {"token": wrong}).content.decode()

    refused = client.post("/otp/verify/", {"token": _code(device)})  # at once: the throttle's second

    page = refused.content.decode()
    assert refused.status_code == 200
    assert "Too many wrong codes in a row, so this one was not checked. Wait 1 second" in page
    assert "not valid" not in page
    assert DEVICE_ID_SESSION_KEY not in client.session
    assert AuditEvent.objects.filter(action="auth.otp_failed", data__throttled=True).count() == 1


def test_the_throttle_says_how_long_to_wait(client: Client, admin: Any) -> None:
    device = TOTPDevice.objects.create(
        user=admin,
        name="phone",
        confirmed=True,
        throttling_failure_count=4,
        throttling_failure_timestamp=timezone.now(),
    )
    _sign_in(client, "carol")

    page = client.post("/otp/verify/", {"token": _code(device)}).content.decode()

    assert re.search(r"Wait [5-8] seconds", page)  # 1, 2, 4, 8: the fifth try waits 8 s from the fourth failure


def test_setting_up_says_when_the_throttle_refuses(client: Client, admin: Any) -> None:
    _sign_in(client, "carol")
    client.get("/otp/setup/")
    TOTPDevice.objects.filter(user=admin).update(
        throttling_failure_count=1, throttling_failure_timestamp=timezone.now()
    )
    device = TOTPDevice.objects.get(user=admin)

    page = client.post("/otp/setup/", {"token": _code(device)}).content.decode()

    assert "Too many wrong codes in a row" in page
    assert "not valid" not in page


def test_verifying_refuses_a_code_used_before(client: Client, admin: Any) -> None:
    device = TOTPDevice.objects.create(user=admin, name="phone", confirmed=True)
    code = _code(device)
    _sign_in(client, "carol")
    assert client.post("/otp/verify/", {"token": code}).status_code == 302
    client.post("/logout/")
    _sign_in(client, "carol")

    response = client.post("/otp/verify/", {"token": code})

    assert response.status_code == 200
    assert DEVICE_ID_SESSION_KEY not in client.session


def test_verify_ignores_an_offsite_next(client: Client, admin: Any) -> None:
    device = TOTPDevice.objects.create(user=admin, name="phone", confirmed=True)
    _sign_in(client, "carol")

    response = client.post("/otp/verify/", {"token": _code(device), "next": "https://evil.example/"})

    assert response.status_code == 302
    assert response["Location"] == "/"


@pytest.mark.parametrize("persona", ["owner", "auditor"])
def test_roaming_users_and_auditors_are_never_asked_for_otp(client: Client, persona: str, request: Any) -> None:
    user = request.getfixturevalue(persona)
    _sign_in(client, user.username)

    for url in ("/", "/peers/", "/peers/new/"):
        response = client.get(url)
        assert response.status_code == 200, url
    assert not TOTPDevice.objects.exists()


def test_admins_pass_without_otp_when_it_is_not_required(client: Client, admin: Any, settings: Any) -> None:
    settings.OTP_REQUIRED_FOR_ADMINS = False
    _sign_in(client, "carol")

    assert client.get("/peers/approvals/").status_code == 200
    assert client.get("/ca/").status_code == 200
    assert not TOTPDevice.objects.exists()


@pytest.mark.parametrize("url", ["/otp/setup/", "/otp/verify/"])
def test_otp_pages_send_anonymous_users_to_sign_in(client: Client, url: str) -> None:
    response = client.get(url)

    assert response.status_code == 302
    assert response["Location"] == f"/login/?next={url}"
