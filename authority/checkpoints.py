"""Signed checkpoints of the audit log, and verification against them (docs/security.md T37).

The hash chain (``authority.audit``) catches a changed event, but whoever can write the database
can also cut the tail, delete everything, or rewrite a row and recompute every later hash and the
head. A checkpoint pins (sequence number, head hash, time) under a signature of the CA key, which
only the signer holds: a database writer cannot make one. Each checkpoint is kept in the database
(``AuditCheckpoint``) and appended to CA_AUDIT_CHECKPOINT_FILE, outside it; auditors can download
the newest one and keep it off the host.

- ``checkpoint_make`` (signer only: ``authority.audit_checkpoint``, every 5 minutes by beat, and
  woken when an append crosses a multiple of CHECKPOINT_EVERY events) signs the current head, after
  checking that the log still extends the newest checkpoint.
- ``log_verify`` walks the chain (``audit_verify``), then checks it against the newest valid
  checkpoint of the database, of the file and of any supplied (downloaded) lines: it names a
  rollback, a wipe and a recomputation.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from django.conf import settings
from django.db import transaction
from django.db.models.signals import post_init, post_save
from django.utils import timezone

from authority import keystore, task_names
from authority.audit import audit_verify, event_hash
from authority.models import AuditCheckpoint, AuditEvent, AuditHead, CertificateAuthority
from pki.checkpoint import (
    Checkpoint,
    CheckpointError,
    certificate_fingerprint,
    checkpoint_parse,
    checkpoint_sign,
    checkpoint_verify,
)

log = logging.getLogger(__name__)

CHECKPOINT_EVERY = 100  # an append that crosses a multiple of this many events wakes the signer's task


class CheckpointRefused(RuntimeError):
    """The signer will not sign: the log no longer extends the newest checkpoint."""


@dataclass(frozen=True)
class LogVerdict:
    """``audit_verify``'s answer, checked against the signed checkpoints.

    ``kind`` is "" when ok, else "chain", "rollback", "wipe", "recomputation" or "checkpoint" (a
    forged or foreign checkpoint). ``newest`` is the newest valid checkpoint that was checked.
    """

    ok: bool
    count: int
    first_bad_seq: int | None
    problem: str
    kind: str = ""
    newest: Checkpoint | None = None
    sources: tuple[str, ...] = field(default=())


def checkpoint_file() -> Path:
    return Path(settings.CA_AUDIT_CHECKPOINT_FILE)


# --- making checkpoints (the signer) ----------------------------------------------------------


def checkpoint_make() -> AuditCheckpoint | None:
    """Sign the chain head, store the checkpoint and append it to the file; None when nothing new.

    Raises ``keystore.SignerUnavailable`` outside the signer (the web tier cannot make one), and
    ``CheckpointRefused`` when the log does not extend the newest checkpoint (it would otherwise
    bless a rewritten log).
    """
    ca = CertificateAuthority.objects.filter(is_active=True).first()
    if ca is None:
        return None
    key = keystore.signing_key(ca)  # before anything else: only a signer gets past this line
    head = AuditHead.objects.filter(pk=1).first()
    if head is None or head.seq == 0:
        return None
    certificates = _ca_certificates()
    newest = _newest_valid(_db_checkpoints(), certificates)
    if newest is not None and newest.seq == head.seq and newest.head == head.hash:
        return None
    _check_extends(newest, head.seq, head.hash)
    checkpoint = checkpoint_sign(seq=head.seq, head=head.hash, at=timezone.now(), ca_key=key, ca_cert=ca.certificate)
    row = AuditCheckpoint.objects.create(seq=checkpoint.seq, at=checkpoint.at, line=checkpoint.line)
    # After the row is committed (autocommit here): the file is never ahead of the database.
    checkpoint_append(checkpoint.line)
    return row


def checkpoint_run() -> AuditCheckpoint | None:
    """The signer task's one call: take the wakeup flag, then make a checkpoint. A refusal is
    logged as an error, not raised: ``audit_verify`` and the hourly check name the damage."""
    from authority.wakeups import wake_done

    wake_done(task_names.AUDIT_CHECKPOINT)
    try:
        return checkpoint_make()
    except CheckpointRefused as exc:
        log.error("audit checkpoint refused: %s", exc)
        return None


def checkpoint_append(line: str) -> None:
    """Append one line to CA_AUDIT_CHECKPOINT_FILE (O_APPEND, mode 0600) and fsync it."""
    path = checkpoint_file()
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, (line + "\n").encode("ascii"))
        os.fsync(fd)
    finally:
        os.close(fd)


def _check_extends(newest: Checkpoint | None, head_seq: int, head_hash: str) -> None:
    """The events after ``newest`` up to the head link up from the hash it signed."""
    if newest is None:
        result = audit_verify()
        if not result.ok:
            raise CheckpointRefused(f"the audit chain is broken at {result.first_bad_seq}: {result.problem}")
        return
    if head_seq < newest.seq:
        raise CheckpointRefused(f"the log ends at {head_seq} but the newest checkpoint covers {newest.seq}")
    prev = AuditEvent.objects.filter(seq=newest.seq).values_list("hash", flat=True).first()
    if prev != newest.head:
        raise CheckpointRefused(f"event {newest.seq} no longer has the hash its checkpoint signed")
    expected = newest.seq + 1
    for row in AuditEvent.objects.filter(seq__gt=newest.seq, seq__lte=head_seq).order_by("seq").iterator(2000):
        digest = event_hash(
            prev, seq=row.seq, at=row.at, actor=row.actor, action=row.action, target=row.target, data=row.data
        )
        if row.seq != expected or row.prev_hash != prev or row.hash != digest:
            raise CheckpointRefused(f"event {expected} does not extend the newest checkpoint")
        prev, expected = digest, expected + 1
    if expected != head_seq + 1 or prev != head_hash:
        raise CheckpointRefused("the chain head does not match the events after the newest checkpoint")


# --- the trigger: every CHECKPOINT_EVERY events ------------------------------------------------


def _remember_loaded_seq(sender: type[AuditHead], instance: AuditHead, **kwargs: Any) -> None:
    instance._checkpoint_loaded_seq = instance.seq  # type: ignore[attr-defined]


def _wake_on_boundary(sender: type[AuditHead], instance: AuditHead, **kwargs: Any) -> None:
    """Every append saves the head it locked: when that save crosses a multiple of
    CHECKPOINT_EVERY, wake the signer's checkpoint task after commit (one debounced message)."""
    before = getattr(instance, "_checkpoint_loaded_seq", instance.seq)
    instance._checkpoint_loaded_seq = instance.seq  # type: ignore[attr-defined]
    if instance.seq // CHECKPOINT_EVERY > before // CHECKPOINT_EVERY:
        from authority.wakeups import wake

        transaction.on_commit(lambda: wake(task_names.AUDIT_CHECKPOINT))


def connect() -> None:
    post_init.connect(_remember_loaded_seq, sender=AuditHead, dispatch_uid="audit-checkpoint-loaded")
    post_save.connect(_wake_on_boundary, sender=AuditHead, dispatch_uid="audit-checkpoint-wake")


# --- reading checkpoints ----------------------------------------------------------------------


def _ca_certificates() -> dict[str, x509.Certificate]:
    """Every CA certificate in the database, by the fingerprint computed from its PEM."""
    certificates = {}
    for pem in CertificateAuthority.objects.values_list("certificate_pem", flat=True):
        try:
            cert = x509.load_pem_x509_certificate(pem.encode("ascii"))
        except ValueError:
            continue
        certificates[certificate_fingerprint(cert)] = cert
    return certificates


def _db_checkpoints() -> Iterator[str]:
    """The stored lines, newest (highest seq) first."""
    return AuditCheckpoint.objects.order_by("-seq", "-pk").values_list("line", flat=True).iterator(500)


def file_checkpoints() -> list[str] | None:
    """The file's complete lines, newest (last) first; None when there is no readable file.
    A last line without its newline (a crash during the append) is left out."""
    try:
        data = checkpoint_file().read_bytes()
    except OSError:
        return None
    lines = data.decode("ascii", errors="replace").split("\n")[:-1]
    return [line for line in reversed(lines) if line.strip()]


def _verified(line: str, certificates: dict[str, x509.Certificate]) -> Checkpoint:
    checkpoint = checkpoint_parse(line)
    cert = certificates.get(checkpoint.ca_fingerprint)
    if cert is None:
        raise CheckpointError(
            f"it is signed by CA certificate {checkpoint.ca_fingerprint[:16]}…, which is not in the database"
            " (was the CA certificate replaced?)"
        )
    checkpoint_verify(checkpoint, cert)
    return checkpoint


def _newest_valid(lines: Iterable[str], certificates: dict[str, x509.Certificate]) -> Checkpoint | None:
    for line in lines:
        try:
            return _verified(line, certificates)
        except CheckpointError:
            continue
    return None


def newest_checkpoint() -> tuple[Checkpoint, str] | None:
    """The newest stored checkpoint whose signature verifies, and its line (the auditors' download)."""
    certificates = _ca_certificates()
    for line in _db_checkpoints():
        try:
            return _verified(line, certificates), line
        except CheckpointError:
            continue
    return None


# --- verification -----------------------------------------------------------------------------


def _signed(checkpoint: Checkpoint) -> str:
    return f"signed {checkpoint.at:%Y-%m-%d %H:%M:%S} UTC"


def log_verify(supplied: Iterable[str] = (), *, use_file: bool = True) -> LogVerdict:
    """Walk the chain, then check it against the newest valid checkpoint of each source.

    ``supplied``: checkpoint lines an auditor kept (``audit_verify --checkpoint FILE``); each must
    verify. The database's newest checkpoint and the file's newest line must verify too: a bad one
    is a forgery. Without any checkpoint the answer is the chain's alone.
    """
    chain = audit_verify()
    if not chain.ok:
        return LogVerdict(False, chain.count, chain.first_bad_seq, chain.problem, "chain")
    count = chain.count
    certificates = _ca_certificates()
    anchors: list[tuple[str, Checkpoint]] = []

    for line in supplied:
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        try:
            anchors.append(("the supplied checkpoint", _verified(line, certificates)))
        except CheckpointError as exc:
            return LogVerdict(False, count, None, f"the supplied checkpoint is not valid: {exc}", "checkpoint")

    file_lines = file_checkpoints() if use_file else None
    if file_lines:
        try:
            anchors.append(("the checkpoint file", _verified(file_lines[0], certificates)))
        except CheckpointError as exc:
            return LogVerdict(
                False, count, None, f"the newest line of {checkpoint_file()} is not valid: {exc}", "checkpoint"
            )

    db_newest_line = next(iter(_db_checkpoints()), None)
    db_newest: Checkpoint | None = None
    if db_newest_line is not None:
        try:
            db_newest = _verified(db_newest_line, certificates)
        except CheckpointError as exc:
            return LogVerdict(False, count, None, f"the newest stored checkpoint is forged: {exc}", "checkpoint")
        anchors.append(("the database", db_newest))

    for source, checkpoint in anchors:
        verdict = _against(checkpoint, source, count, certificates, file_lines)
        if verdict is not None:
            return verdict

    for source, checkpoint in anchors:
        if source != "the database" and (db_newest is None or db_newest.seq < checkpoint.seq):
            stored = "none" if db_newest is None else f"end at event {db_newest.seq}"
            return LogVerdict(
                False,
                count,
                None,
                f"wipe: the stored checkpoints {stored}, but {source} has one for event {checkpoint.seq}"
                f" ({_signed(checkpoint)}): checkpoints were deleted from the database",
                "wipe",
                checkpoint,
            )

    newest = max((checkpoint for _, checkpoint in anchors), key=lambda c: (c.seq, c.at), default=None)
    return LogVerdict(True, count, None, "", "", newest, tuple(source for source, _ in anchors))


def _against(
    checkpoint: Checkpoint,
    source: str,
    count: int,
    certificates: dict[str, x509.Certificate],
    file_lines: list[str] | None,
) -> LogVerdict | None:
    where = f"the checkpoint of {source} ({_signed(checkpoint)})"
    if count == 0:
        return LogVerdict(
            False, 0, 1, f"wipe: the log is empty but {where} covers {checkpoint.seq} events", "wipe", checkpoint
        )
    if count < checkpoint.seq:
        return LogVerdict(
            False,
            count,
            count + 1,
            f"rollback: the log ends at {count} but {where} covers {checkpoint.seq}",
            "rollback",
            checkpoint,
        )
    actual = AuditEvent.objects.filter(seq=checkpoint.seq).values_list("hash", flat=True).first()
    if actual == checkpoint.head:
        return None
    good = _newest_matching_before(checkpoint.seq, certificates, file_lines)
    return LogVerdict(
        False,
        count,
        good + 1,
        f"recomputation: event {checkpoint.seq} does not have the hash {where} signed;"
        f" the log was rewritten after event {good}",
        "recomputation",
        checkpoint,
    )


def _newest_matching_before(seq: int, certificates: dict[str, x509.Certificate], file_lines: list[str] | None) -> int:
    """The highest sequence number below ``seq`` of a valid checkpoint the log still matches (0: none)."""
    candidates: dict[int, str] = {}
    lines = list(file_lines or ())
    lines.extend(AuditCheckpoint.objects.filter(seq__lt=seq).values_list("line", flat=True))
    for line in lines:
        try:
            checkpoint = _verified(line, certificates)
        except CheckpointError:
            continue
        if checkpoint.seq < seq:
            candidates.setdefault(checkpoint.seq, checkpoint.head)
            if candidates[checkpoint.seq] != checkpoint.head:
                candidates[checkpoint.seq] = ""  # two signed heads for one seq: trust neither
    hashes = dict(AuditEvent.objects.filter(seq__in=list(candidates)).values_list("seq", "hash"))
    matching = [s for s, head in candidates.items() if head and hashes.get(s) == head]
    return max(matching, default=0)
