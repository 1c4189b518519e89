"""The chart geometry (pure: no database)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from audit import charts

ROOT = Path(__file__).resolve().parents[2]


def test_bar_chart_scales_to_the_tallest_bar() -> None:
    chart = charts.bar_chart("t", [("a", "A", 0), ("b", "B", 5), ("c", "C", 10)])

    heights = [bar.height for bar in chart.bars]
    assert heights[0] == 0
    assert heights[2] == chart.plot_bottom - chart.plot_top
    assert heights[1] == heights[2] / 2
    assert all(bar.y + bar.height == pytest.approx(chart.plot_bottom) for bar in chart.bars)
    assert chart.max_value == 10
    assert chart.total == 15
    assert all(0 <= bar.x and bar.x + bar.width <= chart.width for bar in chart.bars)
    empty = charts.bar_chart("t", [("a", "A", 0)])
    assert empty.bars[0].height == 0
    assert empty.max_value == 0


def test_the_chart_geometry_imports_no_django() -> None:
    probe = (
        "import sys, audit.charts\n"
        "print(','.join(sorted(n for n in sys.modules if n.split('.')[0] in ('django', 'authority', 'enrollment'))))\n"
    )
    # A fresh interpreter: this test process has long since imported Django through pytest-django.
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "", f"audit.charts pulled in: {out.stdout.strip()}"
