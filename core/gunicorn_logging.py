"""gunicorn's logger for the portal: ``--logger-class core.gunicorn_logging.RedactingLogger``.

gunicorn's access log quotes the request line, the path, the query string and the Referer, and
its error log quotes the URI of a request that failed. A one-time link (``/bundles/link/<token>/``)
is redeemable by whoever reads the token, so every value that goes into an access line is passed
through ``core.logs.redact`` first, headers that are credentials (Authorization, Cookie, ...) are
replaced outright, and every finished line of both logs is redacted once more.

With LOG_FORMAT=json (read from the environment: the gunicorn master loads no Django settings) both
logs write one JSON object per line like the rest of the site; an access line also carries the
method, path, status, bytes, duration and the request id that the portal sent back
(``X-Request-ID``), so it can be joined with the application's lines for the same request.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

from gunicorn.glogging import Logger

from core.logs import REDACTED, JsonFormatter, redact

# Atoms (request headers "{name}i", response headers "{name}o", WSGI environ "{name}e") whose value is
# a credential: never written, whatever access_log_format asks for.
SECRET_ATOMS = frozenset(
    {
        "{authorization}i",
        "{proxy-authorization}i",
        "{cookie}i",
        "{x-csrftoken}i",
        "{set-cookie}o",
        "{http_authorization}e",
        "{http_proxy_authorization}e",
        "{http_cookie}e",
        "{http_x_csrftoken}e",
    }
)


def json_logs() -> bool:
    return os.environ.get("LOG_FORMAT", "").strip().lower() == "json"


class RedactedFormatter(logging.Formatter):
    """Whatever ``inner`` writes, redacted: keeps gunicorn's own line format in plain mode."""

    def __init__(self, inner: logging.Formatter | None) -> None:
        super().__init__()
        self.inner = inner or logging.Formatter()

    def format(self, record: logging.LogRecord) -> str:
        return redact(self.inner.format(record))


class AccessJsonFormatter(JsonFormatter):
    """An access line as JSON: the redacted line as the message, and its parts as fields."""

    def fields(self, record: logging.LogRecord) -> dict[str, Any]:
        entry = super().fields(record)
        atoms = record.args
        if isinstance(atoms, Mapping):
            query = atoms.get("q") or ""
            path = str(atoms.get("U") or "")
            entry.update(
                {
                    "method": atoms.get("m"),
                    "path": f"{path}?{query}" if query else path,
                    "status": _int(atoms.get("s")),
                    "bytes": atoms.get("B"),
                    "duration_ms": atoms.get("M"),
                    "remote_addr": atoms.get("h"),
                }
            )
            request_id = atoms.get("{x-request-id}o")
            if isinstance(request_id, str):
                entry["request_id"] = request_id
        return entry


def _int(value: object) -> int | None:
    try:
        return int(str(value))
    except ValueError:
        return None


class RedactingLogger(Logger):  # type: ignore[misc]  # gunicorn ships no type information
    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        as_json = json_logs()
        for log, json_formatter in ((self.error_log, JsonFormatter()), (self.access_log, AccessJsonFormatter())):
            for handler in log.handlers:
                if as_json:
                    handler.setFormatter(json_formatter)
                elif not isinstance(handler.formatter, RedactedFormatter):  # setup runs again on reload
                    handler.setFormatter(RedactedFormatter(handler.formatter))

    def atoms(self, resp: Any, req: Any, environ: Any, request_time: Any) -> dict[str, Any]:
        atoms: dict[str, Any] = super().atoms(resp, req, environ, request_time)
        return {
            key: REDACTED if key in SECRET_ATOMS else redact(value) if isinstance(value, str) else value
            for key, value in atoms.items()
        }
