"""SITE_URL follows where `make run HOST=... PORT=...` listens unless it is set, and serve says when they disagree.

Before: `make run PORT=8311` kept http://127.0.0.1:8000 in every certificate's CRL distribution
point and every bundle README, silently.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from authority.management.commands import serve
from core.listen import site_url_for, site_url_mismatch
from tests.deploy.units import PYTHON, ROOT


def _settings(tmp_path: Path, **env: str) -> list[str]:
    clean = {k: v for k, v in os.environ.items() if k not in {"SITE_URL", "HOST", "PORT", "DJANGO_SETTINGS_MODULE"}}
    clean.update(DJANGO_SETTINGS_MODULE="ca_portal.settings", CA_PORTAL_VAR_DIR=str(tmp_path / "var"), **env)
    code = "from django.conf import settings as s; print(s.SITE_URL, s.CA_CRL_URL, s.CSRF_TRUSTED_ORIGINS[0])"
    result = subprocess.run(
        [PYTHON, "-c", f"import django; django.setup(); {code}"],
        env=clean,
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.split()


def test_the_default_site_url_follows_host_and_port(tmp_path: Path) -> None:
    assert _settings(tmp_path) == ["http://127.0.0.1:8000", "http://127.0.0.1:8000/crl.der", "http://127.0.0.1:8000"]
    assert _settings(tmp_path, PORT="8311") == [
        "http://127.0.0.1:8311",
        "http://127.0.0.1:8311/crl.der",
        "http://127.0.0.1:8311",
    ]
    assert _settings(tmp_path, HOST="localhost", PORT="9000")[0] == "http://localhost:9000"


def test_an_explicit_site_url_wins(tmp_path: Path) -> None:
    assert _settings(tmp_path, SITE_URL="https://ca.example.org", PORT="8311")[0] == "https://ca.example.org"


@pytest.mark.parametrize(
    ("host", "port", "url"),
    [
        ("127.0.0.1", 8311, "http://127.0.0.1:8311"),
        ("0.0.0.0", "8000", "http://127.0.0.1:8000"),  # noqa: S104 (every address: this host is reached as itself)
        ("::", 8000, "http://127.0.0.1:8000"),
        ("::1", 8000, "http://[::1]:8000"),
        ("[::1]", 8000, "http://[::1]:8000"),
        ("ca.example.org", 80, "http://ca.example.org:80"),
    ],
)
def test_site_url_for(host: str, port: int | str, url: str) -> None:
    assert site_url_for(host, port) == url


@pytest.mark.parametrize(
    ("site_url", "host", "port", "agrees"),
    [
        ("http://127.0.0.1:8311", "127.0.0.1", "8311", True),
        ("http://127.0.0.1:8000", "127.0.0.1", "8311", False),
        ("http://localhost:8311", "127.0.0.1", "8311", False),
        ("http://vpn-ca.lan:8000", "0.0.0.0", "8000", True),  # noqa: S104
        ("https://ca.example.org", "127.0.0.1", "8000", False),  # right behind a proxy; said anyway
    ],
)
def test_site_url_mismatch(site_url: str, host: str, port: str, agrees: bool) -> None:
    message = site_url_mismatch(site_url, host, port)

    assert (message == "") is agrees
    if not agrees:
        assert f"SITE_URL is {site_url}, but serve listens on {site_url_for(host, port)}" in message
        assert "CRL distribution point" in message


class _Exited:
    """A child process that has already exited: gunicorn "dies" at once, so serve stops right away."""

    pid = 2**22 + 1
    returncode = 1

    def poll(self) -> int:
        return 1

    def wait(self, timeout: float | None = None) -> int:
        return 1

    def send_signal(self, signum: int) -> None:
        pass

    def kill(self) -> None:
        pass


def _serve(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], **env: str | None) -> Any:
    """Run serve's handle with the children replaced by stand-ins; returns (children's envs, stdout)."""
    for name, value in env.items():
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    started: list[dict[str, str]] = []

    def popen(command: list[str], **kwargs: Any) -> _Exited:
        started.append(dict(kwargs.get("env") or os.environ))
        return _Exited()

    monkeypatch.setattr(serve.subprocess, "Popen", popen)
    monkeypatch.setattr(serve.WorkerSupervisor, "_kill_group", staticmethod(lambda pgid: None))
    monkeypatch.setattr(serve.signal, "signal", lambda *args: None)
    with pytest.raises(SystemExit):
        serve.Command().handle(host="127.0.0.1", port="8311", web_workers=1, concurrency=1, worker_nice=0)
    return started, capsys.readouterr().out


@pytest.mark.django_db
def test_serve_gives_its_children_the_site_url_of_its_address(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    started, out = _serve(monkeypatch, capsys, SITE_URL=None, CA_KEY_PASSPHRASE_FILE="/tmp/stand-in")

    assert [env.get("SITE_URL") for env in started] == ["http://127.0.0.1:8311", "http://127.0.0.1:8311"]
    web, worker = started
    assert "CA_KEY_PASSPHRASE_FILE" not in web  # still: the web tier never signs
    assert worker["CA_KEY_PASSPHRASE_FILE"] == "/tmp/stand-in"
    assert "SITE_URL is" not in out
    assert "http://127.0.0.1:8311/login/" in out


@pytest.mark.django_db
def test_serve_warns_when_an_explicit_site_url_is_elsewhere(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    started, out = _serve(monkeypatch, capsys, SITE_URL="http://127.0.0.1:8000")

    assert [env.get("SITE_URL") for env in started] == ["http://127.0.0.1:8000", "http://127.0.0.1:8000"]
    assert "Warning: SITE_URL is http://127.0.0.1:8000, but serve listens on http://127.0.0.1:8311" in out
