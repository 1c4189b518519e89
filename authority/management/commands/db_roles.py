from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DatabaseError, connection

from authority.db_roles import DML, RoleError, apply_roles, check_role_names, roles_sql, table_privileges


class Command(BaseCommand):
    help = (
        "PostgreSQL: make (or repair) the two database roles: OWNER owns the database and its tables and is "
        "used only by `migrate` and `restore`; RUNTIME, the portal's DATABASE_URL, gets DML only, and on the "
        "audit tables SELECT and INSERT (the chain head also UPDATE). Run with a superuser's DATABASE_URL, "
        "after `migrate`; safe to run again. --print-sql prints the script for a DBA instead of running it. "
        "Set the roles' passwords with psql's \\password (never on a command line). See docs/backup.md."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--owner", required=True, help="the owner role, e.g. ca_portal_owner")
        parser.add_argument("--runtime", required=True, help="the runtime role, e.g. ca_portal")
        parser.add_argument("--print-sql", action="store_true", help="print the SQL script; change nothing")
        parser.add_argument("--schema", default="public", help="with --print-sql: the portal's schema (default public)")

    def handle(self, *args: Any, **options: Any) -> None:
        owner, runtime = options["owner"], options["runtime"]
        try:
            check_role_names(owner, runtime)
        except RoleError as exc:
            raise CommandError(str(exc)) from None
        if options["print_sql"]:
            database = str(settings.DATABASES["default"].get("NAME") or "ca_portal")
            self.stdout.write(roles_sql(owner=owner, runtime=runtime, database=database, schema=options["schema"]))
            return
        try:
            apply_roles(owner=owner, runtime=runtime)
        except RoleError as exc:
            raise CommandError(str(exc)) from None
        except DatabaseError as exc:
            raise CommandError(f"the database refused the role set-up: {str(exc).strip()}") from None
        tables = table_privileges(runtime)
        not_owned = [t.table for t in tables if t.owner != owner]
        restricted = [f"{t.table} ({', '.join(t.privileges)})" for t in tables if set(t.privileges) != set(DML)]
        name = connection.settings_dict.get("NAME")
        self.stdout.write(self.style.SUCCESS(f"Roles set up on database {name}:"))
        self.stdout.write(f"  owner   {owner}: owns {len(tables) - len(not_owned)} of {len(tables)} tables")
        self.stdout.write(f"  runtime {runtime}: SELECT, INSERT, UPDATE, DELETE on the others; only:")
        for line in restricted:
            self.stdout.write(f"    {line}")
        if not_owned:
            self.stderr.write(f"tables not owned by {owner}: {', '.join(not_owned)}")
            raise SystemExit(1)
        self.stdout.write(
            f"Next: set passwords (psql: \\password {owner}, \\password {runtime}); run `migrate` and `restore` "
            f"with DATABASE_URL=postgres://{owner}@HOST/{name}, and the portal with postgres://{runtime}@HOST/{name}."
        )
