"""The Quality page's charts, drawn on the server as inline SVG: no charting library, no script, nothing fetched, so
the page works offline and under the console's strict Content-Security-Policy (colours come from classes in the
stylesheet, never from inline styles). Each bar carries a `<title>`, which browsers show as a tooltip.

- tier shares per day: one 100% stacked bar per day (answered / closest / none), the day's count in its tooltip;
- latency histogram: answers per latency band, on bands that widen as latency grows;
- calibration: for answers with votes, the share voted 👍 in each confidence band, against the diagonal a perfectly
  calibrated confidence would follow.
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Sequence
from datetime import date, datetime, timedelta
from typing import Any

from markupsafe import Markup, escape

from bot.question_log import Activity
from bot.types import SUPPORT_LEVELS

WIDTH, HEIGHT = 640, 240
LEFT, RIGHT, TOP, BOTTOM = 56, 12, 22, 30
# (upper edge in ms, label) of each latency band, each band starting where the one before ends; the last is open.
LATENCY_BANDS = (
    (25, "<25"),
    (50, "<50"),
    (100, "<100"),
    (250, "<250"),
    (500, "<500"),
    (1000, "<1s"),
    (2500, "<2.5s"),
    (5000, "<5s"),
    (float("inf"), "≥5s"),
)
CONFIDENCE_BANDS = 5


def quality(activity: Sequence[Activity], since: date, days: int) -> dict[str, Any]:
    """The charts and headline figures of the Quality page for the answers since `since`."""
    latencies = sorted(item.latency_ms for item in activity if item.latency_ms is not None)
    voted = [item for item in activity if item.up or item.down]
    answered = sum(item.support == "answered" for item in activity)
    return {
        "summary": {
            "asked": len(activity),
            "answered_share": answered / len(activity) if activity else None,
            "p50": statistics.median(latencies) if latencies else None,
            "p95": latencies[min(len(latencies) - 1, round(0.95 * (len(latencies) - 1)))] if latencies else None,
            "voted": len(voted),
            "up_share": sum(item.up > item.down for item in voted) / len(voted) if voted else None,
        },
        "tier_chart": tier_shares(activity, since, days) if activity else None,
        "latency_chart": latency_histogram(latencies) if latencies else None,
        "calibration_chart": calibration(voted) if any(item.confidence is not None for item in voted) else None,
    }


def _svg(label: str, body: list[str]) -> Markup:
    return Markup(
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{escape(label)}"'
        f' xmlns="http://www.w3.org/2000/svg"><title>{escape(label)}</title>{"".join(body)}</svg>'
    )


def _y_axis(ticks: Sequence[tuple[float, str]]) -> list[str]:
    """Grid lines at fractions of the plot height, labelled."""
    plot = HEIGHT - TOP - BOTTOM
    parts = []
    for fraction, label in ticks:
        y = TOP + plot * (1 - fraction)
        parts.append(f'<line class="grid" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}"/>')
        parts.append(f'<text class="tick" x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{escape(label)}</text>')
    return parts


def _bar(x: float, y: float, width: float, height: float, css: str, tip: str) -> str:
    return (
        f'<rect class="{css}" x="{x:.1f}" y="{y:.1f}" width="{max(width, 0.5):.1f}" height="{max(height, 0):.1f}">'
        f"<title>{escape(tip)}</title></rect>"
    )


def tier_shares(activity: Sequence[Activity], since: date, days: int) -> Markup:
    per_day: dict[date, Counter[str]] = {since + timedelta(days=offset): Counter() for offset in range(days)}
    for item in activity:
        day = datetime.fromisoformat(item.created_at).date()
        if day in per_day:
            per_day[day][item.support] += 1
    plot_width, plot_height = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    slot = plot_width / days
    body = _y_axis([(0, "0%"), (0.5, "50%"), (1, "100%")])
    label_every = 1 if days <= 10 else (5 if days <= 40 else 15)
    for index, (day, counts) in enumerate(per_day.items()):
        x = LEFT + index * slot + slot * 0.15
        total = sum(counts.values())
        y = float(TOP + plot_height)
        for tier in reversed(SUPPORT_LEVELS):  # answered on top
            if not counts[tier]:
                continue
            height = plot_height * counts[tier] / total
            y -= height
            tip = f"{day.isoformat()}: {counts[tier]} of {total} {tier}"
            body.append(_bar(x, y, slot * 0.7, height, f"tier-{tier}", tip))
        if index % label_every == 0 or index == days - 1:
            body.append(
                f'<text class="tick" x="{x + slot * 0.35:.1f}" y="{HEIGHT - 10}" text-anchor="middle">'
                f"{day.strftime('%m-%d')}</text>"
            )
    return _svg("Share of answers by support tier per day", body)


def latency_histogram(latencies: Sequence[float]) -> Markup:
    counts = [0] * len(LATENCY_BANDS)
    for latency in latencies:
        counts[next(index for index, (edge, _) in enumerate(LATENCY_BANDS) if latency < edge)] += 1
    labels = [label for _, label in LATENCY_BANDS]
    most = max(counts)
    plot_width, plot_height = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    slot = plot_width / len(counts)
    body = _y_axis([(0, "0"), (0.5, f"{most / 2:g}"), (1, str(most))])
    for index, (count, label) in enumerate(zip(counts, labels, strict=True)):
        height = plot_height * count / most
        x = LEFT + index * slot + slot * 0.12
        body.append(_bar(x, TOP + plot_height - height, slot * 0.76, height, "bar", f"{label}: {count} answers"))
        middle = x + slot * 0.38
        body.append(
            f'<text class="tick" x="{middle:.1f}" y="{HEIGHT - 10}" text-anchor="middle">{escape(label)}</text>'
        )
    return _svg("Answers per latency band (milliseconds unless marked s)", body)


def calibration(voted: Sequence[Activity]) -> Markup:
    bands: list[list[bool]] = [[] for _ in range(CONFIDENCE_BANDS)]
    for item in voted:
        if item.confidence is None:
            continue
        band = min(int(item.confidence * CONFIDENCE_BANDS), CONFIDENCE_BANDS - 1)
        bands[band].append(item.up > item.down)
    plot_width, plot_height = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    slot = plot_width / CONFIDENCE_BANDS
    bottom = TOP + plot_height
    body = _y_axis([(0, "0%"), (0.5, "50%"), (1, "100%")])
    for index, outcomes in enumerate(bands):
        low, high = index / CONFIDENCE_BANDS, (index + 1) / CONFIDENCE_BANDS
        x = LEFT + index * slot + slot * 0.15
        label = f"{low:.1f}–{high:.1f}"
        if outcomes:
            share = sum(outcomes) / len(outcomes)
            tip = f"confidence {label}: {sum(outcomes)} of {len(outcomes)} voted up ({share:.0%})"
            body.append(_bar(x, bottom - plot_height * share, slot * 0.7, plot_height * share, "bar", tip))
            body.append(
                f'<text class="count" x="{x + slot * 0.35:.1f}" y="{bottom - plot_height * share - 4:.1f}"'
                f' text-anchor="middle">n={len(outcomes)}</text>'
            )
        body.append(
            f'<text class="tick" x="{x + slot * 0.35:.1f}" y="{HEIGHT - 10}" text-anchor="middle">{label}</text>'
        )
    body.append(
        f'<line class="ideal" x1="{LEFT}" y1="{bottom}" x2="{WIDTH - RIGHT}" y2="{TOP}"><title>perfect calibration'
        "</title></line>"
    )
    return _svg("Share of voted answers marked helpful, by the confidence the bot gave", body)
