from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DatabaseError

from authority.backup.errors import BackupError
from authority.backup.service import backup_create, read_passphrase_file
from authority.services import cli_actor


class Command(BaseCommand):
    help = (
        "Back up the portal into one encrypted file: a consistent snapshot of the database (pg_dump, or "
        "SQLite's online backup), the encrypted CA key, the secret key, the audit checkpoints and the site's "
        "template overrides, with a manifest of SHA-256 hashes, encrypted with the passphrase in "
        "--passphrase-file (scrypt + AES-256-GCM). Safe while the portal runs. The backup never holds the CA "
        "key passphrase (CA_KEY_PASSPHRASE_FILE): keep a copy of it apart from the backups (a password "
        "manager or a sealed envelope), and the backup passphrase apart from both. See docs/backup.md."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--out", required=True, type=Path, help="the archive to write (never overwritten)")
        parser.add_argument(
            "--passphrase-file",
            required=True,
            type=Path,
            help="a file (mode 0600) whose first line is the backup passphrase, 16 characters or more",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            passphrase = read_passphrase_file(options["passphrase_file"])
            result = backup_create(out=options["out"], passphrase=passphrase, actor=cli_actor())
        except BackupError as exc:
            raise CommandError(str(exc)) from None
        except DatabaseError as exc:
            raise CommandError(f"the database refused: {str(exc).strip()}") from None
        facts = result.manifest["facts"]
        members = result.manifest["members"]
        self.stdout.write(self.style.SUCCESS(f"Backup written: {result.path} ({result.size / 1e6:.1f} MB, mode 0600)"))
        self.stdout.write(f"  SHA-256:      {result.sha256}")
        self.stdout.write(
            f"  database:     {result.manifest['database']['vendor']}, {facts['certificates']} certificates "
            f"({facts['revoked']} revoked), {facts['audit_events']} audit events (head #{facts['audit_head']['seq']})"
        )
        self.stdout.write(f"  members:      {len(members)} ({', '.join(m['name'] for m in members[:8])}"
                          f"{', ...' if len(members) > 8 else ''})")  # fmt: skip
        self.stdout.write(f"  seconds:      {', '.join(f'{k} {v:.2f}' for k, v in result.times.items())}")
        self.stdout.write("  not included: the CA key passphrase; keep it apart from the backups")
