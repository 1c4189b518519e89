"""The files of a deployment that a backup carries besides the database, and where they go back.

- ``ca-keys/<name>``: CA_KEY_DIR/<name>, the CA keys (encrypted, scrypt PKCS#8); restored 0600.
- ``var/django-secret-key``: VAR_DIR/django-secret-key, when it holds the SECRET_KEY in use; 0600.
- ``var/audit-checkpoints.log``: CA_AUDIT_CHECKPOINT_FILE (default VAR_DIR/audit-checkpoints.log),
  when it exists; 0600.
- ``templates/<path>``: CA_PORTAL_CONFIG_TEMPLATES/<path>, the site's template overrides; 0644.

Never the CA key passphrase (CA_KEY_PASSPHRASE_FILE), whatever directory it is in: a backup and its
passphrase must not be enough to sign. Nor the broker's queue, static files or Celery's schedule,
which the portal makes again.
"""

from __future__ import annotations

import os
import shutil
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings

from authority.backup.archive import name_allowed
from authority.backup.errors import BackupError

KEYS = "ca-keys/"
TEMPLATES = "templates/"
SECRET_KEY_MEMBER = "var/django-secret-key"  # noqa: S105 (an archive member name, not a secret)
CHECKPOINTS = "var/audit-checkpoints.log"
SECRET_MODE, PUBLIC_MODE = 0o600, 0o644


@dataclass(frozen=True)
class VarFile:
    member: str
    path: Path
    mode: int


def key_dir() -> Path:
    return Path(settings.CA_KEY_DIR)


def templates_dir() -> Path:
    return Path(settings.CONFIG_TEMPLATE_OVERRIDES)


def checkpoint_file() -> Path:
    """CA_AUDIT_CHECKPOINT_FILE when the settings define it, else where it is kept by default."""
    configured = getattr(settings, "CA_AUDIT_CHECKPOINT_FILE", None)
    return Path(configured) if configured else Path(settings.VAR_DIR) / "audit-checkpoints.log"


def secret_key_file() -> Path:
    return Path(settings.VAR_DIR) / "django-secret-key"


def passphrase_file() -> Path:
    return Path(settings.CA_KEY_PASSPHRASE_FILE)


def _regular_files(root: Path) -> Iterator[Path]:
    """Regular files under ``root``, sorted; a symlink or special file there is refused, not followed."""
    if not root.is_dir():
        return
    for path in sorted(root.rglob("*")):
        mode = path.lstat().st_mode
        if stat.S_ISDIR(mode):
            continue
        if not stat.S_ISREG(mode):
            raise BackupError(f"{path} is not a regular file (a link?); move it away or replace it with the file")
        yield path


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def sources() -> list[VarFile]:
    """Every file the backup takes from the var dir and the template overrides, in member order."""
    secret_passphrase = passphrase_file()
    found: list[VarFile] = []
    for path in _regular_files(key_dir()):
        if path.parent != key_dir():
            raise BackupError(f"{path}: the CA key directory holds only files, no sub-directories")
        found.append(VarFile(KEYS + path.name, path, SECRET_MODE))
    secret = secret_key_file()
    if secret.is_file() and secret.read_text(encoding="ascii", errors="replace").strip() == settings.SECRET_KEY:
        found.append(VarFile(SECRET_KEY_MEMBER, secret, SECRET_MODE))
    checkpoints = checkpoint_file()
    if checkpoints.is_file():
        found.append(VarFile(CHECKPOINTS, checkpoints, SECRET_MODE))
    for path in _regular_files(templates_dir()):
        found.append(VarFile(TEMPLATES + path.relative_to(templates_dir()).as_posix(), path, PUBLIC_MODE))
    for item in found:
        if _same_file(item.path, secret_passphrase):
            raise BackupError(f"{item.path} is the CA key passphrase file, which a backup never holds; move it")
        if not name_allowed(item.member):
            raise BackupError(f"{item.path} cannot be backed up under that name: use letters, digits, '.', '_', '-'")
    return found


def destination(member: str) -> Path:
    """Where a restored member goes, from the target's settings (never from the archive's paths)."""
    if member.startswith(KEYS) and "/" not in member[len(KEYS) :]:
        return key_dir() / member[len(KEYS) :]
    if member.startswith(TEMPLATES):
        return templates_dir().joinpath(*member[len(TEMPLATES) :].split("/"))
    if member == SECRET_KEY_MEMBER:
        return secret_key_file()
    if member == CHECKPOINTS:
        return checkpoint_file()
    raise BackupError(f"the archive holds {member!r}, which this ca_portal does not know where to put")


def in_use() -> list[str]:
    """What a restore would replace in the var dir: CA keys, audit checkpoints, template overrides.
    (The secret key does not count: every start of the portal makes one when there is none.)"""
    found = []
    if key_dir().is_dir() and any(key_dir().iterdir()):
        found.append(f"CA keys in {key_dir()}")
    if checkpoint_file().exists():
        found.append(f"audit checkpoints in {checkpoint_file()}")
    if templates_dir().is_dir() and any(templates_dir().iterdir()):
        found.append(f"template overrides in {templates_dir()}")
    return found


def move_aside(stamp: str) -> list[str]:
    """Before a forced restore: rename what ``in_use`` found to ``<name>.before-restore-<stamp>``.
    Nothing is deleted; the operator removes those once the restored portal works."""
    moved = []
    for path in (key_dir(), checkpoint_file(), templates_dir()):
        if path.exists() and (not path.is_dir() or any(path.iterdir())):
            aside = path.with_name(f"{path.name}.before-restore-{stamp}")
            path.rename(aside)
            moved.append(f"{path} -> {aside}")
    return moved


def install(staged: Path, member: str) -> Path:
    """Put one verified member in place: written beside its destination, then renamed over it."""
    target = destination(member)
    secret = not member.startswith(TEMPLATES)
    target.parent.mkdir(mode=0o700 if secret else 0o755, parents=True, exist_ok=True)
    if member.startswith(KEYS):
        os.chmod(target.parent, 0o700)
    temporary = target.with_name(f".{target.name}.restoring")
    with staged.open("rb") as source:
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, SECRET_MODE)
        with os.fdopen(fd, "wb") as handle:
            shutil.copyfileobj(source, handle)
            handle.flush()
            os.fsync(handle.fileno())
    os.chmod(temporary, SECRET_MODE if secret else PUBLIC_MODE)
    os.replace(temporary, target)
    return target
