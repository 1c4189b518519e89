"""Settings for running behind the TLS proxy, and `manage.py check --deploy` with production's environment."""

from __future__ import annotations

import os
import secrets
import subprocess
from pathlib import Path

import pytest
from django.http import HttpRequest, HttpResponse
from django.test import RequestFactory

from core.proxy import client_address, forwarded_client_address
from tests.deploy.units import DEPLOY, PYTHON, ROOT, env_file


def production_env(tmp_path: Path, **changes: str) -> dict[str, str]:
    """deploy/ca-portal.env.example with its placeholders filled in, as docs/deploy.md says."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "CA_PORTAL_", "CA_KEY_"))}
    env.pop("DATABASE_URL", None)
    env.pop("REDIS_URL", None)
    env.update(env_file(DEPLOY / "ca-portal.env.example"))
    env.update(
        DJANGO_SETTINGS_MODULE="ca_portal.settings",
        DJANGO_SECRET_KEY=secrets.token_urlsafe(50),
        DATABASE_URL="postgres://ca_portal:secret@db.invalid:5432/ca_portal",  # check --deploy never connects
        CA_PORTAL_VAR_DIR=str(tmp_path / "var"),
        CA_PORTAL_STATIC_ROOT=str(tmp_path / "static"),
    )
    env.update(changes)
    return env


def _check_deploy(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PYTHON, str(ROOT / "manage.py"), "check", "--deploy", "--fail-level", "WARNING"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )


def test_check_deploy_passes_with_the_production_environment(tmp_path: Path) -> None:
    result = _check_deploy(production_env(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


@pytest.mark.parametrize(
    ("change", "warning"),
    [
        ({"DEBUG": "1"}, "security.W018"),
        ({"SITE_URL": "http://ca.example.org"}, "security.W004"),  # no HSTS, cookies not secure
        ({"BEHIND_TLS_PROXY": "0"}, "security.W008"),  # nothing redirects plain HTTP
        ({"HSTS_INCLUDE_SUBDOMAINS": "0"}, "security.W005"),
    ],
)
def test_check_deploy_fails_when_production_is_misconfigured(
    tmp_path: Path, change: dict[str, str], warning: str
) -> None:
    """So the test above can fail: each of these is reported."""
    result = _check_deploy(production_env(tmp_path, **change))
    assert result.returncode != 0
    assert warning in result.stderr


def test_production_settings(tmp_path: Path) -> None:
    code = (
        "from django.conf import settings as s; "
        "print(s.MIDDLEWARE[0], s.SECURE_PROXY_SSL_HEADER, s.SECURE_SSL_REDIRECT, s.SECURE_HSTS_SECONDS, "
        "s.SECURE_HSTS_INCLUDE_SUBDOMAINS, s.SECURE_HSTS_PRELOAD, s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE, "
        "s.STATIC_ROOT, s.STATIC_ROOT.exists())"
    )
    env = production_env(tmp_path)
    result = subprocess.run(
        [PYTHON, "-c", f"import django; django.setup(); {code}"], env=env, cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [
        "core.proxy.forwarded_client_address",
        "('HTTP_X_FORWARDED_PROTO',",
        "'https')",
        "True",
        "31536000",
        "True",
        "False",
        "True",
        "True",
        str(tmp_path / "static"),
        "False",  # a configured STATIC_ROOT is the deployment's to make (deploy/tmpfiles.d), not the settings'
    ]


# --- the client's address behind the proxy ------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "address"),
    [
        ("203.0.113.7", "203.0.113.7"),
        ("198.51.100.1, 203.0.113.7", "203.0.113.7"),  # the client wrote the first; the proxy the last
        ("2001:db8::1", "2001:db8::1"),
        ("203.0.113.7 ", "203.0.113.7"),
        ("", None),
        ("unknown", None),
        ("203.0.113.7, evil", None),
    ],
)
def test_client_address_is_the_last_forwarded_entry(header: str, address: str | None) -> None:
    assert client_address(header) == address


def test_the_middleware_puts_the_proxys_entry_in_remote_addr() -> None:
    seen: list[str] = []

    def view(request: HttpRequest) -> HttpResponse:
        seen.append(request.META["REMOTE_ADDR"])
        return HttpResponse()

    middleware = forwarded_client_address(view)
    factory = RequestFactory()
    middleware(factory.get("/", REMOTE_ADDR="", HTTP_X_FORWARDED_FOR="10.9.8.7, 203.0.113.7"))
    middleware(factory.get("/", REMOTE_ADDR="127.0.0.1"))
    middleware(factory.get("/", REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR="garbage"))
    assert seen == ["203.0.113.7", "127.0.0.1", "127.0.0.1"]
