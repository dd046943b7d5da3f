"""Server-side SVG bar charts: :func:`bar_chart` lays them out, ``templates/_chart.html`` draws.

No script and no chart library (the pages allow no script from elsewhere and
no inline script), nothing from a CDN; colours come from ``static/charts.css``
because the Content-Security-Policy allows no inline style. The report pages
and the customer page's consumption chart both draw theirs this way.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Bar:
    label: str
    text: str
    """The value as shown (``1,234.50``)."""
    value: int
    x: float
    y: float
    width: float
    height: float
    labelled: bool
    """Whether its label is written under it (not every one fits)."""


@dataclass(frozen=True)
class Tick:
    y: float
    text: str


@dataclass(frozen=True)
class Chart:
    """A bar chart laid out in SVG user units (``viewBox="0 0 width height"``)."""

    title: str
    width: int
    height: int
    left: int
    right: int
    top: int
    bottom: int
    zero: float
    """The y of the value 0 (the axis the bars stand on)."""
    bars: tuple[Bar, ...]
    ticks: tuple[Tick, ...]
    slanted: bool
    """Labels are turned 40° (when they do not fit under their bars)."""


BAND = 56
"""SVG units per bar when the chart sizes itself."""
MIN_WIDTH, MAX_WIDTH = 480, 1040
CHAR_WIDTH = 7.2
"""About the width of one character of a 12 px label (charts.css), to know whether it fits."""
SLANT_SINE, SLANT_COSINE = 0.65, 0.77
"""sin and cos 40°: how far down and left a label turned 40° reaches, per unit of its length."""


def _nice_step(span: int, steps: int = 4) -> int:
    """A round step (1, 2 or 5 times a power of ten, at least 1) for ``span`` in ``steps``."""
    raw = max(span / steps, 1.0)
    power = 10 ** math.floor(math.log10(raw))
    for factor in (1, 2, 5, 10):
        if factor * power >= raw:
            return int(factor * power)
    return int(10 * power)  # pragma: no cover - the loop always returns


def bar_chart(
    title: str,
    points: list[tuple[str, int]],
    fmt: Callable[[int], str],
    *,
    width: int | None = None,
    plot_height: int = 200,
) -> Chart:
    """Lay out one bar per ``(label, value)`` (integers in the report's units).

    The value axis runs from 0 (or the lowest negative value) to a round
    number above the highest, with about four gridlines labelled by ``fmt``.
    The chart is as wide as its bars need (``BAND`` each, within
    ``MIN_WIDTH`` and ``MAX_WIDTH``) unless ``width`` is given; labels are
    thinned to about 16, and turned when they do not fit under their bar.
    """
    count = max(len(points), 1)
    left, right, top = 76, 12, 12
    if width is None:
        width = min(max(left + right + BAND * count, MIN_WIDTH), MAX_WIDTH)
    band = (width - left - right) / count
    every = max(1, math.ceil(len(points) / 16))
    longest = max((len(label) for label, _v in points), default=0) * CHAR_WIDTH
    slanted = longest > band * every - 4
    bottom = min(math.ceil(longest * SLANT_SINE) + 24, 150) if slanted else 28
    if slanted:  # the first label reaches left, under the value axis' labels
        left = max(left, math.ceil(longest * SLANT_COSINE - band / 2) + 4)
        band = (width - left - right) / count
    height = top + plot_height + bottom
    values = [value for _label, value in points] or [0]
    low, high = min(0, *values), max(0, *values)
    step = _nice_step(high - low if high > low else 1)
    low = math.floor(low / step) * step
    high = max(math.ceil(high / step) * step, low + step)

    def y_of(value: int) -> float:
        return round(top + plot_height * (high - value) / (high - low), 2)

    ticks = tuple(Tick(y_of(v), fmt(v)) for v in range(low, high + 1, step))
    zero = y_of(0)
    bar_w = min(band * 0.7, 48)
    bars = []
    for index, (label, value) in enumerate(points):
        y = y_of(value)
        bars.append(
            Bar(
                label=label,
                text=fmt(value),
                value=value,
                x=round(left + band * index + (band - bar_w) / 2, 2),
                y=min(y, zero),
                width=round(bar_w, 2),
                height=round(abs(zero - y), 2),
                labelled=index % every == 0,
            )
        )
    return Chart(title, width, height, left, right, top, bottom, zero, tuple(bars), ticks, slanted)
