"""Per-slice plots as vector drawings (reportlab graphics): traces over slice number, key slices marked.

Drawn with plain shapes rather than a chart widget, so axes, ticks, labels and legend are exactly where a
reader expects them and nothing depends on a plotting library.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from reportlab.graphics.shapes import Drawing, Group, Line, Polygon, PolyLine, Rect, String
from reportlab.lib import colors
from reportlab.pdfbase.pdfmetrics import stringWidth

from viewer.report.fonts import FONT, FONT_BOLD

AXIS = colors.HexColor("#333333")
GRID = colors.HexColor("#dddddd")
KEY = colors.HexColor("#7a3db8")
TEXT_SIZE = 7.0


@dataclass(frozen=True)
class Trace:
    """One line of a chart: per-slice values (slice 0 first), drawn against slice numbers 1…n."""

    label: str
    values: np.ndarray
    colour: colors.Color
    dash: tuple[float, ...] | None = None
    width: float = 1.2


@dataclass(frozen=True)
class _Plot:
    """The plot area of a chart in points, and its mapping from (slice index, value)."""

    left: float
    bottom: float
    width: float
    height: float
    n: int
    lo: float
    hi: float

    @property
    def top(self) -> float:
        return self.bottom + self.height

    def x(self, k: float) -> float:
        return self.left + (self.width * k / (self.n - 1) if self.n > 1 else self.width / 2)

    def y(self, v: float) -> float:
        return self.bottom + self.height * (min(max(v, self.lo), self.hi) - self.lo) / (self.hi - self.lo)


def nice_step(span: float, target: int = 8) -> float:
    """A 1-2-5 step that cuts ``span`` into about ``target`` intervals."""
    if span <= 0:
        return 1.0
    raw = span / target
    power = 10 ** math.floor(math.log10(raw))
    return next(m * power for m in (1, 2, 5, 10) if m * power >= raw)


def slice_ticks(n: int) -> list[int]:
    """Slice-number ticks (1-based) for ``n`` slices: 1, then multiples of a nice step."""
    step = max(1, int(nice_step(max(n - 1, 1))))
    return [1] + [t for t in range(step, n + 1, step) if t != 1]


def _width(text: str, size: float = TEXT_SIZE) -> float:
    return stringWidth(text, FONT, size)


def _string(x: float, y: float, text: str, size: float = TEXT_SIZE, **kw: object) -> String:
    kw.setdefault("fillColor", AXIS)
    return String(x, y, text, fontName=kw.pop("fontName", FONT), fontSize=size, **kw)


def slice_chart(
    traces: Sequence[Trace],
    *,
    width: float,
    height: float,
    title: str,
    y_label: str,
    key_slices: Sequence[int] = (),
    y_range: tuple[float, float] = (0.0, 1.0),
    hline: tuple[float, str] | None = None,
) -> Drawing:
    """A chart of ``traces`` over slice number, ``width`` × ``height`` points.

    Key slices (original 0-based indices) are marked by a dashed line and their slice number on top;
    ``hline`` draws a labelled horizontal reference, e.g. a threshold.
    """
    n = max((len(t.values) for t in traces), default=0)
    plot = _Plot(
        left=40.0, bottom=28.0, width=width - 48.0, height=height - 76.0, n=n, lo=y_range[0], hi=y_range[1]
    )
    d = Drawing(width, height)
    d.add(_string(0, height - 11, title, 9.5, fontName=FONT_BOLD))
    _axes(d, plot, y_label)
    keys = sorted(k for k in key_slices if 0 <= k < n)
    _mark_key_slices(d, plot, keys)
    if hline is not None:
        value, text = hline
        y = plot.y(value)
        d.add(
            Line(
                plot.left,
                y,
                plot.left + plot.width,
                y,
                strokeColor=AXIS,
                strokeWidth=0.6,
                strokeDashArray=(4, 3),
            )
        )
    for trace in traces:
        points: list[float] = []
        for k, v in enumerate(np.asarray(trace.values, dtype=float)):
            if np.isfinite(v):
                points += [plot.x(k), plot.y(float(v))]
        if len(points) >= 4:
            d.add(
                PolyLine(
                    points,
                    strokeColor=trace.colour,
                    strokeWidth=trace.width,
                    strokeDashArray=trace.dash,
                    strokeLineJoin=1,
                )
            )
    if hline is not None:  # its label above the traces, on a plate, so no line crosses it
        right = plot.left + plot.width - 2
        plate = Rect(right - _width(text, 6.5) - 2, y + 1, _width(text, 6.5) + 3, 8, strokeColor=None)
        plate.fillColor, plate.fillOpacity = colors.white, 0.85
        d.add(plate)
        d.add(_string(right, y + 2.5, text, 6.5, textAnchor="end"))
    _legend(d, traces, right=plot.left + plot.width, y=height - 24, with_key=bool(keys))
    return d


def _axes(d: Drawing, plot: _Plot, y_label: str) -> None:
    step = nice_step(plot.hi - plot.lo, 4)
    for v in np.arange(plot.lo, plot.hi + step / 2, step):
        y = plot.y(v)
        d.add(Line(plot.left, y, plot.left + plot.width, y, strokeColor=GRID, strokeWidth=0.5))
        d.add(Line(plot.left - 3, y, plot.left, y, strokeColor=AXIS, strokeWidth=0.6))
        d.add(_string(plot.left - 5, y - 3, f"{v:g}", textAnchor="end"))
    for t in slice_ticks(plot.n):
        x = plot.x(t - 1)
        d.add(Line(x, plot.bottom, x, plot.bottom - 3, strokeColor=AXIS, strokeWidth=0.6))
        d.add(_string(x, plot.bottom - 11, str(t), textAnchor="middle"))
    d.add(
        Rect(
            plot.left, plot.bottom, plot.width, plot.height, fillColor=None, strokeColor=AXIS, strokeWidth=0.6
        )
    )
    d.add(_string(plot.left + plot.width / 2, 2, "slice number", 7.5, textAnchor="middle"))
    label = _string(0, 0, y_label, 7.5, textAnchor="middle")
    d.add(Group(label, transform=(0, 1, -1, 0, 10, plot.bottom + plot.height / 2)))  # rotated to read upwards


def _mark_key_slices(d: Drawing, plot: _Plot, key_slices: list[int]) -> None:
    """Dashed line and slice number per key slice; numbers of neighbouring slices alternate between two rows."""
    last_right = [-math.inf, -math.inf]
    for k in key_slices:
        x = plot.x(k)
        label = str(k + 1)
        half = _width(label, 6.5) / 2
        row = next((i for i, right in enumerate(last_right) if x - half >= right + 2), 0)
        last_right[row] = x + half
        d.add(Line(x, plot.bottom, x, plot.top, strokeColor=KEY, strokeWidth=0.7, strokeDashArray=(2, 2)))
        d.add(
            Polygon([x - 3, plot.top + 5, x + 3, plot.top + 5, x, plot.top], fillColor=KEY, strokeColor=None)
        )
        d.add(_string(x, plot.top + 7 + 8 * row, label, 6.5, textAnchor="middle", fillColor=KEY))


def _legend(d: Drawing, traces: Sequence[Trace], *, right: float, y: float, with_key: bool) -> None:
    """One row, right-aligned: a line sample and label per trace, then the key-slice marker."""
    x = right
    for trace in reversed(traces):
        x -= _width(trace.label)
        d.add(_string(x, y, trace.label))
        x -= 18
        d.add(
            Line(
                x,
                y + 2.5,
                x + 14,
                y + 2.5,
                strokeColor=trace.colour,
                strokeWidth=trace.width + 0.3,
                strokeDashArray=trace.dash,
            )
        )
        x -= 12
    if with_key:
        x -= _width("key slices")
        d.add(_string(x, y, "key slices", fillColor=KEY))
        x -= 10
        d.add(Polygon([x, y + 6, x + 6, y + 6, x + 3, y + 1], fillColor=KEY, strokeColor=None))


def colour_bar(
    width: float,
    height: float,
    colour_of: Callable[[float], tuple[float, float, float]],
    label_low: str,
    label_high: str,
    title: str,
) -> Drawing:
    """A horizontal colour legend: ``colour_of(t)`` → (r, g, b) in [0, 1] for t in [0, 1]."""
    d = Drawing(width, height)
    bar_left = _width(title) + 6 + _width(label_low) + 4
    bar_width = width - bar_left - _width(label_high) - 4
    steps = 64
    for i in range(steps):
        r, g, b = colour_of((i + 0.5) / steps)
        x = bar_left + bar_width * i / steps
        d.add(
            Rect(x, 2, bar_width / steps + 0.3, height - 4, fillColor=colors.Color(r, g, b), strokeColor=None)
        )
    d.add(Rect(bar_left, 2, bar_width, height - 4, fillColor=None, strokeColor=AXIS, strokeWidth=0.4))
    d.add(_string(0, height / 2 - 2.5, title))
    d.add(_string(bar_left - 3, height / 2 - 2.5, label_low, textAnchor="end"))
    d.add(_string(bar_left + bar_width + 3, height / 2 - 2.5, label_high))
    return d
