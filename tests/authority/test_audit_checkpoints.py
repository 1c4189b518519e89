"""Signed audit checkpoints: rollback, wipe and recomputation of the log are named (T37)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command

from authority import keystore, task_names
from authority.audit import GENESIS, audit_record, event_hash
from authority.checkpoints import CheckpointRefused, checkpoint_make, log_verify, newest_checkpoint
from authority.models import AuditCheckpoint, AuditEvent, AuditHead, CertificateAuthority
from authority.tasks import audit_checkpoint_task
from pki.checkpoint import Checkpoint, CheckpointError, checkpoint_parse, checkpoint_sign, checkpoint_verify
from pki.keys import load_private_key
from tests.conftest import fixture_bytes

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("audit_tamperable")]  # they play the attacker


def _events(count: int) -> None:
    for n in range(count):
        audit_record("test.event", actor="user:alice", target=f"thing:{n}", n=n)


def _head() -> int:
    return AuditHead.objects.get(pk=1).seq


def _command(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    try:
        call_command("audit_verify", *args, stdout=out, stderr=err)
    except SystemExit as exc:
        return int(exc.code or 0), out.getvalue(), err.getvalue()
    return 0, out.getvalue(), err.getvalue()


def _cut_tail_to(seq: int) -> None:
    """The attacker's rollback: delete the events after ``seq`` and move the head back."""
    AuditEvent.objects.filter(seq__gt=seq).delete()
    last = AuditEvent.objects.get(seq=seq)
    AuditHead.objects.filter(pk=1).update(seq=seq, hash=last.hash)


def _wipe() -> None:
    AuditEvent.objects.all().delete()
    AuditHead.objects.all().delete()


def _recompute_from(seq: int, **changes: Any) -> None:
    """The attacker's edit: change event ``seq``, then recompute every later hash and the head."""
    prev = AuditEvent.objects.get(seq=seq - 1).hash if seq > 1 else GENESIS
    for row in AuditEvent.objects.filter(seq__gte=seq).order_by("seq"):
        data = {**row.data, **changes} if row.seq == seq else row.data
        digest = event_hash(
            prev, seq=row.seq, at=row.at, actor=row.actor, action=row.action, target=row.target, data=data
        )
        AuditEvent.objects.filter(pk=row.pk).update(data=data, prev_hash=prev, hash=digest)
        prev = digest
    AuditHead.objects.filter(pk=1).update(hash=prev)


# --- making checkpoints ------------------------------------------------------------------------


def test_the_signer_signs_the_head_stores_it_and_appends_the_file(
    ca: CertificateAuthority, checkpoint_file: Path
) -> None:
    _events(5)

    row = checkpoint_make()

    assert row is not None
    checkpoint = checkpoint_parse(row.line)
    head = AuditHead.objects.get(pk=1)
    assert (checkpoint.seq, checkpoint.head) == (head.seq, head.hash)
    checkpoint_verify(checkpoint, ca.certificate)
    assert checkpoint_file.read_text() == row.line + "\n"
    assert checkpoint_file.stat().st_mode & 0o077 == 0
    assert row.line.startswith(f"ca_portal-audit-checkpoint v1 seq={head.seq} head={head.hash} at=")
    assert f" ca={ca.fingerprint_sha256.lower().replace(':', '')} sig=" in row.line
    assert _command() == (0, f"OK {head.seq} events\n", "")


def test_nothing_new_makes_no_second_checkpoint(ca: CertificateAuthority) -> None:
    _events(2)
    assert checkpoint_make() is not None

    assert checkpoint_make() is None
    assert AuditCheckpoint.objects.count() == 1


def test_the_file_is_appended_never_rewritten(ca: CertificateAuthority, checkpoint_file: Path) -> None:
    _events(2)
    checkpoint_make()
    first = checkpoint_file.read_bytes()
    inode = checkpoint_file.stat().st_ino
    _events(3)

    checkpoint_make()

    after = checkpoint_file.read_bytes()
    assert after.startswith(first)
    assert after.count(b"\n") == 2
    assert checkpoint_file.stat().st_ino == inode
    lines = after.decode().splitlines()
    assert [checkpoint_parse(line).seq for line in lines] == [_head() - 3, _head()]


def test_the_web_tier_cannot_make_a_checkpoint(ca: CertificateAuthority, checkpoint_file: Path) -> None:
    _events(2)
    keystore._signing_enabled = False
    keystore.forget_keys()

    with pytest.raises(keystore.SignerUnavailable):
        checkpoint_make()

    assert not AuditCheckpoint.objects.exists()
    assert not checkpoint_file.exists()


def test_the_task_signs_a_checkpoint(ca: CertificateAuthority) -> None:
    _events(2)

    audit_checkpoint_task()

    assert AuditCheckpoint.objects.get().seq == _head()


def test_the_signer_refuses_to_bless_a_recomputed_log(ca: CertificateAuthority) -> None:
    _events(6)
    checkpoint_make()
    _events(3)
    _recompute_from(4, n=999)

    with pytest.raises(CheckpointRefused, match="no longer has the hash"):
        checkpoint_make()
    assert AuditCheckpoint.objects.count() == 1


def test_crossing_a_hundred_events_wakes_the_signer_once(
    ca: CertificateAuthority, sent_tasks: list[Any], django_capture_on_commit_callbacks: Any
) -> None:
    to_boundary = 100 - _head() % 100
    with django_capture_on_commit_callbacks(execute=True):
        _events(to_boundary - 1)
    assert not [name for name, *_ in sent_tasks if name == task_names.AUDIT_CHECKPOINT]

    with django_capture_on_commit_callbacks(execute=True):
        _events(2)

    assert [name for name, *_ in sent_tasks if name == task_names.AUDIT_CHECKPOINT] == [task_names.AUDIT_CHECKPOINT]


# --- the three attacks ---------------------------------------------------------------------------


def test_a_rollback_is_named(ca: CertificateAuthority) -> None:
    _events(10)
    checkpoint_make()
    signed = _head()
    _cut_tail_to(signed - 4)

    code, out, err = _command()

    assert code == 1
    assert out == ""
    assert f"FAILED at sequence {signed - 3}: rollback: the log ends at {signed - 4} but the checkpoint" in err
    assert f"covers {signed}" in err
    result = log_verify()
    assert (result.ok, result.kind, result.first_bad_seq) == (False, "rollback", signed - 3)


def test_a_wipe_is_named(ca: CertificateAuthority) -> None:
    _events(3)
    checkpoint_make()
    signed = _head()
    _wipe()

    code, _, err = _command()

    assert code == 1
    assert "wipe: the log is empty but the checkpoint of the checkpoint file" in err
    assert f"covers {signed} events" in err


def test_a_wipe_of_the_events_and_the_stored_checkpoints_is_caught_by_the_file(ca: CertificateAuthority) -> None:
    _events(3)
    checkpoint_make()
    _wipe()
    AuditCheckpoint.objects.all().delete()

    result = log_verify()

    assert (result.ok, result.kind) == (False, "wipe")
    assert "the checkpoint file" in result.problem


def test_deleted_stored_checkpoints_are_named_while_the_file_has_them(ca: CertificateAuthority) -> None:
    _events(3)
    checkpoint_make()
    AuditCheckpoint.objects.all().delete()

    result = log_verify()

    assert (result.ok, result.kind) == (False, "wipe")
    assert "checkpoints were deleted from the database" in result.problem


def test_a_recomputation_is_named_with_the_first_seq_after_the_last_good_checkpoint(ca: CertificateAuthority) -> None:
    _events(5)
    checkpoint_make()
    good = _head()
    _events(5)
    checkpoint_make()
    newest = _head()
    _events(2)
    _recompute_from(good + 2, n=999)

    code, _, err = _command()

    assert code == 1
    assert f"FAILED at sequence {good + 1}: recomputation: event {newest} does not have the hash" in err
    assert f"rewritten after event {good}" in err


def test_a_recomputation_is_named_from_the_database_alone(ca: CertificateAuthority, checkpoint_file: Path) -> None:
    _events(4)
    checkpoint_make()
    checkpoint_file.unlink()
    _recompute_from(1, n=999)

    result = log_verify()

    assert (result.ok, result.kind, result.first_bad_seq) == (False, "recomputation", 1)


def test_an_intact_log_with_checkpoints_is_ok(ca: CertificateAuthority) -> None:
    _events(3)
    checkpoint_make()
    _events(3)

    result = log_verify()

    assert result.ok
    assert result.kind == ""
    assert result.newest is not None
    assert result.newest.seq == _head() - 3
    assert set(result.sources) == {"the checkpoint file", "the database"}


# --- forged checkpoints and the auditor's copy ----------------------------------------------------


def _forged(line: str) -> str:
    checkpoint = checkpoint_parse(line)
    bad = bytes([checkpoint.signature[0] ^ 1]) + checkpoint.signature[1:]
    return Checkpoint(checkpoint.seq + 5, checkpoint.head, checkpoint.at, checkpoint.ca_fingerprint, bad).line


def test_a_forged_stored_checkpoint_is_rejected(ca: CertificateAuthority) -> None:
    _events(3)
    row = checkpoint_make()
    assert row is not None
    forged = _forged(row.line)
    AuditCheckpoint.objects.create(seq=row.seq + 5, at=row.at, line=forged)

    with pytest.raises(CheckpointError):
        checkpoint_verify(checkpoint_parse(forged), ca.certificate)
    result = log_verify()
    assert (result.ok, result.kind) == (False, "checkpoint")
    assert "forged" in result.problem
    newest = newest_checkpoint()
    assert newest is not None
    assert newest[1] == row.line


def test_a_forged_supplied_checkpoint_is_rejected(ca: CertificateAuthority, tmp_path: Path) -> None:
    _events(3)
    row = checkpoint_make()
    assert row is not None
    copy = tmp_path / "kept.txt"
    copy.write_text(_forged(row.line) + "\n")

    code, _, err = _command("--checkpoint", str(copy))

    assert code == 1
    assert "the supplied checkpoint is not valid" in err


def test_the_auditors_copy_catches_a_rollback_after_the_host_lost_everything(
    ca: CertificateAuthority, checkpoint_file: Path, tmp_path: Path
) -> None:
    _events(6)
    row = checkpoint_make()
    assert row is not None
    copy = tmp_path / "kept.txt"
    copy.write_text("# kept off the host\n" + row.line + "\n")
    _cut_tail_to(2)
    AuditCheckpoint.objects.all().delete()
    checkpoint_file.unlink()
    assert _command() == (0, "OK 2 events\n", "")

    code, _, err = _command("--checkpoint", str(copy))

    assert code == 1
    assert "FAILED at sequence 3: rollback: the log ends at 2 but the checkpoint of the supplied checkpoint" in err


def test_a_substituted_ca_certificate_is_caught_by_the_file(ca: CertificateAuthority, checkpoint_file: Path) -> None:
    """A database writer who adds their own CA and signs checkpoints of a rewritten log with its key."""
    _events(4)
    checkpoint_make()
    _recompute_from(2, n=999)
    own_cert_pem = fixture_bytes("ca-p384.crt").decode("ascii")
    own_key = load_private_key(fixture_bytes("ca-p384.key"), None)
    CertificateAuthority.objects.update(is_active=False)
    attacker = CertificateAuthority.objects.create(
        common_name="evil",
        certificate_pem=own_cert_pem,
        fingerprint_sha256="f" * 64,
        key_type="ecdsa-p384",
        key_file="none",
        not_before=ca.not_before,
        not_after=ca.not_after,
    )
    AuditCheckpoint.objects.all().delete()
    head = AuditHead.objects.get(pk=1)
    forged = checkpoint_sign(
        seq=head.seq, head=head.hash, at=ca.not_before, ca_key=own_key, ca_cert=attacker.certificate
    )
    AuditCheckpoint.objects.create(seq=forged.seq, at=forged.at, line=forged.line)

    result = log_verify()

    assert not result.ok
    assert result.kind == "recomputation"
    assert "the checkpoint file" in result.problem
