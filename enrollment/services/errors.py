"""The enrollment app's refusal: a ``ServiceError``, translated once for the API and once for pages."""

from __future__ import annotations

from core.errors import ServiceError


class EnrollmentError(ServiceError):
    """Refused input or action. ``field`` names the input at fault; ``status`` is the HTTP status."""
