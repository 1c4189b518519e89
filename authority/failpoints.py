"""Failpoints for the crash tests of the signer (docs/security.md T13).

Inactive unless CA_PORTAL_FAILPOINTS is set, e.g. ``after_sign=kill-once:/tmp/fp``: at the named
point the process SIGKILLs itself, once per request (a marker file in the given folder records
that it fired), so the redelivered task finds the state a real crash leaves behind.
``kill-group-once`` kills the whole process group instead: the worker's main process and all its
pool children, as a power cut or an OOM kill of the service would.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

POINTS = ("before_intent", "after_intent_commit", "after_sign", "after_store")


def _configured(raw: str) -> dict[str, str]:
    pairs = (item.split("=", 1) for item in raw.split(",") if "=" in item)
    return {name.strip(): action.strip() for name, action in pairs}


def failpoint(name: str, request_id: int) -> None:
    raw = os.environ.get("CA_PORTAL_FAILPOINTS")
    if not raw:  # the signer calls this four times per certificate: be quick when off
        return
    action = _configured(raw).get(name)
    if not action:
        return
    kind, _, folder = action.partition(":")
    if kind not in ("kill-once", "kill-group-once"):
        raise ValueError(f"unknown failpoint action {action!r}")
    marker = Path(folder) / f"{name}-{request_id}"
    try:
        fd = os.open(marker, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    os.close(fd)
    if kind == "kill-group-once":
        os.killpg(os.getpgid(0), signal.SIGKILL)
    os.kill(os.getpid(), signal.SIGKILL)
