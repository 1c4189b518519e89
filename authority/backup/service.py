"""``backup_create`` and ``backup_restore``: what ``manage.py backup`` and ``manage.py restore`` do.

Order matters for a consistent backup of a running portal:

1. the audit checkpoint file is copied first, so every checkpoint it holds is of an event that the
   database snapshot (taken next) contains;
2. the database snapshot (database.py);
3. the CA keys, the secret key and the template overrides after it, so the key file of every CA in
   the snapshot is there (a key file is written before its CA row is committed).

Everything is staged in a private temporary directory, hashed into the manifest, and written as one
encrypted archive (archive.py) beside the destination, then renamed onto it. A restore decrypts and
checks the whole archive before it changes anything, refuses a target in use unless forced, loads the
database, puts the files back, compares what it finds with the manifest's facts, and verifies the
audit chain.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import stat
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from django.core.management import call_command
from django.db.migrations.loader import MigrationLoader
from django.utils import timezone

from authority import db_roles
from authority.audit import VerifyResult, audit_record, audit_verify
from authority.backup import database, files
from authority.backup.archive import Entry, entry_for, read_archive, write_archive
from authority.backup.errors import BackupError
from authority.backup.stream import DEFAULT_SCRYPT_N, check_passphrase

_READ = 1 << 16
_COMPARED = (
    "audit_events",
    "audit_head",
    "certificates",
    "revoked",
    "crl_number",
    "certificates_sha256",
    "ca_key_files",
)


def read_passphrase_file(path: Path) -> bytes:
    """The backup passphrase: the file's first line. Refused when others may read the file, or short."""
    try:
        mode = path.stat().st_mode
        data = path.read_bytes()
    except OSError as exc:
        raise BackupError(f"cannot read the passphrase file {path}: {exc.strerror}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise BackupError(f"the passphrase file {path} is readable by others; chmod 600 it")
    passphrase = data.split(b"\n", 1)[0].rstrip(b"\r")
    check_passphrase(passphrase)
    return passphrase


class _Tee:
    """Writes through to ``out`` while hashing and counting: the archive's SHA-256 and size."""

    def __init__(self, out: BinaryIO) -> None:
        self.out, self.digest, self.size = out, hashlib.sha256(), 0

    def write(self, data: bytes) -> int:
        self.digest.update(data)
        self.size += len(data)
        return self.out.write(data)


class _HashingReader:
    def __init__(self, src: BinaryIO) -> None:
        self.src, self.digest = src, hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        data = self.src.read(size)
        self.digest.update(data)
        return data


@contextmanager
def _staging(prefix: str) -> Iterator[Path]:
    """A private (0700) directory for the plaintext, removed whatever happens."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


class _Clock:
    def __init__(self) -> None:
        self.times: dict[str, float] = {}
        self._last = time.monotonic()

    def lap(self, name: str) -> None:
        now = time.monotonic()
        self.times[name] = round(now - self._last, 3)
        self._last = now


def _stage_copy(item: files.VarFile, staging: Path) -> Path:
    staged = staging / item.member
    staged.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    shutil.copyfile(item.path, staged)
    os.chmod(staged, 0o600)
    return staged


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass(frozen=True)
class BackupResult:
    path: Path
    size: int
    sha256: str
    manifest: dict[str, Any]
    times: dict[str, float]


def backup_create(*, out: Path, passphrase: bytes, actor: str, scrypt_n: int = DEFAULT_SCRYPT_N) -> BackupResult:
    """Write an encrypted backup of the deployment to ``out`` (mode 0600; never overwritten)."""
    check_passphrase(passphrase)
    out = out.absolute()
    if out.exists():
        raise BackupError(f"{out} exists; give each backup a new name (a backup is never overwritten)")
    if not out.parent.is_dir():
        raise BackupError(f"{out.parent} is not a directory")
    clock = _Clock()
    with _staging("ca_portal-backup-") as staging:
        staged: dict[str, Path] = {}
        modes: dict[str, int] = {}
        for item in files.sources():  # the checkpoints before the snapshot (see the module's docstring)
            if item.member == files.CHECKPOINTS:
                staged[item.member], modes[item.member] = _stage_copy(item, staging), item.mode
        snapshot = database.snapshot(staging)
        clock.lap("database")
        for item in files.sources():
            if item.member != files.CHECKPOINTS:
                staged[item.member], modes[item.member] = _stage_copy(item, staging), item.mode
        missing = [name for name in snapshot.facts["ca_key_files"] if files.KEYS + name not in staged]
        if missing:
            raise BackupError(f"the CA key file {missing[0]} is not in {files.key_dir()}: the backup would be useless")
        order = [snapshot.member, *sorted(staged)]
        paths = {snapshot.member: snapshot.path, **staged}
        modes[snapshot.member] = 0o600
        entries: list[Entry] = []
        for member in order:
            with paths[member].open("rb") as stream:
                entries.append(entry_for(member, stream, modes[member]))
        manifest = {
            "created_at": timezone.now().isoformat(timespec="seconds"),
            "host": socket.gethostname(),
            "database": snapshot.info,
            "facts": snapshot.facts,
            "not_included": "the CA key passphrase (CA_KEY_PASSPHRASE_FILE): keep it apart from the backups",
        }
        fd, partial_name = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".partial")
        partial = Path(partial_name)  # mkstemp: mode 0600
        try:
            with os.fdopen(fd, "wb") as handle, ExitStack() as streams:
                tee = _Tee(handle)
                members = [(entry, streams.enter_context(paths[entry.name].open("rb"))) for entry in entries]
                written = write_archive(tee, passphrase, manifest, members, scrypt_n=scrypt_n)
                handle.flush()
                os.fsync(handle.fileno())
            if out.exists():
                raise BackupError(f"{out} appeared while the backup was being written; it was left alone")
            os.replace(partial, out)
        finally:
            partial.unlink(missing_ok=True)
        _fsync_dir(out.parent)
        clock.lap("archive")
    digest = tee.digest.hexdigest()
    audit_record(
        "backup.created",
        actor=actor,
        target=f"backup:{digest[:16]}",
        file=out.name,
        sha256=digest,
        bytes=tee.size,
        audit_seq=snapshot.facts["audit_head"]["seq"],
        certificates=snapshot.facts["certificates"],
        members=len(entries),
    )
    return BackupResult(out, tee.size, digest, written, clock.times)


def _read_checked(archive: Path, passphrase: bytes, sink: Callable[[Entry], BinaryIO]) -> tuple[dict[str, Any], str]:
    try:
        handle = archive.open("rb")
    except OSError as exc:
        raise BackupError(f"cannot read {archive}: {exc.strerror}") from None
    with handle:
        reader = _HashingReader(handle)
        manifest, _ = read_archive(reader, passphrase, sink)
        while reader.read(_READ):
            pass
    return manifest, reader.digest.hexdigest()


def archive_check(*, archive: Path, passphrase: bytes) -> dict[str, Any]:
    """Decrypt and check the whole archive (every chunk, member and hash) without writing anything."""

    def discard(entry: Entry) -> BinaryIO:
        return open(os.devnull, "wb")  # read_archive closes it

    manifest, _ = _read_checked(archive, passphrase, discard)
    return manifest


@dataclass(frozen=True)
class RestoreResult:
    manifest: dict[str, Any]
    sha256: str
    verify: VerifyResult
    times: dict[str, float]
    moved: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def target_in_use() -> list[str]:
    """Why the target is not empty: tables with rows, and var files a restore would replace."""
    return [f"rows in {table}" for table in database.tables_with_rows()] + files.in_use()


def _check_migrations(info: dict[str, Any]) -> list[tuple[str, str]]:
    """Refuse a backup from a newer ca_portal; return the migrations this code adds to it."""
    known = set(MigrationLoader(None, ignore_no_migrations=True).disk_migrations)
    applied = {(str(app), str(name)) for app, name in info.get("migrations", [])}
    newer = sorted(applied - known)
    if newer:
        raise BackupError(
            f"the backup was made by a newer ca_portal (it has migration {newer[0][0]}.{newer[0][1]}, which this "
            "code lacks): restore it with that version or a later one"
        )
    return sorted(known - applied)


def backup_restore(*, archive: Path, passphrase: bytes, force: bool, actor: str) -> RestoreResult:
    """Restore an archive onto this deployment's database and var dir (empty, unless ``force``)."""
    clock = _Clock()
    with _staging("ca_portal-restore-") as staging:

        def sink(entry: Entry) -> BinaryIO:
            path = staging / entry.name
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            return os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb")

        manifest, sha256 = _read_checked(archive, passphrase, sink)
        clock.lap("decrypt and check")
        info, facts = manifest.get("database"), manifest.get("facts")
        if not isinstance(info, dict) or not isinstance(facts, dict):
            raise BackupError("the manifest lacks its database section")
        members = [str(item["name"]) for item in manifest["members"]]
        db_member = database.PG_MEMBER if info.get("vendor") == "postgresql" else database.SQLITE_MEMBER
        if db_member not in members:
            raise BackupError("the archive holds no database")
        if info.get("vendor") != database.vendor():
            raise BackupError(
                f"the backup is of a {info.get('vendor')} database and this portal runs on {database.vendor()}; "
                "restore it onto the same kind of database"
            )
        others = [member for member in members if member != db_member]
        for member in others:
            files.destination(member)  # an unknown member stops the restore before anything changes
        pending = _check_migrations(info)
        in_use = target_in_use()
        if in_use and not force:
            raise BackupError(
                "the target is in use (" + "; ".join(in_use[:6]) + (" ..." if len(in_use) > 6 else "") + "). "
                "Restore onto an empty database and var dir, or pass --force to replace them: the database is "
                "emptied, the var files are moved aside"
            )
        moved = files.move_aside(timezone.now().strftime("%Y%m%dT%H%M%SZ")) if force else []
        database.wipe()  # on PostgreSQL even an unused target has the tables migrate made
        database.load(staging / db_member, info, staging)
        clock.lap("database")
        for member in others:
            files.install(staging / member, member)
        clock.lap("files")
    found = database.live_facts()
    clock.lap("compare")
    differ = [name for name in _COMPARED if found.get(name) != facts.get(name)]
    if differ:
        raise BackupError(
            "the restored database does not match the backup's manifest ("
            + ", ".join(f"{name}: {found.get(name)} != {facts.get(name)}" for name in differ)
            + "); do not use it"
        )
    absent = [name for name in found["ca_key_files"] if not (files.key_dir() / name).is_file()]
    if absent:
        raise BackupError(f"the CA key file {absent[0]} is not in {files.key_dir()} after the restore")
    notes = []
    if pending:
        call_command("migrate", interactive=False, verbosity=0)
        notes.append(f"applied {len(pending)} migration(s) the backup predates")
    roles = db_roles.restrict_runtime_roles()
    if roles:
        notes.append(f"runtime role privileges set again for {', '.join(roles)}")
    elif db_roles.is_superuser():
        notes.append(
            "restored as a PostgreSQL superuser, which now owns the tables: with the two-role set-up, run "
            "`manage.py db_roles` again (docs/backup.md)"
        )
    audit_record(
        "backup.restored",
        actor=actor,
        target=f"backup:{sha256[:16]}",
        sha256=sha256,
        created_at=str(manifest.get("created_at", "")),
        host=str(manifest.get("host", "")),
        audit_seq=facts["audit_head"]["seq"],
        forced=force,
    )
    verify = audit_verify()
    clock.lap("audit check")
    return RestoreResult(manifest, sha256, verify, clock.times, moved, notes)
