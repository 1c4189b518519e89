"""Pure renderers of the files in a peer's bundle: validated values in (``spec``), text out.

No Django, ORM, clock, settings or randomness here (tests/unit/test_boundaries.py); the Django
shell in ``bundles.services`` builds the spec from the database and passes it in.
"""
