"""The peer's zip bundle, built deterministically (pure: no Django, no clock, no file system).

Why each rule (docs/security.md T25, docs/architecture.md "What a peer's bundle holds"):

- Entries are written with ``writestr``/``mkdir`` and an explicit ``ZipInfo``, never
  ``ZipFile.write()``: that copies the mode of whatever file is on the server's disk, and isakmpd
  silently ignores a config or key that is readable by group or other (docs/formats.md §1.1).
- ``create_system = 3`` (Unix) is what makes unzip honour the mode bits in ``external_attr``.
- Explicit directory entries (0755, ``private/`` 0700) so unzip creates them with the right mode
  instead of from its umask.
- Fixed timestamps, sorted entries and a fixed compression level: the same files give the same
  bytes, so a bundle's sha256 identifies it and an existing archive can be reused (docs/conventions.md §2c).
  (The bytes also depend on the zlib build; within one deployment they are stable.)
- Entry names come from a strict allow-list of characters and shapes: nothing that can climb
  out of the extraction directory (``..``, absolute paths, backslashes) or confuse a tool.
"""

from __future__ import annotations

import hashlib
import io
import re
import stat
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from bundles.renderers.spec import validate_fqdn_field

ZIP_DATE_TIME = (1980, 1, 1, 0, 0, 0)  # the earliest date a zip header can hold
COMPRESS_LEVEL = 9
SUMS_NAME = "SHA256SUMS"
MAX_PATH_LENGTH = 200
MAX_FILES = 64

_SEGMENT = r"[A-Za-z0-9._-]+"
_PATH = re.compile(rf"{_SEGMENT}(?:/{_SEGMENT})*")
# Directories whose contents are nobody else's business: created 0700 like /etc/isakmpd/private.
_PRIVATE_DIRS = frozenset({"private"})
# File modes a bundle may carry. No setuid/setgid/sticky, no group or other write: anything else
# is a bug in the caller, never something to pass on to a peer's file system.
_ALLOWED_MODE_BITS = 0o755


@dataclass(frozen=True)
class BundleFile:
    """One file of the bundle: ``path`` relative to the bundle's root directory."""

    path: str
    content: bytes
    mode: int


def validate_path(path: str) -> str:
    """Return ``path`` if it is a safe relative entry name, else raise ValueError.

    Segments of ``[A-Za-z0-9._-]`` separated by single ``/``; no empty, ``.`` or ``..`` segment,
    no leading or trailing ``/``, no backslash, ASCII only.
    """
    if not isinstance(path, str) or len(path) > MAX_PATH_LENGTH or not _PATH.fullmatch(path):
        raise ValueError(f"refusing bundle path {str(path)[:60]!r}")
    if any(segment in (".", "..") for segment in path.split("/")):
        raise ValueError(f"refusing bundle path {path[:60]!r}")
    return path


def _validate_mode(path: str, mode: int) -> int:
    if type(mode) is not int or mode & ~_ALLOWED_MODE_BITS or not mode & stat.S_IRUSR:
        raise ValueError(f"refusing mode {mode!r} for {path}")
    return mode


def _validated(files: Iterable[BundleFile]) -> list[BundleFile]:
    """The files sorted by path, every path and mode checked, no duplicates, no file-vs-directory clash."""
    checked = sorted(files, key=lambda f: f.path)
    if len(checked) > MAX_FILES:
        raise ValueError(f"a bundle holds at most {MAX_FILES} files")
    paths: set[str] = set()
    for item in checked:
        validate_path(item.path)
        _validate_mode(item.path, item.mode)
        if not isinstance(item.content, bytes):
            raise ValueError(f"{item.path}: content must be bytes")
        if item.path in paths:
            raise ValueError(f"duplicate bundle path {item.path}")
        paths.add(item.path)
    for path in paths:
        for parent in _parents(path):
            if parent in paths:
                raise ValueError(f"{parent} is both a file and a directory")
    return checked


def _parents(path: str) -> list[str]:
    """``a/b/c`` -> ``["a", "a/b"]``."""
    segments = path.split("/")
    return ["/".join(segments[:i]) for i in range(1, len(segments))]


def sha256sums(files: Iterable[BundleFile]) -> str:
    """``sha256sum`` output for every file but SHA256SUMS itself, sorted by path.

    ``cd <fqdn> && sha256sum -c SHA256SUMS`` checks it; install.sh does so before it installs.
    """
    lines = [
        f"{hashlib.sha256(item.content).hexdigest()}  {item.path}\n"
        for item in _validated(files)
        if item.path != SUMS_NAME
    ]
    return "".join(lines)


def _dir_entry(name: str, mode: int) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name + "/", date_time=ZIP_DATE_TIME)
    info.create_system = 3
    # 0x10 is the MS-DOS directory flag; some unzip tools look only at that.
    info.external_attr = ((stat.S_IFDIR | mode) << 16) | 0x10
    info.compress_type = zipfile.ZIP_STORED
    info.file_size = 0
    info.compress_size = 0
    info.CRC = 0
    return info


def _file_entry(name: str, mode: int) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=ZIP_DATE_TIME)
    info.create_system = 3
    info.external_attr = (stat.S_IFREG | mode) << 16
    info.compress_type = zipfile.ZIP_DEFLATED
    return info


def build_zip(root: str, files: Sequence[BundleFile]) -> bytes:
    """The zip: every entry under ``<root>/``, directories first in tree order, fixed metadata.

    ``root`` is the peer's FQDN (validated here as well: it becomes a directory on the peer).
    The same ``root`` and files (in any order) always give the same bytes.
    """
    validate_fqdn_field(root)
    checked = _validated(files)
    directories = {parent for item in checked for parent in _parents(item.path)}
    entries: list[tuple[list[str], zipfile.ZipInfo, bytes | None]] = [([], _dir_entry(root, 0o755), None)]
    for directory in directories:
        mode = 0o700 if directory.rsplit("/", 1)[-1] in _PRIVATE_DIRS else 0o755
        entries.append((directory.split("/"), _dir_entry(f"{root}/{directory}", mode), None))
    for item in checked:
        entries.append((item.path.split("/"), _file_entry(f"{root}/{item.path}", item.mode), item.content))
    # Sorting by segments puts every directory before what it holds, whatever the characters.
    entries.sort(key=lambda entry: entry[0])

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=COMPRESS_LEVEL) as archive:
        for _, info, content in entries:
            if content is None:
                archive.mkdir(info)
            else:
                archive.writestr(info, content, compress_type=zipfile.ZIP_DEFLATED, compresslevel=COMPRESS_LEVEL)
    return buffer.getvalue()


def content_disposition(fqdn: str) -> str:
    """The download's Content-Disposition: server-made ASCII only (CVE-2022-36359 was a user-made name)."""
    validate_fqdn_field(fqdn)
    return f'attachment; filename="{fqdn}.zip"'
