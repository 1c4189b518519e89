"""The backup archive: a tar stream with a JSON manifest first, inside the encrypted container of
``stream``.

Pure: ``cryptography`` and the standard library only; no Django, no settings, no clock. It reads and
writes only the streams it is given. The plaintext is an uncompressed POSIX tar (pax). Its first
member is ``manifest.json``, which lists every other member with its size, mode and SHA-256. A
reader refuses members that are not regular files, are not in the manifest, come twice, or differ
from their entry, and refuses the archive when a listed member is missing (docs/backup.md).
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import tarfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, BinaryIO

from authority.backup.stream import (
    DEFAULT_CHUNK_SIZE,
    DEFAULT_SCRYPT_N,
    FORMAT,
    VERSION,
    ArchiveError,
    DecryptedReader,
    EncryptedWriter,
    Readable,
    Writable,
)

MANIFEST = "manifest.json"
MAX_MANIFEST = 1 << 20
MAX_MEMBERS = 10_000
MAX_NAME = 255
_READ = 1 << 16
_SEGMENT = r"[A-Za-z0-9_-][A-Za-z0-9._-]*"  # no empty, hidden, "." or ".." segment
_NAME = re.compile(rf"{_SEGMENT}(?:/{_SEGMENT})*")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_MODE = re.compile(r"0[0-7]{3}")


def name_allowed(name: str) -> bool:
    """A member name the format can carry: relative, plain characters, nothing that climbs out."""
    return len(name) <= MAX_NAME and _NAME.fullmatch(name) is not None and name != MANIFEST


@dataclass(frozen=True)
class Entry:
    """One member of the archive as the manifest lists it."""

    name: str
    size: int
    sha256: str
    mode: int

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, "size": self.size, "sha256": self.sha256, "mode": f"{self.mode:04o}"}


def entry_for(name: str, stream: Readable, mode: int) -> Entry:
    """Hash a member's content (read to the end) for the manifest."""
    if not name_allowed(name):
        raise ArchiveError(f"{name!r} cannot be stored: use letters, digits, '.', '_' and '-' only")
    digest, size = hashlib.sha256(), 0
    while chunk := stream.read(_READ):
        digest.update(chunk)
        size += len(chunk)
    return Entry(name, size, digest.hexdigest(), mode & 0o777)


def _tarinfo(name: str, size: int, mode: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime, info.type = size, mode, 0, tarfile.REGTYPE
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


class _Hashing(io.RawIOBase):
    """Passes a member's bytes to tarfile while hashing them, so a file that changed after it was
    hashed for the manifest is caught while it is written."""

    def __init__(self, stream: Readable) -> None:
        self.stream, self.digest, self.size = stream, hashlib.sha256(), 0

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        data = self.stream.read(size)
        self.digest.update(data)
        self.size += len(data)
        return data


def write_archive(
    out: Writable,
    passphrase: bytes,
    manifest: dict[str, Any],
    members: Sequence[tuple[Entry, Readable]],
    *,
    scrypt_n: int = DEFAULT_SCRYPT_N,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> dict[str, Any]:
    """Write the encrypted archive: ``manifest`` (plus its ``members`` list) first, then each member
    from its stream, positioned at its start. Returns the manifest as written."""
    names = [entry.name for entry, _ in members]
    if len(set(names)) != len(names) or not all(name_allowed(name) for name in names):
        raise ArchiveError("member names must be distinct and allowed")
    if len(members) > MAX_MEMBERS:
        raise ArchiveError(f"more than {MAX_MEMBERS} files to back up")
    full = {**manifest, "format": FORMAT, "version": VERSION, "members": [entry.as_json() for entry, _ in members]}
    body = json.dumps(full, indent=1, sort_keys=True).encode("utf-8")
    if len(body) > MAX_MANIFEST:
        raise ArchiveError("the manifest is too large")
    writer = EncryptedWriter(out, passphrase, scrypt_n=scrypt_n, chunk_size=chunk_size)
    with tarfile.open(fileobj=writer, mode="w|", format=tarfile.PAX_FORMAT) as tar:  # type: ignore[call-overload]
        tar.addfile(_tarinfo(MANIFEST, len(body), 0o600), io.BytesIO(body))
        for entry, stream in members:
            hashing = _Hashing(stream)
            tar.addfile(_tarinfo(entry.name, entry.size, entry.mode), hashing)
            if (hashing.size, hashing.digest.hexdigest()) != (entry.size, entry.sha256) or stream.read(1):
                raise ArchiveError(f"{entry.name} changed while it was being backed up")
    writer.close()
    return full


def _manifest_entries(manifest: Any) -> dict[str, Entry]:
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ArchiveError("the archive's manifest is not a ca_portal backup manifest")
    if manifest.get("version") != VERSION:
        raise ArchiveError(f"the manifest has version {manifest.get('version')}; this ca_portal reads {VERSION}")
    raw = manifest.get("members")
    if not isinstance(raw, list) or len(raw) > MAX_MEMBERS:
        raise ArchiveError("the manifest does not list the archive's members")
    entries: dict[str, Entry] = {}
    for item in raw:
        if not isinstance(item, dict):
            raise ArchiveError("a manifest entry is not an object")
        name, size, digest, mode = item.get("name"), item.get("size"), item.get("sha256"), item.get("mode")
        if (
            not isinstance(name, str)
            or not name_allowed(name)
            or name in entries
            or not isinstance(size, int)
            or size < 0
            or not isinstance(digest, str)
            or not _SHA256.fullmatch(digest)
            or not isinstance(mode, str)
            or not _MODE.fullmatch(mode)
        ):
            raise ArchiveError(f"the manifest entry {str(name)[:80]!r} is malformed or repeated")
        entries[name] = Entry(name, size, digest, int(mode, 8))
    return entries


def read_archive(
    src: Readable, passphrase: bytes, sink: Callable[[Entry], BinaryIO]
) -> tuple[dict[str, Any], list[Entry]]:
    """Decrypt and check the whole archive, writing each member to ``sink(entry)`` (which opens the
    destination; it is closed here). Returns the manifest and its entries once every chunk, every
    member and every hash has checked out; anything else raises ``ArchiveError``. The caller must not
    use what the sink received before this returns."""
    reader = DecryptedReader(src, passphrase)
    entries: dict[str, Entry] = {}
    seen: set[str] = set()
    manifest: dict[str, Any] = {}
    try:
        with tarfile.open(fileobj=reader, mode="r|") as tar:  # type: ignore[call-overload]
            for info in tar:
                if not manifest:
                    if info.name != MANIFEST or not info.isreg() or info.size > MAX_MANIFEST:
                        raise ArchiveError("the archive does not start with its manifest")
                    handle = tar.extractfile(info)
                    assert handle is not None  # a regular file
                    try:
                        manifest = json.loads(handle.read().decode("utf-8"))
                    except (UnicodeDecodeError, ValueError):
                        raise ArchiveError("the archive's manifest is not JSON") from None
                    entries = _manifest_entries(manifest)
                    continue
                entry = entries.get(info.name)
                if entry is None or info.name in seen:
                    raise ArchiveError(f"the archive holds {info.name[:80]!r}, which its manifest does not list")
                if not info.isreg() or info.size != entry.size:
                    raise ArchiveError(f"{entry.name} is not the regular file of {entry.size} bytes the manifest lists")
                seen.add(entry.name)
                _copy_checked(tar, info, entry, sink)
    except tarfile.TarError as exc:
        raise ArchiveError(f"the archive's contents are not a valid tar stream: {exc}") from None
    if not manifest:
        raise ArchiveError("the archive is empty")
    missing = sorted(set(entries) - seen)
    if missing:
        raise ArchiveError(f"the archive lacks {len(missing)} listed member(s), first {missing[0]}")
    reader.finish()
    return manifest, list(entries.values())


def _copy_checked(tar: tarfile.TarFile, info: tarfile.TarInfo, entry: Entry, sink: Callable[[Entry], BinaryIO]) -> None:
    handle = tar.extractfile(info)
    assert handle is not None  # a regular file
    digest = hashlib.sha256()
    with sink(entry) as out:
        while chunk := handle.read(_READ):
            digest.update(chunk)
            out.write(chunk)
    if digest.hexdigest() != entry.sha256:
        raise ArchiveError(f"{entry.name} does not match its SHA-256 in the manifest")
