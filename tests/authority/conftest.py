"""Fixtures for the authority tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True)
def _no_signing_leaks() -> Iterator[None]:
    """The CA-host commands (init_ca, import_ca, sign_csr) call ``keystore.enable_signing()`` for the
    life of the process; put the flag and the key cache back so no later test runs as a signer."""
    from authority import keystore

    yield
    keystore._signing_enabled = False
    keystore.forget_keys()
