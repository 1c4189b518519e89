"""The key store's scrypt work factor: production's (pki.keys.SCRYPT_N = 2**14) unless a setting
lowers it, which only tests/settings.py does (CA_KEY_SCRYPT_N) to keep the suite fast."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings as django_settings

from authority import keystore
from pki.keys import SCRYPT_N, load_private_key, public_key_der
from tests.conftest import fixture_bytes
from tests.pkitools import openssl_asn1parse


def _work_factor(path: Path) -> int:
    lines = path.read_bytes().strip().splitlines()
    dump = openssl_asn1parse(base64.b64decode(b"".join(lines[1:-1])))
    integers = [line.split(":")[-1].strip() for line in dump.splitlines() if "INTEGER" in line]
    return int(integers[0], 16)  # scrypt's parameters: N, r, p, key length


@pytest.fixture
def stored(signer: None, key_dir: Path) -> Path:
    keystore.ensure_passphrase_file()
    return key_dir


def test_the_test_settings_lower_it(stored: Path) -> None:
    assert django_settings.CA_KEY_SCRYPT_N < SCRYPT_N
    path = keystore.store_key(load_private_key(fixture_bytes("ca-rsa2048.key"), None), "cheap.key")
    assert _work_factor(path) == django_settings.CA_KEY_SCRYPT_N


def test_without_the_setting_the_key_store_uses_the_production_work_factor(stored: Path, settings: Any) -> None:
    del settings.CA_KEY_SCRYPT_N
    assert not hasattr(django_settings, "CA_KEY_SCRYPT_N")
    path = keystore.store_key(load_private_key(fixture_bytes("ca-rsa2048.key"), None), "production.key")
    assert _work_factor(path) == SCRYPT_N == 2**14
    original = load_private_key(fixture_bytes("ca-rsa2048.key"), None)
    reloaded = load_private_key(path.read_bytes(), keystore.read_passphrase())
    assert public_key_der(reloaded.public_key()) == public_key_der(original.public_key())
