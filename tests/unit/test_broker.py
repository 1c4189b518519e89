"""The embedded broker writes each message whole before a consumer can see it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from kombu import Connection

from ca_portal import broker


def _connection(folder: Path) -> Connection:
    options = {"data_folder_in": str(folder), "data_folder_out": str(folder), "control_folder": str(folder)}
    return Connection("filesystem://", transport="ca_portal.broker:Transport", transport_options=options)


def test_it_round_trips_a_message(tmp_path: Path) -> None:
    with _connection(tmp_path) as conn:
        queue = conn.SimpleQueue("signer")
        queue.put({"hello": "world"})
        assert queue.get(timeout=1).payload == {"hello": "world"}
        queue.close()


def test_it_never_shows_a_consumer_a_partly_written_message(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen_while_writing: list[list[str]] = []
    real_rename = os.rename

    def rename(src: Any, dst: Any) -> None:
        # The moment before the message becomes visible: what would a consumer's listdir match?
        seen_while_writing.append([n for n in os.listdir(tmp_path) if n.endswith(".signer.msg")])
        assert Path(src).read_bytes(), "the temporary file holds the whole message before the rename"
        real_rename(src, dst)

    monkeypatch.setattr(broker.os, "rename", rename)
    with _connection(tmp_path) as conn:
        channel = conn.default_channel
        channel._put("signer", {"n": 1})
        channel._put("signer", {"n": 2})

        # Before each rename a consumer could only see the messages already complete: 0, then 1.
        assert [len(names) for names in seen_while_writing] == [0, 1]
        assert all(".partial" not in n for n in os.listdir(tmp_path))
        assert [channel._get("signer")["n"] for _ in range(2)] == [1, 2]


def test_it_hands_out_messages_first_in_first_out(tmp_path: Path) -> None:
    with _connection(tmp_path) as conn:
        channel = conn.default_channel
        for n in range(50):
            channel._put("signer", {"n": n})
        assert [channel._get("signer")["n"] for _ in range(50)] == list(range(50))
