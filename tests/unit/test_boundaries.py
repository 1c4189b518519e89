"""The pure PKI core imports neither Django nor Celery (STYLE.md 2f, habit 1)."""

from __future__ import annotations

import pkgutil
import subprocess
import sys
from pathlib import Path

import pki

ROOT = Path(__file__).resolve().parents[2]
PURE_MODULES = tuple(sorted(f"pki.{m.name}" for m in pkgutil.iter_modules(pki.__path__)))


def test_it_finds_every_module_of_the_pki_package() -> None:
    expected = {"ca", "crl", "csr", "der", "errors", "est", "issue", "keys", "names", "profiles"}
    assert {name.rsplit(".", 1)[1] for name in PURE_MODULES} >= expected


def test_it_imports_the_pure_modules_without_django_or_celery() -> None:
    probe = (
        "import importlib, sys\n"
        f"for m in {PURE_MODULES!r}: importlib.import_module(m)\n"
        "print(','.join(sorted(n for n in sys.modules if n.split('.')[0] in ('django', 'celery'))))\n"
    )
    # A fresh interpreter: this test process has long since imported Django through pytest-django.
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "", f"pure modules pulled in: {out.stdout.strip()}"
