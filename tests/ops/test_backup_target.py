"""What a backup takes from the var dir, where a restore puts it, and when a target counts as in use."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from authority.backup import files
from authority.backup.errors import BackupError
from authority.backup.service import read_passphrase_file, target_in_use


@pytest.fixture
def var(tmp_path: Path, settings: Any) -> Path:
    """A var dir of this test's own: key dir, passphrase, overrides, checkpoints, secret key."""
    settings.VAR_DIR = tmp_path
    settings.CA_KEY_DIR = tmp_path / "keys"
    settings.CA_KEY_PASSPHRASE_FILE = tmp_path / "ca-key-passphrase"
    settings.CONFIG_TEMPLATE_OVERRIDES = tmp_path / "configs"
    settings.CA_AUDIT_CHECKPOINT_FILE = tmp_path / "audit-checkpoints.log"
    return tmp_path


def _write(path: Path, text: str, mode: int = 0o600) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)
    return path


def test_an_unused_migrated_database_and_var_dir_are_not_in_use(db: Any, var: Path) -> None:
    assert target_in_use() == []


def test_rows_someone_made_and_key_files_are_in_use(db: Any, var: Path, owner: Any) -> None:
    _write(var / "keys" / "ca-1.key", "encrypted")
    _write(var / "audit-checkpoints.log", "1 abc\n")

    found = target_in_use()

    assert "rows in auth_user" in found
    assert f"CA keys in {var / 'keys'}" in found
    assert f"audit checkpoints in {var / 'audit-checkpoints.log'}" in found


def test_it_takes_the_keys_secret_key_checkpoints_and_overrides_never_the_passphrase(var: Path, settings: Any) -> None:
    _write(var / "keys" / "ca-1.key", "encrypted key")
    _write(var / "ca-key-passphrase", "the CA key passphrase")
    _write(var / "django-secret-key", settings.SECRET_KEY + "\n")
    _write(var / "audit-checkpoints.log", "1 abc\n")
    _write(var / "configs" / "pf" / "pf.conf.j2", "# site pf\n", 0o644)
    _write(var / "broker" / "queue" / "msg", "a task")

    taken = {item.member: item.path for item in files.sources()}

    assert taken == {
        "ca-keys/ca-1.key": var / "keys" / "ca-1.key",
        "var/django-secret-key": var / "django-secret-key",
        "var/audit-checkpoints.log": var / "audit-checkpoints.log",
        "templates/pf/pf.conf.j2": var / "configs" / "pf" / "pf.conf.j2",
    }


def test_a_secret_key_file_that_is_not_in_use_is_left_out(var: Path) -> None:
    _write(var / "django-secret-key", "a stale key, DJANGO_SECRET_KEY is set instead\n")
    assert files.sources() == []


def test_a_passphrase_file_inside_the_key_dir_stops_the_backup(var: Path, settings: Any) -> None:
    settings.CA_KEY_PASSPHRASE_FILE = _write(var / "keys" / "passphrase", "the CA key passphrase")
    with pytest.raises(BackupError, match="passphrase file, which a backup never holds"):
        files.sources()


def test_a_link_in_the_overrides_is_refused_not_followed(var: Path) -> None:
    (var / "configs").mkdir()
    (var / "configs" / "passwd.j2").symlink_to("/etc/passwd")
    with pytest.raises(BackupError, match="not a regular file"):
        files.sources()


def test_members_go_where_the_target_settings_say(var: Path) -> None:
    assert files.destination("ca-keys/ca-1.key") == var / "keys" / "ca-1.key"
    assert files.destination("templates/pf/pf.conf.j2") == var / "configs" / "pf" / "pf.conf.j2"
    assert files.destination("var/audit-checkpoints.log") == var / "audit-checkpoints.log"
    assert files.destination("var/django-secret-key") == var / "django-secret-key"
    for unknown in ("ca-keys/sub/ca.key", "var/ca-key-passphrase", "etc/passwd"):
        with pytest.raises(BackupError, match="does not know where to put"):
            files.destination(unknown)


def test_install_writes_secrets_0600_and_templates_0644(var: Path, tmp_path: Path) -> None:
    staged = _write(tmp_path / "staged", "content", 0o644)
    key = files.install(staged, "ca-keys/ca-1.key")
    template = files.install(staged, "templates/pf/pf.conf.j2")
    assert (key.stat().st_mode & 0o777, key.parent.stat().st_mode & 0o777) == (0o600, 0o700)
    assert template.stat().st_mode & 0o777 == 0o644
    assert key.read_text() == template.read_text() == "content"


def test_a_forced_restore_moves_what_is_in_use_aside(var: Path) -> None:
    _write(var / "keys" / "ca-1.key", "encrypted key")
    _write(var / "audit-checkpoints.log", "1 abc\n")

    moved = files.move_aside("20260101T000000Z")

    assert len(moved) == 2
    assert (var / "keys.before-restore-20260101T000000Z" / "ca-1.key").read_text() == "encrypted key"
    assert (var / "audit-checkpoints.log.before-restore-20260101T000000Z").exists()
    assert files.in_use() == []


def test_the_backup_passphrase_file_must_be_private_and_long(tmp_path: Path) -> None:
    path = _write(tmp_path / "pass", "a long enough backup passphrase\nsecond line ignored\n")
    assert read_passphrase_file(path) == b"a long enough backup passphrase"
    path.chmod(0o640)
    with pytest.raises(BackupError, match="readable by others"):
        read_passphrase_file(path)
    with pytest.raises(BackupError, match="at least 16"):
        read_passphrase_file(_write(tmp_path / "short", "short\n"))
    with pytest.raises(BackupError, match="cannot read"):
        read_passphrase_file(tmp_path / "missing")
