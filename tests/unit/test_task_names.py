"""Every task name that is sent, scheduled or routed is one a worker has registered.

Apps queue work by name (``core.tasks.send_by_name``) so that no service imports a tasks module;
the price is that a typo or a renamed task would only show up as a message nobody consumes. This
test closes that gap: the names come from the apps' ``task_names`` modules, the sends in the
source, beat's schedule and the routes, and each must be a task of the site's Celery app.
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

from django.conf import settings

from ca_portal.celery import app

ROOT = Path(__file__).resolve().parents[2]
APPS = ("authority", "enrollment", "bundles")
SENDERS = {"send_by_name", "wake", "enqueue"}


def _registered() -> set[str]:
    app.loader.import_default_modules()
    return {name for name in app.tasks if not name.startswith("celery.")}


def _constants() -> dict[str, str]:
    names = {}
    for label in APPS:
        module = importlib.import_module(f"{label}.task_names")
        names.update({f"{label}.task_names.{k}": v for k, v in vars(module).items() if k.isupper()})
    return names


def _sent_names() -> list[str]:
    """The first argument of every send site in the product: a ``task_names`` constant (the rule;
    resolved against the sending app's module) or a string literal."""
    constants = _constants()
    found = []
    for path in ROOT.glob("*/**/*.py"):
        top = path.parts[len(ROOT.parts)]
        if top in {"tests", "bench", ".venv", "devtools"} or "migrations" in path.parts:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not (isinstance(node, ast.Call) and node.args):
                continue
            if getattr(node.func, "id", getattr(node.func, "attr", None)) not in SENDERS:
                continue
            arg = node.args[0]
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                found.append(arg.value)
            elif isinstance(arg, ast.Attribute) and getattr(arg.value, "id", None) == "task_names":
                found.append(constants.get(f"{top}.task_names.{arg.attr}", f"<{top}.task_names.{arg.attr} undefined>"))
    return found


def test_every_task_name_constant_is_a_registered_task() -> None:
    registered = _registered()
    missing = {key: name for key, name in _constants().items() if name not in registered}
    assert missing == {}


def test_every_registered_task_has_a_constant() -> None:
    assert _registered() == set(_constants().values())


def test_no_send_site_names_an_unregistered_task() -> None:
    registered = _registered()
    sent = _sent_names()
    assert len(sent) >= 5  # the scan finds the send sites (signer wakeup, CRL, key generation, renders)
    assert [name for name in sent if name not in registered] == []


def test_beat_and_the_routes_name_registered_tasks() -> None:
    registered = _registered()
    scheduled = {entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values()}
    routed = set(settings.CELERY_TASK_ROUTES)
    assert scheduled - registered == set()
    assert routed - registered == set()
