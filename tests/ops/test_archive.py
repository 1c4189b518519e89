"""The encrypted archive format (authority/backup/stream.py and archive.py): what it carries, and all it refuses."""

from __future__ import annotations

import hashlib
import io
import json
import struct
import tarfile
from typing import Any

import pytest

from authority.backup.archive import Entry, entry_for, read_archive, write_archive
from authority.backup.stream import MAGIC, MIN_SCRYPT_N, TAG_SIZE, ArchiveError, EncryptedWriter

PASS = b"a backup passphrase of some length"
CHUNK = 4096


class _Sink(io.BytesIO):
    def __init__(self, store: dict[str, bytes], name: str) -> None:
        super().__init__()
        self.store, self.name = store, name

    def close(self) -> None:
        self.store[self.name] = self.getvalue()
        super().close()


def _write(members: dict[str, bytes], *, manifest: dict[str, Any] | None = None) -> bytes:
    out = io.BytesIO()
    pairs = [(entry_for(name, io.BytesIO(data), 0o600), io.BytesIO(data)) for name, data in members.items()]
    write_archive(out, PASS, manifest or {"note": "test"}, pairs, scrypt_n=MIN_SCRYPT_N, chunk_size=CHUNK)
    return out.getvalue()


def _read(raw: bytes, passphrase: bytes = PASS) -> tuple[dict[str, Any], dict[str, bytes]]:
    store: dict[str, bytes] = {}
    manifest, _ = read_archive(io.BytesIO(raw), passphrase, lambda entry: _Sink(store, entry.name))
    return manifest, store


MEMBERS = {
    "database/portal.pgdump": bytes(range(256)) * 40,  # over two chunks
    "ca-keys/ca-0123.key": b"-----BEGIN ENCRYPTED PRIVATE KEY-----\n...\n",
    "var/empty": b"",
    "templates/isakmpd/gateway.conf.j2": b"x" * (3 * CHUNK),
}


def test_it_round_trips_every_member_with_its_hash_in_the_manifest() -> None:
    raw = _write(MEMBERS, manifest={"database": {"vendor": "sqlite"}})

    manifest, store = _read(raw)

    assert store == MEMBERS
    assert manifest["format"] == "ca_portal-backup"
    assert manifest["version"] == 1
    assert manifest["database"] == {"vendor": "sqlite"}
    listed = {m["name"]: m for m in manifest["members"]}
    for name, data in MEMBERS.items():
        digest = hashlib.sha256(data).hexdigest()
        assert listed[name] == {"name": name, "size": len(data), "sha256": digest, "mode": "0600"}


def test_the_plaintext_shows_nowhere_in_the_file() -> None:
    secret = b"this text must only be readable with the passphrase" * 3
    raw = _write({"var/django-secret-key": secret})
    assert raw.startswith(MAGIC)
    assert secret[:20] not in raw
    assert b"django-secret-key" not in raw  # the manifest is encrypted too


def test_a_wrong_passphrase_is_named_as_such() -> None:
    raw = _write(MEMBERS)
    with pytest.raises(ArchiveError, match="passphrase is wrong"):
        _read(raw, b"another passphrase, also long")


def _header_end(raw: bytes) -> int:
    (length,) = struct.unpack(">I", raw[8:12])
    return 12 + length


@pytest.mark.parametrize("where", ["header", "first chunk", "middle", "last byte"])
def test_a_changed_byte_anywhere_is_refused(where: str) -> None:
    raw = bytearray(_write(MEMBERS))
    start = _header_end(raw)
    position = {"header": 20, "first chunk": start + 5, "middle": len(raw) // 2, "last byte": len(raw) - 1}[where]
    raw[position] ^= 0x01
    with pytest.raises(ArchiveError):
        _read(bytes(raw))


def test_a_truncated_archive_is_refused_wherever_it_is_cut() -> None:
    raw = _write(MEMBERS)
    start = _header_end(raw)
    chunk = CHUNK + TAG_SIZE
    cuts = {len(raw) - 1, len(raw) - TAG_SIZE, start + chunk, start + 2 * chunk, start + chunk + 100, start + 3, 5}
    last_boundary = start + (len(raw) - start) // chunk * chunk
    cuts.add(last_boundary)  # exactly the last chunk dropped
    for cut in sorted(cuts):
        with pytest.raises(ArchiveError):
            _read(raw[:cut])


def test_chunks_moved_or_repeated_are_refused() -> None:
    raw = _write(MEMBERS)
    start = _header_end(raw)
    chunk = CHUNK + TAG_SIZE
    body = raw[start:]
    first, second, rest = body[:chunk], body[chunk : 2 * chunk], body[2 * chunk :]
    with pytest.raises(ArchiveError):
        _read(raw[:start] + second + first + rest)
    with pytest.raises(ArchiveError):
        _read(raw[:start] + first + first + second + rest)


def test_bytes_after_the_last_chunk_are_refused() -> None:
    with pytest.raises(ArchiveError, match=r"damaged|after its last chunk"):
        _read(_write(MEMBERS) + b"\x00")


def test_it_refuses_what_is_not_an_archive() -> None:
    with pytest.raises(ArchiveError, match="not a ca_portal backup"):
        _read(b"PK\x03\x04 a zip file")
    with pytest.raises(ArchiveError, match="container version 02"):
        _read(MAGIC[:7] + b"\x02" + b"\x00" * 20)


def test_it_refuses_a_header_asking_for_too_much_memory_before_deriving_anything() -> None:
    raw = _write(MEMBERS)
    end = _header_end(raw)
    header = json.loads(raw[12:end])
    header["kdf"]["n"] = 1 << 30
    body = json.dumps(header).encode()
    with pytest.raises(ArchiveError, match="scrypt n is out of range"):
        _read(MAGIC + struct.pack(">I", len(body)) + body + raw[end:])


def test_it_refuses_a_short_passphrase() -> None:
    with pytest.raises(ArchiveError, match="at least 16"):
        EncryptedWriter(io.BytesIO(), b"short", scrypt_n=MIN_SCRYPT_N)


# --- a writer that does not follow the rules: the reader's checks of the tar and the manifest --------------


def _forge(members: list[tuple[tarfile.TarInfo, bytes]], listed: list[dict[str, Any]]) -> bytes:
    """An archive encrypted with the right passphrase whose contents the manifest does not describe."""
    manifest = json.dumps({"format": "ca_portal-backup", "version": 1, "members": listed}).encode()
    out = io.BytesIO()
    writer = EncryptedWriter(out, PASS, scrypt_n=MIN_SCRYPT_N, chunk_size=CHUNK)
    with tarfile.open(fileobj=writer, mode="w|", format=tarfile.PAX_FORMAT) as tar:  # type: ignore[call-overload]
        info = tarfile.TarInfo("manifest.json")
        info.size = len(manifest)
        tar.addfile(info, io.BytesIO(manifest))
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    writer.close()
    return out.getvalue()


def _file(name: str, data: bytes) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, data


def _listed(name: str, data: bytes) -> dict[str, Any]:
    return Entry(name, len(data), hashlib.sha256(data).hexdigest(), 0o600).as_json()


def test_a_member_that_does_not_match_its_hash_is_refused() -> None:
    raw = _forge([_file("var/x", b"what was written")], [_listed("var/x", b"what was hashed")])
    with pytest.raises(ArchiveError, match=r"does not match its SHA-256|regular file of"):
        _read(raw)
    raw = _forge([_file("var/x", b"same length A")], [_listed("var/x", b"same length B")])
    with pytest.raises(ArchiveError, match="does not match its SHA-256"):
        _read(raw)


def test_a_member_the_manifest_does_not_list_is_refused() -> None:
    raw = _forge([_file("var/x", b"1"), _file("var/y", b"2")], [_listed("var/x", b"1")])
    with pytest.raises(ArchiveError, match="does not list"):
        _read(raw)


def test_a_listed_member_that_is_missing_is_refused() -> None:
    raw = _forge([_file("var/x", b"1")], [_listed("var/x", b"1"), _listed("var/y", b"2")])
    with pytest.raises(ArchiveError, match="lacks 1 listed member"):
        _read(raw)


@pytest.mark.parametrize("name", ["../etc/passwd", "/etc/passwd", "var/../../x", "var/.hidden", "var\\x"])
def test_a_name_that_could_climb_out_is_refused(name: str) -> None:
    raw = _forge([_file(name, b"1")], [_listed(name, b"1")])
    with pytest.raises(ArchiveError, match="malformed"):
        _read(raw)


def test_a_link_is_refused_even_when_listed() -> None:
    link = tarfile.TarInfo("var/x")
    link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
    raw = _forge([(link, b"")], [_listed("var/x", b"")])
    with pytest.raises(ArchiveError, match="not the regular file"):
        _read(raw)


def test_a_file_that_changes_while_it_is_written_is_refused() -> None:
    data = b"a checkpoint line\n"
    entry = entry_for("var/audit-checkpoints.log", io.BytesIO(data), 0o600)
    with pytest.raises(ArchiveError, match="changed while"):
        write_archive(
            io.BytesIO(), PASS, {}, [(entry, io.BytesIO(data[:-1] + b"X"))], scrypt_n=MIN_SCRYPT_N, chunk_size=CHUNK
        )
