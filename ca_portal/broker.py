"""The embedded broker: kombu's filesystem transport with atomic message files.

kombu 5.7 writes a message file in place (open, lock, write) while the consumer takes files by
renaming them without the lock, so a consumer can take a file before its content is written,
fail to decode it, and lose the message (seen in our crash tests under load). Here a message is
written to a temporary name the consumer ignores and then renamed into place, which is atomic
on POSIX: a consumer sees the whole message or nothing.
"""

from __future__ import annotations

import os
import uuid
from time import monotonic_ns
from typing import Any

from kombu.exceptions import ChannelError
from kombu.transport import filesystem
from kombu.utils.encoding import str_to_bytes
from kombu.utils.json import dumps


class Channel(filesystem.Channel):
    def _put(self, queue: str, payload: dict[str, Any], **kwargs: Any) -> None:  # type: ignore[override]
        # Zero-padded nanoseconds: the consumer takes files in name order, so this keeps them
        # first in, first out (kombu's unpadded milliseconds tie, then fall back to the uuid).
        name = f"{monotonic_ns():020d}_{uuid.uuid4()}.{queue}.msg"
        final = os.path.join(self.data_folder_out, name)
        # A leading dot and no ".msg" ending: _get's "<anything>.<queue>.msg" match never picks it up.
        temporary = os.path.join(self.data_folder_out, f".{uuid.uuid4()}.partial")
        try:
            with open(temporary, "wb") as handle:
                handle.write(str_to_bytes(dumps(payload)))
            os.rename(temporary, final)
        except OSError as exc:
            raise ChannelError(f"Cannot add file {final!r} to directory") from exc


class Transport(filesystem.Transport):
    Channel = Channel
