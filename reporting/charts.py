"""Charts as plain shapes for one SVG template: readable without JavaScript, printable, coloured by class.

Each function turns report figures into a `Chart` (rectangles, lines, dots, text) in a fixed
viewBox; `templates/reporting/_chart.html` draws any chart with a title and a description that
says in words what the picture shows, for screen readers and for when images are off.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal

WIDTH, HEIGHT = 760, 300
LEFT, RIGHT, TOP, BOTTOM = 56, 56, 28, 52


@dataclass(frozen=True)
class Rect:
    x: float
    y: float
    width: float
    height: float
    css: str
    title: str = ""


@dataclass(frozen=True)
class Text:
    x: float
    y: float
    text: str
    css: str = ""
    anchor: str = "middle"


@dataclass(frozen=True)
class Line:
    points: str  # "x1,y1 x2,y2 …" for <polyline>
    css: str


@dataclass(frozen=True)
class Dot:
    x: float
    y: float
    css: str
    title: str = ""


@dataclass(frozen=True)
class LegendItem:
    css: str
    label: str


@dataclass
class Chart:
    slug: str  # unique on the page: the ids of the title and description derive from it
    title: str
    description: str
    width: int = WIDTH
    height: int = HEIGHT
    rects: list[Rect] = field(default_factory=list)
    lines: list[Line] = field(default_factory=list)
    dots: list[Dot] = field(default_factory=list)
    texts: list[Text] = field(default_factory=list)
    grid: list[Line] = field(default_factory=list)
    legend: list[LegendItem] = field(default_factory=list)


def nice_step(maximum: float, *, ticks: int = 4) -> float:
    """A round step (1, 2, 2.5 or 5 by 10ⁿ) so that about `ticks` steps reach `maximum`."""
    if maximum <= 0:
        return 1
    rough = maximum / ticks
    magnitude = 10 ** math.floor(math.log10(rough))
    return next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= rough)


def short_number(value: float | Decimal) -> str:
    """57600 → 57.6k, 1250000 → 1.25M: axis and bar labels."""
    value = float(value)
    for size, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= size:
            return f"{value / size:.3g}{suffix}"
    return f"{value:.3g}" if value != int(value) else str(int(value))


def percent(value: float | None) -> str:
    return "—" if value is None else f"{round(value * 100)}%"


def _plot() -> tuple[float, float, float, float]:
    """Left, top, width and height of the plotting area."""
    return LEFT, TOP, WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM


def _slots(count: int) -> tuple[float, float]:
    """Centre of the first slot and the distance between slots for `count` bars."""
    left, _, width, _ = _plot()
    step = width / max(count, 1)
    return left + step / 2, step


def trend(
    *, slug: str, title: str, quarters: Sequence[str], won: Sequence[int], lost: Sequence[int]
) -> Chart:
    """Win rate per quarter as a line (left axis, 0 to 100 %), over stacked won and lost bars (right axis)."""
    left, top, width, height = _plot()
    bottom = top + height
    rates = [w / (w + lo) if w + lo else None for w, lo in zip(won, lost, strict=True)]
    chart = Chart(slug=slug, title=title, description=_trend_words(quarters, won, lost, rates))
    for share in (0, 0.25, 0.5, 0.75, 1):
        y = bottom - share * height
        chart.grid.append(Line(f"{left},{y:.1f} {left + width},{y:.1f}", "gridline"))
        chart.texts.append(Text(left - 8, y + 4, f"{round(share * 100)}%", "axis", "end"))
    most = max((w + lo for w, lo in zip(won, lost, strict=True)), default=0)
    step = nice_step(most) if most else 1
    top_count = step * math.ceil(most / step) if most else 1
    for tick in range(0, int(top_count) + 1, max(int(step), 1)):
        y = bottom - tick / top_count * height
        chart.texts.append(Text(left + width + 8, y + 4, str(tick), "axis", "start"))
    first, gap = _slots(len(quarters))
    bar = gap * 0.5
    segment: list[str] = []
    previous_point = ""
    for index, code in enumerate(quarters):
        x = first + index * gap
        won_h, lost_h = won[index] / top_count * height, lost[index] / top_count * height
        chart.rects.append(
            Rect(x - bar / 2, bottom - won_h, bar, won_h, "bar-won", f"{code}: {won[index]} won")
        )
        chart.rects.append(
            Rect(x - bar / 2, bottom - won_h - lost_h, bar, lost_h, "bar-lost", f"{code}: {lost[index]} lost")
        )
        chart.texts.append(Text(x, bottom + 18, code, "axis"))
        decided_words = f"{won[index]} won, {lost[index]} lost" if won[index] + lost[index] else "none"
        chart.texts.append(Text(x, bottom + 34, decided_words, "axis small"))
        value = rates[index]
        if value is None:
            _close_segment(chart, segment)
            segment = []
            chart.texts.append(Text(x, bottom - 6, "—", "value muted"))
            continue
        y = bottom - value * height
        point = f"{x:.1f},{y:.1f}"
        if previous_point and not segment:
            # Across quarters without decisions the trend is drawn dashed: there is no rate to plot there.
            chart.lines.append(Line(f"{previous_point} {point}", "rate-gap"))
        segment.append(point)
        previous_point = point
        chart.dots.append(Dot(x, y, "rate-dot", f"{code}: {percent(value)}"))
        chart.texts.append(Text(x, y - 10, percent(value), "value"))
    _close_segment(chart, segment)
    chart.legend = [
        LegendItem("rate-dot", "Win rate (left axis)"),
        LegendItem("bar-won", "Won (right axis)"),
        LegendItem("bar-lost", "Lost (right axis)"),
    ]
    return chart


def _close_segment(chart: Chart, segment: list[str]) -> None:
    # A quarter without decisions has no rate: the line breaks there instead of dropping to 0 %.
    if len(segment) > 1:
        chart.lines.append(Line(" ".join(segment), "rate-line"))


def _trend_words(
    quarters: Sequence[str], won: Sequence[int], lost: Sequence[int], rates: Sequence[float | None]
) -> str:
    parts = [
        f"{code}: {percent(r)} ({w} won, {lo} lost)" if r is not None else f"{code}: no decisions"
        for code, w, lo, r in zip(quarters, won, lost, rates, strict=True)
    ]
    span = f" from {quarters[0]} to {quarters[-1]}" if quarters else ""
    return f"Win rate by fiscal quarter{span}. " + "; ".join(parts) + "."


def stacked_columns(
    *,
    slug: str,
    title: str,
    categories: Sequence[str],
    series: Sequence[tuple[str, str, Sequence[Decimal]]],
    unit: str,
) -> Chart:
    """One column per category, stacked by series (label, css class, values), with the total on top."""
    left, top, width, height = _plot()
    bottom = top + height
    totals = [sum((values[i] for _, _, values in series), Decimal(0)) for i in range(len(categories))]
    most = float(max(totals, default=0))
    step = nice_step(most)
    top_value = step * math.ceil(most / step) if most else 1
    chart = Chart(slug=slug, title=title, description=_stack_words(categories, series, totals, unit))
    tick = 0.0
    while tick <= top_value + step / 2:
        y = bottom - tick / top_value * height
        chart.grid.append(Line(f"{left},{y:.1f} {left + width},{y:.1f}", "gridline"))
        chart.texts.append(Text(left - 8, y + 4, short_number(tick), "axis", "end"))
        tick += step
    first, gap = _slots(len(categories))
    bar = min(gap * 0.6, 80)
    for index, category in enumerate(categories):
        x, base = first + index * gap, bottom
        for label, css, values in series:
            h = float(values[index]) / top_value * height
            if h > 0:
                title_text = f"{category}, {label}: {short_number(values[index])} {unit}"
                chart.rects.append(Rect(x - bar / 2, base - h, bar, h, css, title_text))
            base -= h
        chart.texts.append(Text(x, bottom + 18, category, "axis"))
        chart.texts.append(Text(x, base - 6, short_number(totals[index]), "value"))
    chart.legend = [LegendItem(css, label) for label, css, _ in series]
    return chart


def _stack_words(
    categories: Sequence[str],
    series: Sequence[tuple[str, str, Sequence[Decimal]]],
    totals: Sequence[Decimal],
    unit: str,
) -> str:
    parts = []
    for index, category in enumerate(categories):
        pieces = ", ".join(
            f"{label} {short_number(values[index])}" for label, _, values in series if values[index]
        )
        parts.append(f"{category}: {short_number(totals[index])} {unit}" + (f" ({pieces})" if pieces else ""))
    return "; ".join(parts) + "." if parts else "Nothing to show."


def shares(
    *, slug: str, title: str, rows: Sequence[tuple[str, Sequence[int]]], parts: Sequence[tuple[str, str]]
) -> Chart:
    """One horizontal 100 % bar per row, split into `parts` (label, css class): how outcomes divide."""
    row_height, gap, label_width = 34, 14, 150
    height = TOP + len(rows) * (row_height + gap) + 8
    width = WIDTH - label_width - RIGHT
    chart = Chart(slug=slug, title=title, description=_share_words(rows, parts), height=height)
    for index, (label, counts) in enumerate(rows):
        y = TOP + index * (row_height + gap)
        total = sum(counts)
        chart.texts.append(
            Text(label_width - 10, y + row_height / 2 + 4, f"{label} ({total})", "axis", "end")
        )
        x = float(label_width)
        if not total:
            chart.rects.append(Rect(x, y, width, row_height, "bar-empty", f"{label}: none closed"))
            chart.texts.append(Text(x + width / 2, y + row_height / 2 + 4, "none closed", "value muted"))
            continue
        for (part, css), count in zip(parts, counts, strict=True):
            w = count / total * width
            if w > 0:
                chart.rects.append(Rect(x, y, w, row_height, css, f"{label}, {part}: {count} of {total}"))
            if w >= 36:
                chart.texts.append(Text(x + w / 2, y + row_height / 2 + 4, percent(count / total), "inside"))
            x += w
    chart.legend = [LegendItem(css, part) for part, css in parts]
    return chart


def _share_words(rows: Sequence[tuple[str, Sequence[int]]], parts: Sequence[tuple[str, str]]) -> str:
    sentences = []
    for label, counts in rows:
        total = sum(counts)
        if not total:
            sentences.append(f"{label}: none closed")
            continue
        split = ", ".join(
            f"{count} {part.lower()} ({percent(count / total)})"
            for (part, _), count in zip(parts, counts, strict=True)
        )
        sentences.append(f"{label}: {total} closed, {split}")
    return "; ".join(sentences) + "."
