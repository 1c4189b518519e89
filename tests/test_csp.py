"""A strict Content-Security-Policy on every response, and templates that need no exception to it
(review F8). The browser tests check that Chromium reports no violation on the pages they visit."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from django.test import Client

from tests.conftest import login

TEMPLATES = Path(__file__).resolve().parents[1] / "templates"
INLINE_SCRIPT = re.compile(r"<script(?![^>]*\bsrc=)[^>]*>", re.IGNORECASE)
EVENT_HANDLER = re.compile(r"<[^>]+\son[a-z]+\s*=", re.IGNORECASE)
STYLE_ATTRIBUTE = re.compile(r"<[^>]+\sstyle\s*=", re.IGNORECASE)


def _policy(response: Any) -> dict[str, str]:
    header = response["Content-Security-Policy"]
    return {part.split()[0]: part for part in (p.strip() for p in header.split(";")) if part}


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/login/", "/ca.pem", "/healthz", "/api/v1/peers", "/no-such-page/"])
def test_every_response_carries_the_policy(client: Client, path: str) -> None:
    policy = _policy(client.get(path))

    assert policy["default-src"] == "default-src 'self'"
    assert policy["script-src"] == "script-src 'self'"
    assert policy["object-src"] == "object-src 'none'"
    assert policy["frame-ancestors"] == "frame-ancestors 'none'"
    assert "unsafe-inline" not in str(policy)
    assert "unsafe-eval" not in str(policy)


@pytest.mark.django_db
def test_signed_in_pages_carry_it_too(client: Client, admin: Any, ca: Any) -> None:
    login(client, admin)
    for path in ["/", "/peers/", "/peers/approvals/", "/audit/", "/ca/"]:
        response = client.get(path)
        assert response.status_code == 200, path
        assert "script-src 'self'" in response["Content-Security-Policy"], path


def _html_templates() -> list[Path]:
    return sorted(p for p in TEMPLATES.rglob("*.html") if "configs" not in p.parts)


def test_it_checks_the_page_templates() -> None:
    assert len(_html_templates()) > 20


@pytest.mark.parametrize("template", _html_templates(), ids=lambda p: str(p.relative_to(TEMPLATES)))
def test_no_template_needs_inline_script_or_style(template: Path) -> None:
    text = template.read_text(encoding="utf-8")

    assert INLINE_SCRIPT.findall(text) == []
    assert EVENT_HANDLER.findall(text) == []
    assert STYLE_ATTRIBUTE.findall(text) == []
