"""Fixtures for the authority tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _no_signing_leaks() -> Iterator[None]:
    """The CA-host commands (init_ca, import_ca, sign_csr) call ``keystore.enable_signing()`` for the
    life of the process; put the flag and the key cache back so no later test runs as a signer."""
    from authority import keystore

    yield
    keystore._signing_enabled = False
    keystore.forget_keys()


@pytest.fixture(autouse=True)
def checkpoint_file(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh CA_AUDIT_CHECKPOINT_FILE per test: never the var dir's, which a running portal appends to."""
    from django.conf import settings

    path = tmp_path_factory.mktemp("checkpoints") / "audit-checkpoints.log"
    monkeypatch.setattr(settings, "CA_AUDIT_CHECKPOINT_FILE", path)
    return path
