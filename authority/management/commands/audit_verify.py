from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from authority.audit import audit_verify


class Command(BaseCommand):
    help = 'Verify the hash chain of the audit log: prints "OK <n> events", or names the first bad sequence number.'

    def handle(self, *args: Any, **options: Any) -> None:
        result = audit_verify()
        if result.ok:
            self.stdout.write(f"OK {result.count} events")
            return
        self.stderr.write(
            f"FAILED at sequence {result.first_bad_seq}: {result.problem} ({result.count} events verified)"
        )
        raise SystemExit(1)
