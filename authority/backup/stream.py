"""The encrypted container of a backup archive: chunked AES-256-GCM under a key derived with scrypt.

Pure: ``cryptography`` and the standard library only; it reads and writes only the streams it is
given. The layout (docs/backup.md, "Archive format"):

    magic       8 bytes  b"CAPBKUP" + the container version (0x01)
    header_len  4 bytes  big-endian length of the header
    header      JSON     {"format", "version", "cipher", "chunk_size", "nonce_prefix", "kdf", "key_check"}
    chunks      ...      AES-256-GCM(key, nonce, plaintext chunk, aad) = ciphertext + 16-byte tag

- The key is scrypt(passphrase, salt, n, r=8, p=1); the 64 derived bytes are the AES key and an HMAC
  key. ``key_check`` (HMAC-SHA256 of a fixed label, 16 bytes) tells a wrong passphrase apart from a
  damaged archive without decrypting anything.
- Chunks hold ``chunk_size`` bytes of plaintext, except the last, which holds fewer (possibly none):
  so a reader knows the last chunk by its length. The nonce is nonce_prefix (7 random bytes) || the
  chunk's number (4 bytes) || 1 for the last chunk and 0 otherwise (the STREAM construction): a
  chunk moved, dropped, repeated or cut off, or a last chunk removed, fails authentication. Every
  chunk's additional data is magic || header_len || header, so the parameters cannot be changed.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import struct
from typing import Any, Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from authority.backup.errors import BackupError

MAGIC = b"CAPBKUP\x01"
FORMAT = "ca_portal-backup"
VERSION = 1
CIPHER = "AES-256-GCM"
TAG_SIZE = 16
NONCE_PREFIX_SIZE = 7
SALT_SIZE = 16
DEFAULT_CHUNK_SIZE = 1 << 20
DEFAULT_SCRYPT_N = 1 << 17  # 128 MiB and about a second: paid once per backup or restore
MIN_SCRYPT_N, MAX_SCRYPT_N = 1 << 14, 1 << 18
MIN_CHUNK_SIZE, MAX_CHUNK_SIZE = 1 << 12, 1 << 24
MAX_HEADER = 4096
MIN_PASSPHRASE = 16
_CHECK_LABEL = b"ca_portal-backup passphrase check"
_READ = 1 << 16


class Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


class Writable(Protocol):
    def write(self, data: bytes, /) -> int: ...


class ArchiveError(BackupError):
    """The archive cannot be written or read: a wrong passphrase, damage, truncation, or not an archive."""


def check_passphrase(passphrase: bytes) -> None:
    if len(passphrase) < MIN_PASSPHRASE:
        raise ArchiveError(
            f"the backup passphrase has {len(passphrase)} characters; use at least {MIN_PASSPHRASE} "
            "(for example: openssl rand -base64 32)"
        )


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: object, size: int, what: str) -> bytes:
    try:
        data = base64.b64decode(str(text), validate=True)
    except ValueError:
        raise ArchiveError(f"the archive header's {what} is not base64") from None
    if len(data) != size:
        raise ArchiveError(f"the archive header's {what} has {len(data)} bytes, not {size}")
    return data


def _derive(passphrase: bytes, salt: bytes, n: int) -> tuple[bytes, bytes]:
    material = Scrypt(salt=salt, length=64, n=n, r=8, p=1).derive(passphrase)
    return material[:32], material[32:]


def _key_check(mac_key: bytes) -> bytes:
    return hmac.new(mac_key, _CHECK_LABEL, hashlib.sha256).digest()[:16]


def _nonce(prefix: bytes, counter: int, last: bool) -> bytes:
    if counter > 0xFFFFFFFF:
        raise ArchiveError("the archive is too large for its chunk size")
    return prefix + struct.pack(">IB", counter, 1 if last else 0)


class EncryptedWriter:
    """Encrypts what is written to it onto ``out``. ``close()`` writes the last chunk; without it the
    archive is unreadable (truncated), which is what a crash half-way must give."""

    def __init__(
        self,
        out: Writable,
        passphrase: bytes,
        *,
        scrypt_n: int = DEFAULT_SCRYPT_N,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
    ) -> None:
        check_passphrase(passphrase)
        if not (MIN_SCRYPT_N <= scrypt_n <= MAX_SCRYPT_N and scrypt_n & (scrypt_n - 1) == 0):
            raise ArchiveError(f"scrypt n must be a power of two from {MIN_SCRYPT_N} to {MAX_SCRYPT_N}")
        if not MIN_CHUNK_SIZE <= chunk_size <= MAX_CHUNK_SIZE:
            raise ArchiveError(f"the chunk size must be from {MIN_CHUNK_SIZE} to {MAX_CHUNK_SIZE} bytes")
        salt, self._prefix = os.urandom(SALT_SIZE), os.urandom(NONCE_PREFIX_SIZE)
        key, mac_key = _derive(passphrase, salt, scrypt_n)
        header = {
            "format": FORMAT,
            "version": VERSION,
            "cipher": CIPHER,
            "chunk_size": chunk_size,
            "nonce_prefix": _b64(self._prefix),
            "kdf": {"name": "scrypt", "n": scrypt_n, "r": 8, "p": 1, "salt": _b64(salt), "length": 64},
            "key_check": _b64(_key_check(mac_key)),
        }
        body = json.dumps(header, sort_keys=True, separators=(",", ":")).encode("ascii")
        self._aad = MAGIC + struct.pack(">I", len(body)) + body
        self._aead = AESGCM(key)
        self._out = out
        self._chunk = chunk_size
        self._buffer = bytearray()
        self._counter = 0
        self._closed = False
        out.write(self._aad)

    def write(self, data: bytes | bytearray | memoryview) -> int:
        if self._closed:
            raise ValueError("write to a closed archive")
        self._buffer += data
        while len(self._buffer) >= self._chunk:
            self._emit(bytes(self._buffer[: self._chunk]), last=False)
            del self._buffer[: self._chunk]
        return len(data)

    def _emit(self, plaintext: bytes, *, last: bool) -> None:
        self._out.write(self._aead.encrypt(_nonce(self._prefix, self._counter, last), plaintext, self._aad))
        self._counter += 1

    def close(self) -> None:
        if not self._closed:
            self._emit(bytes(self._buffer), last=True)  # shorter than a chunk: that is how it is known
            self._buffer.clear()
            self._closed = True


class DecryptedReader:
    """Reads back what an ``EncryptedWriter`` wrote, checking every chunk before handing it out."""

    def __init__(self, src: Readable, passphrase: bytes) -> None:
        magic = src.read(len(MAGIC))
        if magic[:7] != MAGIC[:7]:
            raise ArchiveError("this is not a ca_portal backup archive")
        if magic != MAGIC:
            raise ArchiveError(f"this backup archive has container version {magic[7:8].hex()}; this ca_portal reads 01")
        raw_len = src.read(4)
        if len(raw_len) != 4:
            raise ArchiveError("the archive is truncated in its header")
        (length,) = struct.unpack(">I", raw_len)
        if length > MAX_HEADER:
            raise ArchiveError("the archive header is too long")
        body = src.read(length)
        if len(body) != length:
            raise ArchiveError("the archive is truncated in its header")
        header = self._header(body)
        kdf = header["kdf"]
        salt = _unb64(kdf.get("salt"), SALT_SIZE, "salt")
        self._prefix = _unb64(header.get("nonce_prefix"), NONCE_PREFIX_SIZE, "nonce prefix")
        expected_check = _unb64(header.get("key_check"), 16, "key check")
        key, mac_key = _derive(passphrase, salt, kdf["n"])
        if not hmac.compare_digest(_key_check(mac_key), expected_check):
            raise ArchiveError("the backup passphrase is wrong for this archive")
        self._aad = magic + raw_len + body
        self._aead = AESGCM(key)
        self._src = src
        self._chunk = int(header["chunk_size"])
        self._counter = 0
        self._plain = b""
        self._offset = 0
        self._done = False

    @staticmethod
    def _header(body: bytes) -> dict[str, Any]:
        try:
            header = json.loads(body.decode("ascii"))
        except (UnicodeDecodeError, ValueError):
            raise ArchiveError("the archive header is not JSON") from None
        if not isinstance(header, dict) or header.get("format") != FORMAT:
            raise ArchiveError("this is not a ca_portal backup archive")
        if header.get("version") != VERSION or header.get("cipher") != CIPHER:
            raise ArchiveError(
                f"unsupported archive version or cipher: {header.get('version')}, {header.get('cipher')}"
            )
        kdf = header.get("kdf")
        if not isinstance(kdf, dict) or kdf.get("name") != "scrypt" or (kdf.get("r"), kdf.get("p")) != (8, 1):
            raise ArchiveError("unsupported key derivation in the archive header")
        n, size = kdf.get("n"), header.get("chunk_size")
        if not isinstance(n, int) or not MIN_SCRYPT_N <= n <= MAX_SCRYPT_N or n & (n - 1):
            raise ArchiveError("the archive header's scrypt n is out of range")
        if not isinstance(size, int) or not MIN_CHUNK_SIZE <= size <= MAX_CHUNK_SIZE:
            raise ArchiveError("the archive header's chunk size is out of range")
        return header

    def _next_chunk(self) -> None:
        want = self._chunk + TAG_SIZE
        data = b""
        while len(data) < want:
            more = self._src.read(want - len(data))
            if not more:
                break
            data += more
        last = len(data) < want
        if len(data) < TAG_SIZE:
            raise ArchiveError("the archive is truncated: its last chunk is missing")
        try:
            self._plain = self._aead.decrypt(_nonce(self._prefix, self._counter, last), data, self._aad)
        except InvalidTag:  # changed bytes, a chunk out of place, or a cut inside a chunk
            raise ArchiveError(f"the archive is damaged or truncated at chunk {self._counter}") from None
        self._offset = 0
        self._counter += 1
        if last:
            self._done = True

    def read(self, size: int = -1) -> bytes:
        out = bytearray()
        while size < 0 or len(out) < size:
            if self._offset >= len(self._plain):
                if self._done:
                    break
                self._next_chunk()
                continue
            left = len(self._plain) - self._offset
            take = left if size < 0 else min(size - len(out), left)
            out += self._plain[self._offset : self._offset + take]
            self._offset += take
        return bytes(out)

    def finish(self) -> None:
        """Read (and authenticate) the rest, up to the last chunk; refuse bytes after it."""
        while self.read(_READ):
            pass
        if self._src.read(1):
            raise ArchiveError("the archive has data after its last chunk")
