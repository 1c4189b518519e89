"""TOTP two-factor for CA admins: set up a device once, then verify at each sign-in (django-otp)."""

from __future__ import annotations

import base64
import math

import segno
from django import forms
from django.contrib.auth.decorators import login_required
from django.contrib.auth.models import User
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods
from django_otp import login as otp_login
from django_otp.plugins.otp_totp.models import TOTPDevice

from authority.audit import audit_record
from authority.services import actor_name


class TokenForm(forms.Form):
    token = forms.RegexField(
        regex=r"^\s*\d{6}\s*$",
        label="6-digit code from your authenticator app",
        error_messages={"invalid": "Enter the 6 digits your authenticator app shows."},
        widget=forms.TextInput(attrs={"autocomplete": "one-time-code", "inputmode": "numeric", "autofocus": True}),
    )


def _throttled(devices: list[TOTPDevice]) -> str:
    """The refusal to show when django-otp's throttle refuses every device before it looks at the code.

    After each wrong code the next try must wait 1, 2, 4, ... seconds. A code sent sooner is not
    checked at all, so "That code is not valid" would be wrong: the code may well be right.
    """
    waits = []
    for device in devices:
        allowed, data = device.verify_is_allowed()
        if allowed:
            return ""
        until = (data or {}).get("locked_until")
        waits.append(max(1, math.ceil((until - timezone.now()).total_seconds())) if until is not None else 1)
    seconds = min(waits) if waits else 1
    return (
        f"Too many wrong codes in a row, so this one was not checked. Wait {seconds} "
        f"second{'s' if seconds != 1 else ''}, then try the code your app shows."
    )


def _next(request: HttpRequest) -> str:
    target = request.POST.get("next") or request.GET.get("next") or "/"
    return target if url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}) else "/"


@never_cache
@login_required
@require_http_methods(["GET", "POST"])
def otp_setup(request: HttpRequest) -> HttpResponse:
    user = request.user
    assert isinstance(user, User)
    if TOTPDevice.objects.filter(user=user, confirmed=True).exists():
        return redirect(f"/otp/verify/?next={_next(request)}")
    device = TOTPDevice.objects.filter(user=user, confirmed=False).first()
    if device is None:
        device = TOTPDevice.objects.create(user=user, name="authenticator", confirmed=False)
    form = TokenForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        throttled = _throttled([device])
        if throttled:
            form.add_error("token", throttled)
        elif device.verify_token(form.cleaned_data["token"].strip()):
            device.confirmed = True
            device.save(update_fields=["confirmed"])
            otp_login(request, device)
            audit_record("auth.otp_enrolled", actor=actor_name(user), target=f"user:{user.pk}")
            return redirect(_next(request))
        else:
            form.add_error("token", "That code is not valid. Check the time on your phone and try the current code.")
    secret = base64.b32encode(device.bin_key).decode("ascii").rstrip("=")
    qr_svg = segno.make(device.config_url, error="m").svg_inline(scale=4)
    return render(
        request,
        "registration/otp_setup.html",
        {"form": form, "secret": secret, "qr_svg": qr_svg, "next": _next(request)},
    )


@never_cache
@login_required
@require_http_methods(["GET", "POST"])
def otp_verify(request: HttpRequest) -> HttpResponse:
    user = request.user
    assert isinstance(user, User)
    devices = list(TOTPDevice.objects.filter(user=user, confirmed=True))
    if not devices:
        return redirect(f"/otp/setup/?next={_next(request)}")
    form = TokenForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        token = form.cleaned_data["token"].strip()
        throttled = _throttled(devices)
        if throttled:
            audit_record("auth.otp_failed", actor=actor_name(user), target=f"user:{user.pk}", throttled=True)
            form.add_error("token", throttled)
            return render(request, "registration/otp_verify.html", {"form": form, "next": _next(request)})
        for device in devices:
            if device.verify_is_allowed()[0] and device.verify_token(token):
                otp_login(request, device)
                audit_record("auth.otp_verified", actor=actor_name(user), target=f"user:{user.pk}")
                return redirect(_next(request))
        audit_record("auth.otp_failed", actor=actor_name(user), target=f"user:{user.pk}")
        form.add_error("token", "That code is not valid. Try the current code; after several failures you must wait.")
    return render(request, "registration/otp_verify.html", {"form": form, "next": _next(request)})
