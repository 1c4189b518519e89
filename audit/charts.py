"""The dashboard's bar charts as geometry: pure, no database, drawn as SVG by the template."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Bar:
    label: str  # shown under the bar (may be empty to avoid crowding)
    title: str  # the full label, in the tooltip
    value: int
    x: float
    y: float
    width: float
    height: float

    @property
    def cx(self) -> float:
        """The middle of the bar, where its labels are anchored."""
        return round(self.x + self.width / 2, 1)


@dataclass(frozen=True)
class Chart:
    title: str
    bars: list[Bar]
    max_value: int
    total: int
    width: int = 640
    height: int = 200
    plot_top: int = 16
    plot_bottom: int = 170  # the baseline; labels go below it

    @property
    def label_y(self) -> int:
        return self.plot_bottom + 16


def bar_chart(title: str, points: list[tuple[str, str, int]], *, width: int = 640, label_every: int = 1) -> Chart:
    """Bars for (label, title, value) points, scaled to the largest value; drawn by the template."""
    chart = Chart(title=title, bars=[], max_value=0, total=0, width=width)
    peak = max((value for _l, _t, value in points), default=0)
    slot = (width - 20) / max(1, len(points))
    plot = chart.plot_bottom - chart.plot_top
    bars = []
    for index, (label, full, value) in enumerate(points):
        height = plot * value / peak if peak else 0.0
        bars.append(
            Bar(
                label=label if index % label_every == 0 else "",
                title=f"{full}: {value}",
                value=value,
                x=round(10 + index * slot + slot * 0.15, 1),
                y=round(chart.plot_bottom - height, 1),
                width=round(slot * 0.7, 1),
                height=round(height, 1),
            )
        )
    return Chart(title=title, bars=bars, max_value=peak, total=sum(b.value for b in bars), width=width)
