"""Bulk INSERTs of plain tuples, for the signer's batches (certificates, intents, audit events).

``bulk_create`` builds a model instance per row and prepares every value through the field's full
save path: for a batch of 100 certificates that was most of the signer's time after the
signatures. Here each column is adapted with the database backend's own function, once per
distinct value, and omitted columns get the field's default, so the rows stored are the ones
``bulk_create`` would store. No model signals are sent (``bulk_create`` sends none either).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from django.db import connection, models

Adapter = Callable[[Any], Any]


def _adapter(field: models.Field[Any, Any]) -> Adapter | None:
    """How to turn a Python value into a query parameter for this column; None when as is."""
    if isinstance(field, models.DateTimeField):
        adapt = connection.ops.adapt_datetimefield_value  # aware datetimes; naive UTC text on SQLite
        seen: dict[Any, Any] = {}  # a batch's rows share most timestamps: adapt each one once

        def adapt_once(value: Any) -> Any:
            if value not in seen:
                seen[value] = adapt(value)
            return seen[value]

        return adapt_once
    if isinstance(field, (models.CharField, models.IntegerField, models.BooleanField, models.BinaryField)):
        return None  # str, int, bool and bytes are what the drivers take
    if isinstance(field, models.ForeignKey) and isinstance(field.target_field, models.AutoField):
        return None  # the related row's integer id
    return lambda value: field.get_db_prep_save(value, connection)  # JSON and anything else: the full path


def insert_rows(
    model: type[models.Model],
    field_names: Sequence[str],
    rows: Sequence[Sequence[Any]],
    *,
    skip_conflicts: bool = False,
) -> int:
    """INSERT ``rows`` (tuples of values in ``field_names`` order; attnames such as ``request_id``)
    into ``model``'s table; returns how many were stored.

    A row that violates a unique constraint raises IntegrityError, or with ``skip_conflicts`` is
    left out (ON CONFLICT DO NOTHING, PostgreSQL and SQLite alike) and the count says so.
    """
    if not rows:
        return 0
    meta = model._meta
    fields: list[models.Field[Any, Any]] = []
    for name in field_names:
        field = meta.get_field(name)
        if not isinstance(field, models.Field):  # a reverse relation has no column
            raise TypeError(f"{meta.label}.{name} is not a column")
        fields.append(field)
    given = {field.name for field in fields}
    defaults = [
        field
        for field in meta.concrete_fields
        if field.name not in given and not isinstance(field, models.AutoField) and not field.primary_key
    ]
    for field in defaults:
        if getattr(field, "auto_now", False) or getattr(field, "auto_now_add", False):
            raise ValueError(f"insert_rows needs a value for {meta.label}.{field.name}")
    constants = [field.get_db_prep_save(field.get_default(), connection) for field in defaults]
    adapters = [_adapter(field) for field in fields]
    quote = connection.ops.quote_name
    columns = ", ".join(quote(str(field.column)) for field in [*fields, *defaults])
    head = f"INSERT INTO {quote(meta.db_table)} ({columns}) VALUES "  # noqa: S608 (names from the model, quoted)
    suffix = " ON CONFLICT DO NOTHING" if skip_conflicts else ""
    params = [
        [value if adapt is None else adapt(value) for adapt, value in zip(adapters, row, strict=True)] + constants
        for row in rows
    ]
    if connection.vendor == "postgresql":
        return _insert_postgresql(head, suffix, params)
    # SQLite: one short statement, many parameter rows, run in a C loop.
    with connection.cursor() as cursor:
        cursor.executemany(head + "(" + ", ".join(["%s"] * len(params[0])) + ")" + suffix, params)
        stored: int = cursor.rowcount
    return stored


def _insert_postgresql(head: str, suffix: str, params: list[list[Any]]) -> int:
    """One multi-row INSERT per 65,535 parameters, bound on the server.

    Django's default cursor binds on the client: it re-parses a long statement for its %s
    placeholders each time and sends the values inlined, which the server parses and plans again
    (``executemany`` does that once per row). A psycopg ``RawCursor`` takes $n placeholders as
    they are and sends the values apart; it is wrapped like Django's own cursors, so errors map
    to django.db exceptions and execute wrappers and query logging see the statement.
    """
    from psycopg import RawCursor  # only with the PostgreSQL backend

    width = len(params[0])
    per_statement = 65535 // width
    connection.ensure_connection()
    raw: RawCursor[Any] = RawCursor(connection.connection)
    stored = 0
    # (django-stubs type the argument as Django's own wrapper; the methods take the driver's cursor.)
    wrap = connection.make_debug_cursor if connection.queries_logged else connection.make_cursor
    with wrap(raw) as cursor:  # type: ignore[arg-type]
        for start in range(0, len(params), per_statement):
            chunk = params[start : start + per_statement]
            values = ", ".join(
                "(" + ", ".join(f"${n}" for n in range(row * width + 1, row * width + width + 1)) + ")"
                for row in range(len(chunk))
            )
            cursor.execute(head + values + suffix, [value for row in chunk for value in row])
            stored += cursor.rowcount
    return stored
