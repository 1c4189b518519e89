"""The bundles app's refusal, shared by its services and selectors (``core.errors`` translates it)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from core.errors import ServiceError

if TYPE_CHECKING:
    from enrollment.models import Peer


class BundleError(ServiceError):
    """Refused input or action; ``status`` is the HTTP status, ``field`` the input at fault.

    ``peer`` is the peer whose bundle page an error page may link back to; it is set only where the
    user may see that page (never on a 404, which must not tell whether the peer exists).
    """

    def __init__(
        self, message: str, *, field: str | None = None, status: int | None = None, peer: Peer | None = None
    ) -> None:
        super().__init__(message, field=field, status=status)
        self.peer = peer
