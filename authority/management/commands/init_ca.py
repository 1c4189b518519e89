from __future__ import annotations

from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from authority import keystore
from authority.services import AuthorityError, ca_create, cli_actor
from pki.errors import PkiError
from pki.keys import DEFAULT_KEY_TYPE, KEY_TYPES
from pki.profiles import CaSubject


class Command(BaseCommand):
    help = "Create the CA: a new encrypted key (in the var dir) and a self-signed CA certificate."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--common-name", required=True, help='for example "EuroBSDcon CA"')
        parser.add_argument("--organization", default="")
        parser.add_argument("--country", default="", help="two-letter country code")
        parser.add_argument(
            "--key-type", choices=KEY_TYPES, default=DEFAULT_KEY_TYPE, help="default rsa-3072 (isakmpd needs RSA)"
        )
        parser.add_argument("--days", type=int, default=3650, help="CA validity in days (default 3650)")

    def handle(self, *args: Any, **options: Any) -> None:
        keystore.enable_signing()  # this is the CA host
        subject = CaSubject(options["common_name"], options["organization"], options["country"])
        try:
            ca = ca_create(subject=subject, key_type=options["key_type"], days=options["days"], actor=cli_actor())
        except (PkiError, AuthorityError) as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(self.style.SUCCESS(f"Created CA {ca.subject} ({ca.key_type})"))
        self.stdout.write(f"  SHA-256 fingerprint: {ca.fingerprint_sha256}")
        self.stdout.write(f"  valid until:         {ca.not_after:%Y-%m-%d}")
        self.stdout.write(f"  key (encrypted):     {Path(settings.CA_KEY_DIR) / ca.key_file}")
        self.stdout.write(f"  passphrase file:     {keystore.ensure_passphrase_file()} (only the signer reads it)")
