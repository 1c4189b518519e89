from __future__ import annotations

import getpass
import os
from pathlib import Path
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import User
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from authority import keystore
from authority.services import certificate_issue, cli_actor
from core.errors import ALL_FIELDS
from enrollment.services import EnrollmentError, peer_approve, peer_register


class Command(BaseCommand):
    help = (
        "Sign a CSR on the CA host, as in the case study: records the peer, approves it as the command's "
        "user, signs through the same service and checks as the portal, and audits every step."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("csr_file", type=Path, help="the peer's certificate request (PEM)")
        parser.add_argument("--fqdn", required=True, help="the peer's FQDN; becomes CN and the first subjectAltName")
        parser.add_argument("--kind", choices=["client", "server"], default="client")
        parser.add_argument("--days", type=int, default=None, help="validity in days (default: the site default, 365)")
        parser.add_argument("--out", required=True, type=Path, help="where to write the certificate (PEM)")
        parser.add_argument("--address", default=None, help="public IP address (required for --kind server)")
        parser.add_argument("--network", action="append", default=[], help="a network behind the peer (CIDR); repeat")
        parser.add_argument(
            "--user", default=None, help="portal user who owns and approves the peer (default: your login name)"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        keystore.enable_signing()  # this is the CA host
        out: Path = options["out"]
        if out.exists():
            raise CommandError(f"{out} exists; refusing to overwrite it")
        try:
            csr_pem = options["csr_file"].read_text(encoding="utf-8", errors="replace")
        except OSError as exc:
            raise CommandError(f"cannot read {options['csr_file']}: {exc.strerror}") from None
        user = self._user(options["user"])
        actor = f"{cli_actor()} as user:{user.get_username()}"
        try:
            # Register and approve together: a refused approval (no CA, bad --days) must not leave a
            # pending peer behind that makes the corrected retry fail with "already registered".
            with transaction.atomic():
                peer = peer_register(
                    owner=user,
                    fqdn=options["fqdn"],
                    kind=options["kind"],
                    networks=options["network"],
                    address=options["address"],
                    csr_pem=csr_pem,
                    actor=actor,
                )
                peer = peer_approve(
                    peer_id=peer.pk,
                    approver=user,
                    allow_self_approval=True,  # the CA host's own path: one admin, holding the CA key
                    actor=actor,
                    validity_days=options["days"],
                    enqueue=False,
                )
        except EnrollmentError as exc:
            raise CommandError(f"{exc.field}: {exc}" if exc.field != ALL_FIELDS else str(exc)) from None
        assert peer.certificate_request is not None
        cert = certificate_issue(request_id=peer.certificate_request.pk)
        if cert is None:
            peer.certificate_request.refresh_from_db()
            raise CommandError(f"signing failed: {peer.certificate_request.failure_reason}")
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        with os.fdopen(fd, "w", encoding="ascii") as handle:
            handle.write(cert.pem)
        self.stdout.write(
            self.style.SUCCESS(f"Signed {cert.fqdn}: serial {cert.serial}, valid until {cert.not_after:%Y-%m-%d}")
        )
        self.stdout.write(f"  SHA-256 fingerprint: {cert.fingerprint_sha256}")
        self.stdout.write(f"  written to {out}")

    def _user(self, name: str | None) -> User:
        """The named portal user, or an inactive local account for the CA host's operator."""
        model = get_user_model()
        username = name or getpass.getuser()
        user = model.objects.filter(username=username).first()
        if user is not None:
            return user
        if name:
            raise CommandError(f"there is no portal user {name!r}")
        user, created = model.objects.get_or_create(username=f"ca-host-{username}", defaults={"is_active": False})
        if created:
            user.set_unusable_password()
            user.save()
        return user
