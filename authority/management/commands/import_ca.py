from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from authority import keystore
from authority.services import AuthorityError, ca_import, cli_actor
from pki.errors import PkiError


class Command(BaseCommand):
    help = "Import an existing openssl CA (certificate + key). The key is stored re-encrypted under our passphrase."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--cert", required=True, type=Path, help="the CA certificate (PEM)")
        parser.add_argument("--key", required=True, type=Path, help="the CA private key (PEM, encrypted or not)")
        parser.add_argument("--key-passphrase-file", type=Path, help="file holding the passphrase of --key")
        parser.add_argument(
            "--allow-legacy", action="store_true", help="accept a weak CA (RSA < 2048, MD5/SHA-1); it is marked legacy"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        keystore.enable_signing()  # this is the CA host
        try:
            cert_pem = options["cert"].read_bytes()
            key_pem = options["key"].read_bytes()
            passphrase = None
            if options["key_passphrase_file"]:
                passphrase = options["key_passphrase_file"].read_bytes().rstrip(b"\r\n")
        except OSError as exc:
            raise CommandError(f"cannot read {exc.filename}: {exc.strerror}") from None
        try:
            ca = ca_import(
                cert_pem=cert_pem,
                key_pem=key_pem,
                key_passphrase=passphrase,
                allow_legacy=options["allow_legacy"],
                actor=cli_actor(),
            )
        except (PkiError, AuthorityError) as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(self.style.SUCCESS(f"Imported CA {ca.subject} ({ca.key_type})"))
        self.stdout.write(f"  SHA-256 fingerprint: {ca.fingerprint_sha256}")
        if ca.is_legacy:
            self.stderr.write(
                "WARNING: this CA is marked LEGACY: " + "; ".join(ca.legacy_reasons) + ". Plan a new CA with init_ca."
            )
