"""What the bundle page shows of a changed file: diff lines by kind, and a CRL's change in words.

Pure (habit 1): text in, frozen values out, no Django. The page colours diff lines by their kind
with CSS classes (the Content-Security-Policy allows no style attributes), and shows a changed CRL
as what changed in it (its number, the certificates added to it or taken off) instead of a diff of
base64 that nobody can read.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from datetime import datetime

from cryptography import x509

CRL_SUFFIX = ".crl"
CRL_ENTRIES_SHOWN = 50  # a CRL change lists at most this many added (and removed) entries


@dataclass(frozen=True)
class DiffLine:
    kind: str  # "file" (the ---/+++ header), "hunk" (@@), "add", "del" or "same"
    text: str  # without its newline


def diff_lines(before: str, after: str, *, fromfile: str, tofile: str) -> tuple[DiffLine, ...]:
    """The unified diff of two texts, line by line with its kind; empty when they are equal."""
    lines: list[DiffLine] = []
    for line in difflib.unified_diff(before.splitlines(), after.splitlines(), fromfile, tofile, lineterm=""):
        if len(lines) < 2 and line.startswith(("--- ", "+++ ")):
            kind = "file"
        elif line.startswith("@@"):
            kind = "hunk"
        elif line.startswith("+"):
            kind = "add"
        elif line.startswith("-"):
            kind = "del"
        else:
            kind = "same"
        lines.append(DiffLine(kind, line))
    return tuple(lines)


@dataclass(frozen=True)
class RevokedSerial:
    serial: str  # lower-case hex, as the portal stores serials
    revoked_at: datetime
    reason: str  # the RFC 5280 name ("keyCompromise"), "" when the entry has none


@dataclass(frozen=True)
class CrlFacts:
    number: int | None
    this_update: datetime
    next_update: datetime | None
    entries: int


@dataclass(frozen=True)
class CrlChange:
    before: CrlFacts
    after: CrlFacts
    added: tuple[RevokedSerial, ...]  # at most CRL_ENTRIES_SHOWN
    removed: tuple[RevokedSerial, ...]  # at most CRL_ENTRIES_SHOWN
    added_count: int
    removed_count: int


def is_crl(path: str) -> bool:
    return path.endswith(CRL_SUFFIX)


def _load(pem: str) -> x509.CertificateRevocationList | None:
    try:
        return x509.load_pem_x509_crl(pem.encode("ascii"))
    except (ValueError, UnicodeEncodeError):
        return None


def _facts(crl: x509.CertificateRevocationList) -> CrlFacts:
    try:
        number: int | None = crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    except x509.ExtensionNotFound:
        number = None
    return CrlFacts(number, crl.last_update_utc, crl.next_update_utc, len(crl))


def _entries(crl: x509.CertificateRevocationList) -> dict[int, RevokedSerial]:
    out = {}
    for entry in crl:
        try:
            reason = entry.extensions.get_extension_for_class(x509.CRLReason).value.reason.value
        except x509.ExtensionNotFound:
            reason = ""
        out[entry.serial_number] = RevokedSerial(f"{entry.serial_number:x}", entry.revocation_date_utc, reason)
    return out


def crl_facts(pem: str) -> CrlFacts | None:
    """The number, dates and size of a PEM CRL; None when the text is no CRL."""
    crl = _load(pem)
    return _facts(crl) if crl is not None else None


def crl_change(before: str, after: str) -> CrlChange | None:
    """What changed between two PEM CRLs: their facts and the entries added and removed (in serial
    order, the first CRL_ENTRIES_SHOWN of each); None when either text is no CRL."""
    old, new = _load(before), _load(after)
    if old is None or new is None:
        return None
    old_entries, new_entries = _entries(old), _entries(new)
    added = [new_entries[s] for s in sorted(new_entries.keys() - old_entries.keys())]
    removed = [old_entries[s] for s in sorted(old_entries.keys() - new_entries.keys())]
    return CrlChange(
        before=_facts(old),
        after=_facts(new),
        added=tuple(added[:CRL_ENTRIES_SHOWN]),
        removed=tuple(removed[:CRL_ENTRIES_SHOWN]),
        added_count=len(added),
        removed_count=len(removed),
    )
