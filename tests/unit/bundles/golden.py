"""Golden files for the rendered bundle files: tests/golden/bundles/<name>.

Regenerate with UPDATE_GOLDEN=1 and review the diff like code: these are the files admins copy
to their gateways.
"""

from __future__ import annotations

import os
from pathlib import Path

GOLDEN_DIR = Path(__file__).resolve().parents[2] / "golden" / "bundles"


def assert_matches_golden(name: str, actual: str | bytes) -> None:
    path = GOLDEN_DIR / name
    data = actual.encode() if isinstance(actual, str) else actual
    if os.environ.get("UPDATE_GOLDEN") == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    assert path.exists(), f"{name} has no golden file; run with UPDATE_GOLDEN=1 and review it"
    assert data == path.read_bytes(), f"{name} changed; rerun with UPDATE_GOLDEN=1 and review the diff"
