"""The one seam for the CA private key.

The key lives encrypted (PKCS#8, scrypt, AES-256) in CA_KEY_DIR with mode 0600. Its passphrase
is read from CA_KEY_PASSPHRASE_FILE only by a process that has called ``enable_signing()``: the
signer worker (see ca_portal/celery.py) and the CA host's own commands (init_ca, import_ca,
sign_csr). The web tier never calls it, so it cannot sign even when it can read the files; on a
split deployment it cannot read them either.
"""

from __future__ import annotations

import os
import secrets
import stat
import threading
from pathlib import Path

from django.conf import settings

from authority.models import CertificateAuthority
from pki.keys import SCRYPT_N, PrivateKey, encrypt_private_key, load_private_key, public_key_der


class SignerUnavailable(RuntimeError):
    """This process may not use the CA key, or the key/passphrase cannot be read."""


_signing_enabled = False
_lock = threading.Lock()
_keys: dict[tuple[int, str], PrivateKey] = {}


def enable_signing() -> None:
    global _signing_enabled
    _signing_enabled = True


def signing_enabled() -> bool:
    return _signing_enabled


def _passphrase_path() -> Path:
    return Path(settings.CA_KEY_PASSPHRASE_FILE)


def ensure_passphrase_file() -> Path:
    """Make the passphrase file (random, mode 0600) if it does not exist yet; return its path."""
    path = _passphrase_path()
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.write(secrets.token_urlsafe(32) + "\n")
    return path


def read_passphrase() -> bytes:
    if not _signing_enabled:
        raise SignerUnavailable("this process is not a signer: only the signer worker may read the CA key passphrase")
    path = _passphrase_path()
    try:
        mode = path.stat().st_mode
        data = path.read_bytes()
    except OSError as exc:
        raise SignerUnavailable(f"cannot read CA_KEY_PASSPHRASE_FILE {path}: {exc.strerror}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise SignerUnavailable(f"CA_KEY_PASSPHRASE_FILE {path} is readable by others; chmod 600 it")
    passphrase = data.rstrip(b"\r\n")
    if not passphrase:
        raise SignerUnavailable(f"CA_KEY_PASSPHRASE_FILE {path} is empty")
    return passphrase


def store_key(key: PrivateKey, file_name: str) -> Path:
    """Write the key encrypted under the passphrase, mode 0600, refusing to overwrite."""
    key_dir = Path(settings.CA_KEY_DIR)
    key_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = key_dir / file_name
    # CA_KEY_SCRYPT_N is for the test settings only (a cheap work factor); deployments never set it.
    data = encrypt_private_key(key, read_passphrase(), scrypt_n=getattr(settings, "CA_KEY_SCRYPT_N", SCRYPT_N))
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    return path


def signing_key(ca: CertificateAuthority) -> PrivateKey:
    """The CA's private key, loaded once per process: decrypting and validating an RSA key costs
    tens of milliseconds, so the signer keeps it (docs/architecture.md, "Measured costs")."""
    cache_key = (ca.pk, ca.fingerprint_sha256)
    with _lock:
        key = _keys.get(cache_key)
        if key is not None:
            return key
        passphrase = read_passphrase()
        path = Path(settings.CA_KEY_DIR) / ca.key_file
        try:
            pem = path.read_bytes()
        except OSError as exc:
            raise SignerUnavailable(f"cannot read the CA key {path}: {exc.strerror}") from None
        key = load_private_key(pem, passphrase)
        if public_key_der(key.public_key()) != public_key_der(ca.certificate.public_key()):  # type: ignore[arg-type]
            raise SignerUnavailable(f"the key in {path} does not belong to the CA certificate")
        _keys[cache_key] = key
        return key


def forget_keys() -> None:
    with _lock:
        _keys.clear()
