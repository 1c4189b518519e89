"""No key material leaves the signer (docs/security.md T21, a first canary).

A real deployment on PostgreSQL + Redis issues certificates and makes a portal key while the
worker logs at DEBUG and `redis-cli MONITOR` records every broker command. Afterwards the CA key
passphrase, the portal key's one-time passphrase, any unencrypted private key PEM and chunks of
the CA key's DER must appear in none of: the worker log, the broker traffic, a pg_dump.
"""

from __future__ import annotations

import base64
import re
import subprocess
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from devtools.stack import FIXTURES, Stack

pytestmark = pytest.mark.integration


def _ca_key_chunks() -> list[bytes]:
    key = serialization.load_pem_private_key((FIXTURES / "ca-rsa2048.key").read_bytes(), None)
    der = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    b64 = base64.b64encode(der)
    # Skip the first 64 bytes of base64: the PKCS#8 header is the same for every RSA key.
    return [b64[i : i + 40] for i in range(64, len(b64) - 40, 200)]


def test_no_passphrase_or_private_key_reaches_logs_broker_or_database(tmp_path: Path) -> None:
    stack = Stack(tmp_path, "services")
    stack.setup()
    monitor_log = tmp_path / "redis-monitor.log"
    monitor = subprocess.Popen(
        ["redis-cli", "-h", "127.0.0.1", "-p", "6379", "MONITOR"],
        stdout=monitor_log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    try:
        time.sleep(0.3)
        stack.start_worker(concurrency=1, loglevel="DEBUG")
        stack.driver("submit", "3", "canary")
        portal = stack.driver("portal", "laptop-canary.example.com")
        stack.wait_for(lambda s: s["by_status"].get("issued", 0) == 3, timeout=60)
        deadline = time.monotonic() + 60
        while True:  # the signer makes the RSA-3072 key, then the peer can be approved and issued
            try:
                stack.driver("approve", str(portal["peer"]))
                break
            except AssertionError as exc:
                if "still being made" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        stack.wait_for(lambda s: s["by_status"].get("issued", 0) == 4, timeout=60)
        dump = subprocess.run(
            ["pg_dump", "-h", "127.0.0.1", "-U", "postgres", stack.dbname], capture_output=True, check=True
        ).stdout
    finally:
        monitor.terminate()
        monitor.wait()
        stack.teardown()

    ca_passphrase = (stack.var / "ca-key-passphrase").read_bytes().strip()
    one_time = str(portal["passphrase"]).encode()
    # MONITOR sees every database; keep this stack's commands ("<time> [<db> <client>] ...").
    own = f" [{stack.redis_db} ".encode()
    traffic = b"\n".join(line for line in monitor_log.read_bytes().splitlines() if own in line.split(b"]", 1)[0])
    # Celery sends task bodies base64-encoded: decode them so the search sees the arguments too.
    bodies = [base64.b64decode(m) for m in re.findall(rb'\\"body\\": \\"([A-Za-z0-9+/=]+)', traffic)]
    assert bodies, "MONITOR must have captured task bodies"
    assert b"[[1], {}" in b"".join(bodies), "the key maker's message carries the peer id, and nothing more"
    places = {
        "worker log": stack.worker_log.read_bytes(),
        "broker traffic": traffic + b"\n".join(bodies),
        "database dump": dump,
    }
    # The capture really saw the work: the signer's and the key maker's task messages.
    assert b"authority.certificates_issue_pending" in places["broker traffic"]
    assert b"enrollment.peer_key_generate" in places["broker traffic"]
    assert b"DEBUG" in places["worker log"]
    for place, data in places.items():
        assert ca_passphrase not in data, f"the CA key passphrase is in the {place}"
        assert one_time not in data, f"the portal key's one-time passphrase is in the {place}"
        assert b"BEGIN PRIVATE KEY" not in data, f"an unencrypted private key is in the {place}"
        assert b"BEGIN RSA PRIVATE KEY" not in data, f"an unencrypted private key is in the {place}"
        for chunk in _ca_key_chunks():
            assert chunk not in data, f"a piece of the CA key is in the {place}"
    assert b"BEGIN ENCRYPTED PRIVATE KEY" in places["database dump"], "the portal key is kept, encrypted"
