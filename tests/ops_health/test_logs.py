"""Logs: LOG_FORMAT=json gives one JSON object per line; no line ever holds a one-time token or a credential."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.test import Client

from core.logs import LINK_PREFIX, JsonFormatter, PlainFormatter, redact
from tests.conftest import login

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "Zq3xN0vJ8kLmP2rS5tUwYb7cD9eFgHiKlMnOpQrStUv"  # the shape of secrets.token_urlsafe(32)


# --- redact --------------------------------------------------------------------------------------


def test_it_cuts_a_one_time_link_to_a_prefix() -> None:
    line = f'GET /bundles/link/{TOKEN}/ HTTP/1.1" 410 "https://ca.example.org/bundles/link/{TOKEN}/"'

    cut = redact(line)

    assert TOKEN not in cut
    assert cut.count(f"/bundles/link/{TOKEN[:LINK_PREFIX]}.../") == 2


def test_cutting_twice_changes_nothing() -> None:
    once = redact(f"Not Found: /bundles/link/{TOKEN}/")

    assert redact(once) == once


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("GET /x?token=abcdef123456&page=2", "abcdef123456"),
        ("POST /login/?password=hunter2hunter2", "hunter2hunter2"),
        ("Cookie: csrftoken=Qw12Er34; sessionid=zx98cv76bn54", "zx98cv76bn54"),
        ("Authorization: Token 9944b09199c62bcf9418ad846dd0e4bbdfc6ee4b", "9944b09199c62bcf9418ad846dd0e4bbdfc6ee4b"),
        ("Authorization: Bearer s3cret-metrics-token-0123456789", "s3cret-metrics-token-0123456789"),
        ("Authorization: Basic YWxpY2U6Y29ycmVjdCBob3JzZQ==", "YWxpY2U6Y29ycmVjdCBob3JzZQ=="),
    ],
)
def test_it_cuts_credentials(text: str, secret: str) -> None:
    assert secret not in redact(text)
    assert "[redacted]" in redact(text)


def test_it_leaves_ordinary_lines_alone() -> None:
    line = "GET /bundles/peer/12/ HTTP/1.1 200; Token authentication failed; page=2"

    assert redact(line) == line


# --- the formatters --------------------------------------------------------------------------------


def _record(message: str, *args: object, **extra: Any) -> logging.LogRecord:
    record = logging.LogRecord("django.request", logging.WARNING, __file__, 1, message, args, None)
    record.__dict__.update(extra)
    return record


def test_a_json_line_has_time_level_logger_and_message() -> None:
    line = JsonFormatter().format(_record("Not Found: %s", f"/bundles/link/{TOKEN}/", status_code=404))

    entry = json.loads(line)
    assert "\n" not in line
    assert entry["level"] == "WARNING"
    assert entry["logger"] == "django.request"
    assert entry["message"] == f"Not Found: /bundles/link/{TOKEN[:LINK_PREFIX]}.../"
    assert entry["status_code"] == 404
    assert entry["time"].endswith("+00:00")


def test_a_json_line_never_carries_what_a_record_drags_along() -> None:
    line = JsonFormatter().format(_record("x", request=object(), password="hunter2", peer_id=7))

    entry = json.loads(line)
    assert entry["peer_id"] == 7
    assert "request" not in entry
    assert "password" not in entry


def test_a_json_line_cuts_a_token_in_a_traceback() -> None:
    try:
        raise ValueError(f"no link /bundles/link/{TOKEN}/")
    except ValueError:
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())

    entry = json.loads(JsonFormatter().format(record))

    assert TOKEN not in json.dumps(entry)
    assert "ValueError" in entry["exception"]


def test_a_plain_line_is_redacted_too() -> None:
    formatter = PlainFormatter("%(levelname)s %(name)s %(message)s")

    assert formatter.format(_record("Gone: /bundles/link/%s/", TOKEN)) == (
        f"WARNING django.request Gone: /bundles/link/{TOKEN[:LINK_PREFIX]}.../"
    )


def test_the_site_logs_through_the_redacting_formatter() -> None:
    streams = [h for h in logging.getLogger().handlers if type(h) is logging.StreamHandler]

    assert streams  # pytest adds its own capture handlers beside the site's console handler
    assert all(isinstance(h.formatter, PlainFormatter) for h in streams)  # LOG_FORMAT unset: plain


# --- requests ------------------------------------------------------------------------------------


@pytest.fixture
def json_lines() -> Iterator[io.StringIO]:
    """What the site's loggers write, as JSON lines (the root handler, as LOG_FORMAT=json sets it up)."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.addHandler(handler)
    yield stream
    root.removeHandler(handler)


def _entries(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_a_one_time_link_that_is_not_found_is_logged_without_its_token(
    client: Client, owner: Any, json_lines: io.StringIO
) -> None:
    login(client, owner)

    response = client.get(f"/bundles/link/{TOKEN}/", HTTP_X_REQUEST_ID="req-0001")

    assert response.status_code == 404
    entries = [e for e in _entries(json_lines) if e["logger"] == "django.request"]
    assert [e["message"] for e in entries] == [f"Not Found: /bundles/link/{TOKEN[:LINK_PREFIX]}.../"]
    # Django logs this after the middleware has returned: the context comes from the request.
    assert entries[0]["request_id"] == "req-0001"
    assert entries[0]["user"] == "alice"
    assert TOKEN not in json_lines.getvalue()


def test_each_request_gets_an_id_and_sends_it_back(client: Client, db: Any) -> None:
    first = client.get("/healthz")
    second = client.get("/healthz")
    given = client.get("/healthz", HTTP_X_REQUEST_ID="lb-7f3a.2")
    refused = client.get("/healthz", HTTP_X_REQUEST_ID="not a valid id\r\nX-Evil: 1")

    assert len(first["X-Request-ID"]) == 32
    assert first["X-Request-ID"] != second["X-Request-ID"]
    assert given["X-Request-ID"] == "lb-7f3a.2"
    assert "Evil" not in refused["X-Request-ID"]
    assert len(refused["X-Request-ID"]) == 32


def test_lines_about_a_peer_name_the_user_and_the_peer(client: Client, owner: Any, json_lines: io.StringIO) -> None:
    login(client, owner)

    client.get("/peers/4242/", HTTP_X_REQUEST_ID="req-0002")
    client.get("/api/v1/peers/4243", HTTP_X_REQUEST_ID="req-0003")

    entries = {e["request_id"]: e for e in _entries(json_lines) if e["logger"] == "django.request"}
    assert entries["req-0002"]["message"] == "Not Found: /peers/4242/"
    assert entries["req-0002"]["user"] == "alice"
    assert entries["req-0002"]["peer_id"] == 4242
    assert entries["req-0003"]["peer_id"] == 4243


def test_log_format_json_configures_the_site(tmp_path: Path) -> None:
    probe = (
        "import django, logging\n"
        "django.setup()\n"
        "logging.getLogger('django.request').warning('Not Found: %s', '/bundles/link/" + TOKEN + "/')\n"
        "logging.getLogger('authority').info('plain message')\n"
    )
    env = {
        **os.environ,
        "LOG_FORMAT": "json",
        "DJANGO_SETTINGS_MODULE": "ca_portal.settings",
        "CA_PORTAL_VAR_DIR": str(tmp_path),
    }
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=ROOT, env=env, timeout=60
    )

    entries = [json.loads(line) for line in out.stderr.splitlines()]
    assert [(e["logger"], e["message"]) for e in entries] == [
        ("django.request", f"Not Found: /bundles/link/{TOKEN[:LINK_PREFIX]}.../"),
        ("authority", "plain message"),
    ]


def test_a_bad_log_format_stops_the_start(tmp_path: Path) -> None:
    env = {**os.environ, "LOG_FORMAT": "xml", "CA_PORTAL_VAR_DIR": str(tmp_path)}
    out = subprocess.run(
        [sys.executable, "-c", "import ca_portal.settings"], capture_output=True, text=True, cwd=ROOT, env=env
    )

    assert out.returncode != 0
    assert "LOG_FORMAT must be one of plain/json, got 'xml'" in out.stderr
