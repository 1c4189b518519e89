"""Multi-row INSERTs of plain tuples, for the signer's batches (certificates, intents, audit events).

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
    values = ", ".join(["%s"] * (len(fields) + len(defaults)))
    suffix = " ON CONFLICT DO NOTHING" if skip_conflicts else ""
    sql = f"INSERT INTO {quote(meta.db_table)} ({columns}) VALUES ({values}){suffix}"  # noqa: S608
    params = [
        [value if adapt is None else adapt(value) for adapt, value in zip(adapters, row, strict=True)] + constants
        for row in rows
    ]
    # One short statement, many parameter rows: SQLite runs it in a C loop, psycopg pipelines it.
    # (A multi-row VALUES list was slower on PostgreSQL: psycopg re-parses long statements each time.)
    with connection.cursor() as cursor:
        cursor.executemany(sql, params)
        stored: int = cursor.rowcount
    return stored
