"""gunicorn's access and error logs through ``core.gunicorn_logging.RedactingLogger``: no token, no credential."""

from __future__ import annotations

import io
import json
import logging
from datetime import timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from gunicorn.config import Config

from core.gunicorn_logging import RedactingLogger
from core.logs import LINK_PREFIX

TOKEN = "Zq3xN0vJ8kLmP2rS5tUwYb7cD9eFgHiKlMnOpQrStUv"
API_TOKEN = "9944b09199c62bcf9418ad846dd0e4bbdfc6ee4b"


@pytest.fixture
def logger(no_log_handlers_leak: None, monkeypatch: pytest.MonkeyPatch) -> Any:
    def make(*, json_format: bool = False, access_format: str | None = None) -> tuple[Any, io.StringIO, io.StringIO]:
        if json_format:
            monkeypatch.setenv("LOG_FORMAT", "json")
        else:
            monkeypatch.delenv("LOG_FORMAT", raising=False)
        cfg = Config()
        cfg.set("accesslog", "-")
        cfg.set("errorlog", "-")
        if access_format:
            cfg.set("access_log_format", access_format)
        log = RedactingLogger(cfg)
        access, error = io.StringIO(), io.StringIO()
        _gunicorn_handler(log.access_log).setStream(access)
        _gunicorn_handler(log.error_log).setStream(error)
        return log, access, error

    return make


def _gunicorn_handler(log: logging.Logger) -> logging.StreamHandler[Any]:
    (handler,) = [h for h in log.handlers if getattr(h, "_gunicorn", False)]
    assert isinstance(handler, logging.StreamHandler)
    return handler


def _access(log: Any, path: str, *, status: str = "410 Gone") -> None:
    environ = {
        "REQUEST_METHOD": "POST",
        "RAW_URI": path,
        "PATH_INFO": path,
        "QUERY_STRING": "",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "192.0.2.10",
        "HTTP_REFERER": f"https://ca.example.org{path}",
        "HTTP_USER_AGENT": "curl/8.5",
        "HTTP_AUTHORIZATION": f"Token {API_TOKEN}",
        "HTTP_COOKIE": "sessionid=abcdefghijklmnop; csrftoken=qrstuvwxyz",
    }
    request = SimpleNamespace(
        headers=[("AUTHORIZATION", f"Token {API_TOKEN}"), ("COOKIE", "sessionid=abcdefghijklmnop")]
    )
    response = SimpleNamespace(status=status, sent=1234, headers=[("X-Request-ID", "req-42")])
    log.access(response, request, environ, timedelta(milliseconds=87))


def test_the_access_line_cuts_the_link_token_in_the_request_line_and_the_referer(logger: Any) -> None:
    log, access, _ = logger()

    _access(log, f"/bundles/link/{TOKEN}/")

    line = access.getvalue()
    assert TOKEN not in line
    assert line.count(f"/bundles/link/{TOKEN[:LINK_PREFIX]}.../") == 2  # "%(r)s" and the Referer
    assert '" 410 1234 "' in line


def test_credential_headers_never_reach_the_access_log(logger: Any) -> None:
    log, access, _ = logger(access_format='%(h)s "%(r)s" %({authorization}i)s %({cookie}i)s %({http_cookie}e)s')

    _access(log, "/api/v1/peers")

    line = access.getvalue()
    assert API_TOKEN not in line
    assert "abcdefghijklmnop" not in line
    assert line.strip() == '192.0.2.10 "POST /api/v1/peers HTTP/1.1" [redacted] [redacted] [redacted]'


def test_a_json_access_line_has_its_parts_as_fields(logger: Any) -> None:
    log, access, _ = logger(json_format=True)

    _access(log, f"/bundles/link/{TOKEN}/")

    (line,) = access.getvalue().splitlines()
    entry = json.loads(line)
    assert TOKEN not in line
    assert entry["logger"] == "gunicorn.access"
    assert entry["method"] == "POST"
    assert entry["path"] == f"/bundles/link/{TOKEN[:LINK_PREFIX]}.../"
    assert entry["status"] == 410
    assert entry["bytes"] == 1234
    assert entry["duration_ms"] == 87
    assert entry["remote_addr"] == "192.0.2.10"
    assert entry["request_id"] == "req-42"  # the id the portal sent back joins this line to the app's


def test_the_error_log_cuts_the_token_of_a_failed_request(logger: Any) -> None:
    log, _, error = logger()

    log.error("Error handling request %s", f"/bundles/link/{TOKEN}/")

    assert TOKEN not in error.getvalue()
    assert f"/bundles/link/{TOKEN[:LINK_PREFIX]}.../" in error.getvalue()
    assert "[ERROR]" in error.getvalue()  # gunicorn's own line format is kept


def test_the_error_log_in_json(logger: Any) -> None:
    log, _, error = logger(json_format=True)

    try:
        raise RuntimeError(f"worker failed on /bundles/link/{TOKEN}/")
    except RuntimeError:
        log.exception("Error handling request %s", f"/bundles/link/{TOKEN}/")

    entry = json.loads(error.getvalue())
    assert entry["level"] == "ERROR"
    assert entry["logger"] == "gunicorn.error"
    assert "RuntimeError" in entry["exception"]
    assert TOKEN not in error.getvalue()


def test_setting_up_again_on_reload_wraps_once(logger: Any) -> None:
    log, access, _ = logger()
    log.setup(log.cfg)
    _gunicorn_handler(log.access_log).setStream(access)

    _access(log, f"/bundles/link/{TOKEN}/")

    assert TOKEN not in access.getvalue()
    assert access.getvalue().count("/bundles/link/") == 2  # one line: the handler was replaced, not added
