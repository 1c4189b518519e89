#!/usr/bin/env python
"""Django's command-line utility for ca_portal."""

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ca_portal.settings")
    from django.core.management import execute_from_command_line

    from core.dbready import database_problem

    try:
        problem = database_problem(sys.argv[1] if len(sys.argv) > 1 else "")
    except Exception:  # bad settings and the like: the command itself reports them, as before
        problem = ""
    if problem:
        sys.stderr.write(problem + "\n")
        raise SystemExit(1)
    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
