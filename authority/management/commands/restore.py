from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DatabaseError

from authority import keystore
from authority.backup import files
from authority.backup.errors import BackupError
from authority.backup.service import archive_check, backup_restore, read_passphrase_file
from authority.services import active_ca, cli_actor
from pki.errors import PkiError


class Command(BaseCommand):
    help = (
        "Restore a `manage.py backup` archive onto this deployment: its database (DATABASE_URL, as the owner "
        "role on PostgreSQL) and var dir must be empty unless --force. Checks the whole archive (every chunk, "
        "the manifest and the SHA-256 of every member) before changing anything, and ends with the audit chain "
        "check. The archive does not hold the CA key passphrase: put it in CA_KEY_PASSPHRASE_FILE (mode 0600) "
        "from where you keep it. Stop the portal's processes first. See docs/backup.md."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("archive", type=Path, help="the file `manage.py backup` wrote")
        parser.add_argument("--passphrase-file", required=True, type=Path, help="the backup passphrase (mode 0600)")
        parser.add_argument(
            "--force",
            action="store_true",
            help="replace a target in use: its database is emptied; its CA keys, audit checkpoints and template "
            "overrides are renamed to *.before-restore-<time>",
        )
        parser.add_argument("--check", action="store_true", help="only decrypt and check the archive; change nothing")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            passphrase = read_passphrase_file(options["passphrase_file"])
            if options["check"]:
                manifest = archive_check(archive=options["archive"], passphrase=passphrase)
                facts = manifest["facts"]
                self.stdout.write(
                    f"OK: {len(manifest['members'])} members check out; made {manifest['created_at']} on "
                    f"{manifest['host']}: {facts['certificates']} certificates, {facts['audit_events']} audit events"
                )
                return
            result = backup_restore(
                archive=options["archive"], passphrase=passphrase, force=options["force"], actor=cli_actor()
            )
        except BackupError as exc:
            raise CommandError(str(exc)) from None
        except DatabaseError as exc:
            raise CommandError(f"the database refused: {str(exc).strip()}") from None
        manifest, facts = result.manifest, result.manifest["facts"]
        self.stdout.write(f"Restored the backup made {manifest['created_at']} on {manifest['host']} ({result.sha256})")
        self.stdout.write(
            f"  {facts['certificates']} certificates ({facts['revoked']} revoked), CRL number {facts['crl_number']}, "
            f"{facts['audit_events']} audit events: as the manifest says"
        )
        for line in result.moved:
            self.stdout.write(f"  moved aside: {line}")
        for note in result.notes:
            self.stdout.write(f"  {note}")
        self.stdout.write(f"  CA key: {self._ca_key_check()}")
        self.stdout.write(f"  seconds: {', '.join(f'{k} {v:.2f}' for k, v in result.times.items())}")
        if result.verify.ok:
            self.stdout.write(self.style.SUCCESS(f"Audit chain: OK {result.verify.count} events"))
            return
        self.stderr.write(
            f"Audit chain: FAILED at sequence {result.verify.first_bad_seq}: {result.verify.problem} "
            f"({result.verify.count} events verified)"
        )
        raise SystemExit(1)

    def _ca_key_check(self) -> str:
        """Whether the restored CA key opens with the passphrase file this host has (which the backup lacks)."""
        ca = active_ca()
        if ca is None:
            return "there is no active CA in the backup"
        path = files.passphrase_file()
        if not path.exists():
            return f"put the CA key passphrase in {path} (mode 0600) before starting the signer"
        keystore.enable_signing()  # this is the CA host, as for init_ca and import_ca
        try:
            keystore.signing_key(ca)
        except (keystore.SignerUnavailable, PkiError, ValueError) as exc:
            return f"the key does NOT open with {path}: {exc}"
        finally:
            keystore.forget_keys()
        return f"opens with {path}"
