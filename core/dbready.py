"""Whether the database is set up, asked by manage.py before a command that needs its tables.

Without it, ``manage.py createsuperuser`` run with another CA_PORTAL_VAR_DIR than ``make run``
(so against another, empty SQLite file) ends in a traceback, ``no such table: auth_user``.
"""

from __future__ import annotations

from pathlib import Path

import django
from django.conf import settings
from django.db import DatabaseError, connection

# Commands that make the tables, only read files, or never touch the database.
NO_TABLES_NEEDED = frozenset(
    {
        "migrate",
        "makemigrations",
        "showmigrations",
        "sqlmigrate",
        "squashmigrations",
        "optimizemigration",
        "check",
        "collectstatic",
        "findstatic",
        "help",
        "version",
        "dbshell",
        "test",
        "diffsettings",
        "startapp",
        "startproject",
        "makemessages",
        "compilemessages",
        "sendtestemail",
        "restore",  # loads the tables from the backup onto an empty database
        "db_roles",  # sets up the owner and runtime roles before the first migrate
    }
)


def _where() -> str:
    database = settings.DATABASES["default"]
    if str(database["ENGINE"]).endswith("sqlite3"):
        return f"at {database['NAME']}"
    host = database.get("HOST") or "localhost"
    return f"{database['NAME']} on {host}"


def database_problem(command: str) -> str:
    """A message for people when ``command`` needs tables that are not there; "" otherwise.

    Only the missing tables are reported; a database that cannot be reached is left to the
    command itself, whose own error names the cause.
    """
    if not command or command.startswith("-") or command in NO_TABLES_NEEDED:
        return ""
    django.setup()
    database = settings.DATABASES["default"]
    missing = str(database["ENGINE"]).endswith("sqlite3") and not Path(str(database["NAME"])).exists()
    if not missing:
        try:
            missing = "auth_user" not in connection.introspection.table_names()
        except DatabaseError:
            return ""
        finally:
            connection.close()
    if not missing:
        return ""
    return (
        f"The database {_where()} is not set up (CA_PORTAL_VAR_DIR is {settings.VAR_DIR}). "
        "Run `make setup` (or `.venv/bin/python manage.py migrate`) with the same CA_PORTAL_VAR_DIR, "
        f"then `{command}` again. If `make run` uses another database, run this command with its "
        "CA_PORTAL_VAR_DIR (or DATABASE_URL)."
    )
