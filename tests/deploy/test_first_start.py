"""The first start: the same hints everywhere (serve, the overview, the CA page, the README), and a
clear message instead of a traceback when a command meets a database that was never migrated."""

from __future__ import annotations

import html
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from django.test import Client

from authority.management.commands import serve
from tests.conftest import login
from tests.deploy.units import PYTHON, ROOT

INIT_CA = f"{serve.MANAGE} {serve.INIT_CA_EXAMPLE}"


def test_the_hint_names_every_required_option() -> None:
    assert (
        INIT_CA
        == '.venv/bin/python manage.py init_ca --common-name "Example VPN CA" --organization Example --country NL'
    )


@pytest.mark.django_db
def test_serve_prints_the_same_hints(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CA_PORTAL_VAR_DIR", raising=False)

    serve.Command()._print_next_steps("127.0.0.1", "8311")

    out = capsys.readouterr().out
    assert f"    {INIT_CA}\n" in out
    assert f"    {serve.MANAGE} createsuperuser\n" in out
    assert "http://127.0.0.1:8311/login/" in out


@pytest.mark.django_db
def test_serve_names_the_var_dir_it_runs_with(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CA_PORTAL_VAR_DIR", "/srv/my portal/var")

    serve.Command()._print_next_steps("127.0.0.1", "8000")

    assert f"    CA_PORTAL_VAR_DIR='/srv/my portal/var' {INIT_CA}\n" in capsys.readouterr().out


@pytest.mark.django_db
@pytest.mark.parametrize("url", ["/", "/ca/"])
def test_the_pages_give_an_admin_the_same_hint(client: Client, admin: Any, url: str) -> None:
    login(client, admin)

    page = html.unescape(client.get(url).content.decode())

    assert INIT_CA in page
    assert "python manage.py" not in page.replace(".venv/bin/python manage.py", "")


def test_the_readme_gives_the_same_hint() -> None:
    assert INIT_CA in (ROOT / "README.md").read_text(encoding="utf-8")


def _manage(var: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "DJANGO_SETTINGS_MODULE"}}
    env.update(CA_PORTAL_VAR_DIR=str(var), DJANGO_SUPERUSER_PASSWORD="correct horse battery staple")
    return subprocess.run(
        [PYTHON, str(ROOT / "manage.py"), *args], env=env, cwd=ROOT, capture_output=True, text=True, check=False
    )


def test_a_command_on_a_database_never_set_up_says_what_to_do(tmp_path: Path) -> None:
    var = tmp_path / "var"

    result = _manage(var, "createsuperuser", "--username", "carol", "--email", "carol@example.org", "--noinput")

    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "no such table" not in result.stderr
    assert f"The database at {var / 'ca_portal.sqlite3'} is not set up" in result.stderr
    assert "make setup" in result.stderr
    assert ".venv/bin/python manage.py migrate" in result.stderr
    assert "same CA_PORTAL_VAR_DIR" in result.stderr


def test_migrate_itself_still_runs_and_then_the_command_does(tmp_path: Path) -> None:
    var = tmp_path / "var"
    var.mkdir()
    (var / "ca_portal.sqlite3").touch()  # an empty file, as a connection leaves behind

    assert "is not set up" in _manage(var, "createsuperuser", "--noinput", "--username", "carol").stderr
    migrated = _manage(var, "migrate", "--noinput", "-v0")
    created = _manage(var, "createsuperuser", "--username", "carol", "--email", "carol@example.org", "--noinput")

    assert migrated.returncode == 0, migrated.stderr
    assert created.returncode == 0, created.stderr
    assert "Superuser created" in created.stdout
