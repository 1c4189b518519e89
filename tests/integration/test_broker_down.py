"""The broker is down when requests are submitted (docs/security.md T17): nothing is lost and the
submitter gets no error; once the broker is back, the sweeper queues the waiting requests."""

from __future__ import annotations

from pathlib import Path

import pytest

from devtools.stack import Stack

pytestmark = pytest.mark.integration


def test_it_keeps_requests_when_redis_is_unreachable_and_issues_them_later(tmp_path: Path) -> None:
    stack = Stack(tmp_path, "services")
    stack.setup()
    try:
        real_redis = stack.env["REDIS_URL"]
        stack.env["REDIS_URL"] = "redis://127.0.0.1:1/12"  # nothing listens on port 1
        # Timed inside the submitting process: its start-up (seconds on a loaded machine) is no part of it.
        submitted = stack.driver("submit-timed", "5", "down")
        assert len(submitted["ids"]) == 5
        assert submitted["elapsed"] < 20, f"submitting with the broker down took {submitted['elapsed']:.1f} s"
        stack.env["REDIS_URL"] = real_redis
        state = stack.driver("status")
        assert state["requests"] == 5
        assert state["by_status"] == {"pending": 5}

        stack.start_worker(concurrency=1)
        out = stack.manage("requeue_stale", "--older", "0")
        assert "queued 5 request(s) again" in out.stdout
        state = stack.wait_for(lambda s: s["by_status"].get("issued", 0) == 5, timeout=60)
        assert state["problems"] == []
        assert state["audit_ok"]
    finally:
        stack.teardown()
