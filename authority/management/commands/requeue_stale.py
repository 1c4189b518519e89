from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from authority.services import requests_requeue_stale


class Command(BaseCommand):
    help = "Queue again the signing requests that have waited longer than --older seconds (run from cron or a timer)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--older", type=int, default=60, help="seconds (default 60)")

    def handle(self, *args: Any, **options: Any) -> None:
        count = requests_requeue_stale(older_than=timedelta(seconds=options["older"]))
        self.stdout.write(f"queued {count} request(s) again")
