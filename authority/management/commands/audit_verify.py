from __future__ import annotations

from argparse import ArgumentParser
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from authority.checkpoints import log_verify


class Command(BaseCommand):
    help = (
        "Verify the audit log: its hash chain, then the newest signed checkpoint (stored, in"
        ' CA_AUDIT_CHECKPOINT_FILE, and --checkpoint FILE). Prints "OK <n> events", or names the'
        " rollback, wipe or recomputation and the first bad sequence number, and exits 1."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument(
            "--checkpoint",
            action="append",
            default=[],
            metavar="FILE",
            help="a checkpoint downloaded from the audit log page and kept off the host (repeatable)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        supplied: list[str] = []
        for name in options["checkpoint"]:
            try:
                supplied.extend(Path(name).read_text(encoding="ascii").splitlines())
            except (OSError, UnicodeDecodeError) as exc:
                raise CommandError(f"cannot read the checkpoint file {name}: {exc}") from None
        result = log_verify(supplied)
        if result.ok:
            self.stdout.write(f"OK {result.count} events")
            return
        where = f" at sequence {result.first_bad_seq}" if result.first_bad_seq is not None else ""
        self.stderr.write(f"FAILED{where}: {result.problem} ({result.count} events verified)")
        raise SystemExit(1)
