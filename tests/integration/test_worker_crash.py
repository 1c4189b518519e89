"""A real signer worker killed mid-signing loses nothing and duplicates nothing (docs/security.md T13).

Each test runs a real Celery worker process against the embedded default (SQLite + filesystem
broker) and against PostgreSQL + Redis, kills it at the failpoints of the issuance path, and
checks the invariants: every request issued exactly once, the certificate carries its intent's
serial and the very TBS bytes that were recorded before signing, signatures verify, serials are
unique and the audit chain is intact.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from devtools.stack import Stack

pytestmark = pytest.mark.integration

POINTS = ("before_intent", "after_intent_commit", "after_sign", "after_store")


@pytest.fixture(params=["embedded", "services"])
def stack(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Stack]:
    s = Stack(tmp_path, request.param)
    s.setup()
    yield s
    s.teardown()


def all_issued(n: int):
    return lambda state: state["by_status"].get("issued", 0) == n


def assert_invariants(state: dict, n: int) -> None:
    assert state["requests"] == n
    assert state["by_status"] == {"issued": n}
    assert state["certificates"] == n
    assert state["intents"] == n, "a retry allocated a second intent/serial"
    assert state["distinct_serials"] == n
    assert state["requests_with_two_certs"] == 0
    assert state["problems"] == []
    assert state["audit_ok"], state["audit_problem"]


def test_it_issues_every_request_once(stack: Stack) -> None:
    stack.start_worker(concurrency=2)
    stack.driver("submit", "10")
    state = stack.wait_for(all_issued(10), timeout=60)
    assert_invariants(state, 10)


def test_it_survives_a_pool_child_killed_at_every_failpoint(stack: Stack, tmp_path: Path) -> None:
    markers = tmp_path / "markers"
    markers.mkdir()
    failpoints = ",".join(f"{point}=kill-once:{markers}" for point in POINTS)
    stack.start_worker(concurrency=2, failpoints=failpoints)
    n = 6
    stack.driver("submit", str(n))
    state = stack.wait_for(all_issued(n), timeout=120)
    fired = [p.name.rsplit("-", 1)[0] for p in markers.iterdir()]
    # Before the certificates are stored, every request meets every failpoint once, each kill
    # undoing the open transaction. "after_store" follows the commit of a whole batch, so once it
    # has killed the worker there is nothing left to redo for the batch's other requests.
    for point in ("before_intent", "after_intent_commit", "after_sign"):
        assert fired.count(point) == n, f"{point} must have killed the worker once per request"
    assert fired.count("after_store") >= 1
    assert_invariants(state, n)
    assert stack.worker_alive(), "the main worker process replaces killed children and keeps running"


@pytest.mark.parametrize("point", ["after_intent_commit", "after_sign"])
def test_it_recovers_when_the_whole_worker_dies(stack: Stack, tmp_path: Path, point: str) -> None:
    """The main process and its children are SIGKILLed; the message is lost (filesystem broker) or
    stuck unacknowledged (Redis). The sweeper re-queues the request and a new worker finishes it
    with the serial that was recorded before the crash."""
    markers = tmp_path / "markers"
    markers.mkdir()
    stack.start_worker(concurrency=1, failpoints=f"{point}=kill-group-once:{markers}")
    stack.driver("submit", "1")
    stack.wait_for(lambda s: not stack.worker_alive(), timeout=60)
    before = stack.driver("status")  # read after the death: a state read during it may predate the commit
    assert before["certificates"] == 0
    assert before["intents"] == 1
    stack.stop_worker()
    # The sweeper runs before the new worker starts, so nothing else can have picked the request up.
    out = stack.manage("requeue_stale", "--older", "0")
    assert "queued 1 request(s) again" in out.stdout
    stack.start_worker(concurrency=1)
    state = stack.wait_for(all_issued(1), timeout=60)
    assert_invariants(state, 1)
