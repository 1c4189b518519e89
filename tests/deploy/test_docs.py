"""docs/deploy.md keeps up with deploy/: every file is described, the scores table matches the tests."""

from __future__ import annotations

import re

from tests.deploy.test_systemd import THRESHOLDS
from tests.deploy.units import DEPLOY, ROOT

DOC = (ROOT / "docs" / "deploy.md").read_text()


def test_every_file_in_deploy_is_described() -> None:
    files = sorted(p.relative_to(ROOT).as_posix() for p in DEPLOY.rglob("*") if p.is_file())
    assert files
    missing = [f for f in files if f"`{f}`" not in DOC]
    assert missing == []


def test_the_thresholds_in_the_doc_are_the_tests() -> None:
    rows = dict(re.findall(r"^\| `(ca-portal-[a-z]+\.service)`[^|]*\| [0-9.]+ \| ([0-9.]+)", DOC, re.MULTILINE))
    assert rows["ca-portal-signer.service"] == str(THRESHOLDS["ca-portal-signer.service"])
    assert rows["ca-portal-web.service"] == str(THRESHOLDS["ca-portal-web.service"])
    assert rows["ca-portal-static.service"] == str(THRESHOLDS["ca-portal-static.service"])
    for unit in ("ca-portal-render.service", "ca-portal-beat.service", "ca-portal-migrate.service"):
        assert THRESHOLDS[unit] == THRESHOLDS["ca-portal-web.service"], "the doc groups them with the web tier"
