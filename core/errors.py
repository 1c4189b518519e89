"""The one error type of the services: a refusal a person can read, with the field and HTTP status.

Every app's service refusals derive from ``ServiceError``. The API's exception handler
(``core.api.exception_handler``) and the pages' middleware (``core.middleware``) translate it, each
in one place, so no view maps error classes by hand.
"""

from __future__ import annotations

ALL_FIELDS = "__all__"


class ServiceError(Exception):
    """Refused input or action. ``field`` names the input at fault; ``status`` is the HTTP status
    (400 bad input, 403/404 authorization, 409 a state that does not allow the action)."""

    default_status = 400
    default_field = ALL_FIELDS

    def __init__(self, message: str, *, field: str | None = None, status: int | None = None) -> None:
        super().__init__(message)
        self.field = field if field is not None else self.default_field
        self.status = status if status is not None else self.default_status
