"""Log lines: secrets and one-time tokens cut out, and with LOG_FORMAT=json one JSON object per line.

Every handler of the site formats through ``PlainFormatter`` or ``JsonFormatter`` (settings.LOGGING;
gunicorn's own loggers through ``core.gunicorn_logging``), and both pass the finished text through
``redact``. Redacting the finished line, not the message arguments, is what catches the places we do
not write ourselves: Django's ``django.request`` logger writes "Not Found: /bundles/link/<token>/"
after the view has answered, and a traceback can quote a URL.

What ``redact`` cuts:

- a one-time link ``/bundles/link/<token>/`` keeps the first LINK_PREFIX characters of its token:
  enough to tell two links apart in a log, far too few to redeem one (the token has 256 bits);
- credentials in query strings and cookies (``?token=``, ``password=``, ``sessionid=``, ...);
- ``Bearer``/``Token``/``Basic`` credentials, should a header ever be quoted.

``RequestContext`` (a middleware, outermost) gives each request an id (a sane ``X-Request-ID``
from the proxy, else a new one; sent back in the response) and records the signed-in user and the
peer the URL names, so every line logged for a request can say whose request it was.
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from celery._state import get_current_task
from django.http import HttpRequest, HttpResponse

LINK_PREFIX = 6
REDACTED = "[redacted]"
REQUEST_ID_HEADER = "X-Request-ID"

_LINK = re.compile(r"(/bundles/link/)([^/\s?#\"'<>\\]+)")
_SECRET_PARAMETER = re.compile(
    r"(?<![\w-])(token|access_token|auth_token|api_key|key|password|passphrase|secret|otp_token"
    r"|sessionid|csrftoken|csrfmiddlewaretoken)=[^&;\s\"'#\\]+",
    re.IGNORECASE,
)
_CREDENTIAL = re.compile(r"\b(Bearer|Token|Basic) [A-Za-z0-9._~+/=-]{16,}")
_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")


def _cut_link(match: re.Match[str]) -> str:
    token = match.group(2)
    if len(token) <= LINK_PREFIX:
        return match.group(0)  # already cut (or no real token): cutting again changes nothing
    return f"{match.group(1)}{token[:LINK_PREFIX]}..."


def redact(text: str) -> str:
    """``text`` without one-time link tokens and credentials. Cutting twice gives the same text."""
    text = _LINK.sub(_cut_link, text)
    text = _SECRET_PARAMETER.sub(lambda m: f"{m.group(1)}={REDACTED}", text)
    return _CREDENTIAL.sub(lambda m: f"{m.group(1)} {REDACTED}", text)


# --- who a line is about ------------------------------------------------------------------------


@dataclass
class LogContext:
    """What is known about the request being served; filled in as the request goes through."""

    request_id: str
    user: str | None = None
    peer_id: int | None = None


_current: ContextVar[LogContext | None] = ContextVar("ca_portal_log_context", default=None)


def current_context() -> LogContext | None:
    return _current.get()


def _peer_id(view_kwargs: dict[str, Any], url_name: str) -> int | None:
    """The peer a URL names: ``<int:peer_id>`` on the pages, ``<str:id>`` under /api/v1/peers/."""
    raw = view_kwargs.get("peer_id")
    if raw is None and url_name.startswith("api-peer"):
        raw = view_kwargs.get("id")
    if isinstance(raw, int):
        return raw
    if isinstance(raw, str) and raw.isascii() and raw.isdigit() and len(raw) <= 18:
        return int(raw)
    return None


class RequestContext:
    """Middleware, first in MIDDLEWARE: a request id for every request, and the user and peer once known."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        incoming = request.headers.get(REQUEST_ID_HEADER, "")
        context = LogContext(request_id=incoming if _REQUEST_ID.fullmatch(incoming) else uuid.uuid4().hex)
        # Django logs "Not Found: ..." after the middleware has returned: the formatter finds the
        # context on the request that such a record carries.
        request.log_context = context  # type: ignore[attr-defined]
        token = _current.set(context)
        try:
            response = self.get_response(request)
        finally:
            _current.reset(token)
        response.headers.setdefault(REQUEST_ID_HEADER, context.request_id)
        return response

    def process_view(
        self, request: HttpRequest, view_func: object, view_args: tuple[Any, ...], view_kwargs: dict[str, Any]
    ) -> None:
        context = getattr(request, "log_context", None)
        if not isinstance(context, LogContext):
            return
        # The sign-in middleware has already looked at request.user: reading it costs no query here.
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated:
            context.user = user.get_username()
        match = request.resolver_match
        context.peer_id = _peer_id(view_kwargs, (match.url_name or "") if match is not None else "")


# --- the formatters ----------------------------------------------------------------------------

# Extra attributes a record may carry that go into the JSON line (anything else, such as the request
# object django.request attaches, stays out).
EXTRA_FIELDS = ("status_code", "peer_id", "user", "method", "path", "status", "bytes", "duration_ms", "remote_addr")


class PlainFormatter(logging.Formatter):
    """The usual ``%(asctime)s %(levelname)s %(name)s %(message)s`` lines, redacted."""

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, and request_id, user, peer_id,
    task and task_id where known. Non-ASCII is escaped, so no character splits a line."""

    def fields(self, record: logging.LogRecord) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        request = getattr(record, "request", None)
        context = getattr(request, "log_context", None) or _current.get()
        if isinstance(context, LogContext):
            entry["request_id"] = context.request_id
            if context.user is not None:
                entry["user"] = context.user
            if context.peer_id is not None:
                entry["peer_id"] = context.peer_id
        task = get_current_task()
        if task is not None and task.request.id is not None:
            entry["task"] = task.name
            entry["task_id"] = task.request.id
        for key in EXTRA_FIELDS:
            value = getattr(record, key, None)
            if isinstance(value, (str, int, float, bool)) and key not in entry:
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return entry

    def format(self, record: logging.LogRecord) -> str:
        return redact(json.dumps(self.fields(record), default=str, ensure_ascii=True))


def logging_config(*, log_format: str, level: str) -> dict[str, Any]:
    """The LOGGING setting: one console handler, plain or JSON lines, both redacting one-time tokens."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "plain": {"()": "core.logs.PlainFormatter", "format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
            "json": {"()": "core.logs.JsonFormatter"},
        },
        "handlers": {"console": {"class": "logging.StreamHandler", "formatter": log_format}},
        "root": {"handlers": ["console"], "level": level},
        # Django's own handlers (its DEBUG console, runserver's request lines) would write unredacted
        # lines: they go, and everything under "django" reaches the root's handler instead.
        "loggers": {"django": {"handlers": [], "level": "INFO", "propagate": True}},
    }
