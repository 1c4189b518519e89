"""manage.py backup and restore, end to end, on both flavours (SQLite embedded and PostgreSQL).

A deployment does real work through the services (issue, revoke, renew, download, CRLs); a backup is
taken; a second, empty deployment is restored from it. Then the audit chain checks out, every
certificate and revocation is there, the next CRL number is higher than any before, a new
certificate can be issued and its serial collides with none before.
"""

from __future__ import annotations

import io
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from authority.backup.archive import read_archive
from tests.ops.deployment import Deployment

pytestmark = pytest.mark.integration

BACKUP_PASSPHRASE = "a long backup passphrase, kept apart\n"
CHECKPOINTS = "12 3f1a... (a checkpoint line of the audit chain)\n"
NOTE = "a site override: templates/configs/extra/note.txt\n"


@pytest.fixture
def passphrase_file(tmp_path: Path) -> Path:
    path = tmp_path / "backup-passphrase"
    path.write_text(BACKUP_PASSPHRASE)
    path.chmod(0o600)
    return path


@pytest.fixture(params=["sqlite", "postgresql"])
def sites(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Deployment, Deployment]]:
    source = Deployment(tmp_path, request.param, name="source")
    target = Deployment(tmp_path, request.param, name="target")
    try:
        yield source, target
    finally:
        source.drop()
        target.drop()


def _site_files(site: Deployment) -> None:
    """What a deployment has besides the database: audit checkpoints and a template override."""
    checkpoints = site.var / "audit-checkpoints.log"
    checkpoints.write_text(CHECKPOINTS)
    checkpoints.chmod(0o600)
    note = site.var / "configs" / "extra" / "note.txt"
    note.parent.mkdir(parents=True)
    note.write_text(NOTE)


def _members(archive: Path, passphrase: bytes) -> tuple[dict[str, Any], dict[str, bytes]]:
    store: dict[str, bytes] = {}

    class Sink(io.BytesIO):
        def __init__(self, name: str) -> None:
            super().__init__()
            self.member = name

        def close(self) -> None:
            store[self.member] = self.getvalue()
            super().close()

    with archive.open("rb") as handle:
        manifest, _ = read_archive(handle, passphrase, lambda entry: Sink(entry.name))
    return manifest, store


def _mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def test_a_backup_restores_onto_an_empty_deployment(
    sites: tuple[Deployment, Deployment], passphrase_file: Path, tmp_path: Path
) -> None:
    source, target = sites
    source.set_up()
    _site_files(source)
    before = source.scenario("populate")
    archive = tmp_path / "site.cabk"

    made = source.manage("backup", "--out", str(archive), "--passphrase-file", str(passphrase_file))

    assert "Backup written" in made.stdout
    assert _mode(archive) == 0o600
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".partial")]
    manifest, members = _members(archive, BACKUP_PASSPHRASE.strip().encode())
    key_file = next((source.var / "keys").iterdir())
    database_member = "database/portal.pgdump" if source.flavour == "postgresql" else "database/portal.sqlite3"
    assert set(members) == {
        database_member,
        f"ca-keys/{key_file.name}",
        "var/django-secret-key",
        "var/audit-checkpoints.log",
        "templates/extra/note.txt",
    }
    ca_passphrase = (source.var / "ca-key-passphrase").read_bytes().strip()
    assert not any(ca_passphrase in data for data in members.values()), "the CA key passphrase is in the backup"
    assert manifest["facts"]["certificates"] == len(before["certificates"]) == 4
    assert manifest["facts"]["revoked"] == 2
    assert manifest["facts"]["audit_events"] == before["audit"]["count"]
    again = source.manage("backup", "--out", str(archive), "--passphrase-file", str(passphrase_file), check=False)
    assert again.returncode != 0
    assert "never overwritten" in again.stderr

    # A deployment in use is not restored onto without --force.
    refused = source.manage("restore", str(archive), "--passphrase-file", str(passphrase_file), check=False)
    assert refused.returncode != 0
    assert "the target is in use" in refused.stderr
    assert "rows in authority_certificate" in refused.stderr

    # The new host: the operator brings the CA key passphrase from where it is kept (never from the backup).
    shutil.copy2(source.var / "ca-key-passphrase", target.var / "ca-key-passphrase")
    restored = target.manage("restore", str(archive), "--passphrase-file", str(passphrase_file))

    assert f"Audit chain: OK {before['audit']['count'] + 1} events" in restored.stdout
    assert "CA key: opens with" in restored.stdout
    after = target.scenario("state")
    for fact in ("ca", "certificates", "crl_numbers", "peers", "bundles", "downloads", "users"):
        assert after[fact] == before[fact], fact
    assert after["audit"] == {"ok": True, "count": before["audit"]["count"] + 1, "problem": ""}
    assert after["last_action"] == "backup.restored"
    assert (target.var / "keys" / key_file.name).read_bytes() == key_file.read_bytes()
    assert _mode(target.var / "keys" / key_file.name) == 0o600
    assert _mode(target.var / "keys") == 0o700
    assert (target.var / "django-secret-key").read_bytes() == (source.var / "django-secret-key").read_bytes()
    assert (target.var / "audit-checkpoints.log").read_text() == CHECKPOINTS
    assert _mode(target.var / "audit-checkpoints.log") == 0o600
    assert (target.var / "configs" / "extra" / "note.txt").read_text() == NOTE

    following = target.scenario("next")

    assert following["crl_number"] > max(before["crl_numbers"])
    serials = {row[0] for row in before["certificates"]}
    assert following["serial"] not in serials
    assert len({row[0] for row in following["state"]["certificates"]}) == len(serials) + 1
    assert following["state"]["audit"]["ok"] is True


def test_a_forced_restore_replaces_a_deployment_in_use(passphrase_file: Path, tmp_path: Path) -> None:
    site = Deployment(tmp_path, "sqlite")
    site.set_up()
    before = site.scenario("populate")
    archive = tmp_path / "site.cabk"
    site.manage("backup", "--out", str(archive), "--passphrase-file", str(passphrase_file))
    changed = site.scenario("more", "late.example.com")
    assert len(changed["certificates"]) == len(before["certificates"]) + 1

    restored = site.manage("restore", str(archive), "--passphrase-file", str(passphrase_file), "--force")

    assert "Audit chain: OK" in restored.stdout
    assert "moved aside" in restored.stdout
    after = site.scenario("state")
    assert after["certificates"] == before["certificates"]
    assert after["audit"]["ok"] is True
    aside = [p.name for p in site.var.iterdir() if p.name.startswith("keys.before-restore-")]
    assert len(aside) == 1  # the replaced CA keys are kept, never deleted
    assert os.listdir(site.var / "keys") == os.listdir(site.var / aside[0])


def test_a_wrong_passphrase_or_a_damaged_archive_changes_nothing(passphrase_file: Path, tmp_path: Path) -> None:
    site = Deployment(tmp_path, "sqlite")
    site.set_up()
    archive = tmp_path / "site.cabk"
    site.manage("backup", "--out", str(archive), "--passphrase-file", str(passphrase_file))
    empty = Deployment(tmp_path, "sqlite", name="empty")
    wrong = tmp_path / "wrong"
    wrong.write_text("not the passphrase at all\n")
    wrong.chmod(0o600)

    refused = empty.manage("restore", str(archive), "--passphrase-file", str(wrong), check=False)
    assert refused.returncode != 0
    assert "passphrase is wrong" in refused.stderr

    damaged = tmp_path / "damaged.cabk"
    data = bytearray(archive.read_bytes())
    data[len(data) // 2] ^= 0xFF
    damaged.write_bytes(bytes(data))
    refused = empty.manage("restore", str(damaged), "--passphrase-file", str(passphrase_file), check=False)
    assert refused.returncode != 0
    assert "damaged" in refused.stderr
    assert not (empty.var / "keys").exists()

    checked = empty.manage("restore", str(archive), "--passphrase-file", str(passphrase_file), "--check")
    assert checked.stdout.startswith("OK: ")
    assert not (empty.var / "keys").exists()

    loose = tmp_path / "loose"
    loose.write_text(BACKUP_PASSPHRASE)
    loose.chmod(0o644)
    refused = site.manage("backup", "--out", str(tmp_path / "b.cabk"), "--passphrase-file", str(loose), check=False)
    assert "readable by others" in refused.stderr
