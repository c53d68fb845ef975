"""The hit-ratio chart, drawn on the server as inline SVG.

No JavaScript and no CDN: the page works offline and under a strict Content
Security Policy. Colours of the axes and text come from the admin's CSS
variables (``--body-fg``, ``--hairline-color``), so the chart follows the
admin's light and dark themes; the tier lines use one fixed palette that reads
on both.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

__all__ = ["PALETTE", "hit_ratio_svg"]

#: Line colours, one per tier in order (readable on light and dark).
PALETTE = ("#2f80ed", "#f2994a", "#27ae60", "#bb6bd9", "#eb5757")

_WIDTH, _HEIGHT = 720, 240
_LEFT, _RIGHT, _TOP, _BOTTOM = 48, 110, 12, 28


def hit_ratio_svg(
    tiers: Mapping[str, Sequence[Mapping[str, Any]]], *, window: float, now: float
) -> SafeString:
    """Return an ``<svg>`` of each tier's hit ratio (0-100 %) over ``window`` s.

    ``tiers`` is ``read_series``'s ``{"tier": [{"t", "hit_ratio"}, ...]}``; a
    point whose ``hit_ratio`` is ``None`` (no requests) breaks the line.
    """
    plot_w = _WIDTH - _LEFT - _RIGHT
    plot_h = _HEIGHT - _TOP - _BOTTOM
    start = now - window

    def x(t: float) -> float:
        return _LEFT + plot_w * min(max((t - start) / window, 0.0), 1.0)

    def y(ratio: float) -> float:
        return _TOP + plot_h * (1.0 - min(max(ratio, 0.0), 1.0))

    parts = [
        f'<svg class="tc-chart" viewBox="0 0 {_WIDTH} {_HEIGHT}" role="img" '
        f'aria-label="Hit ratio per tier" xmlns="http://www.w3.org/2000/svg">'
    ]
    for pct in (0, 25, 50, 75, 100):
        gy = y(pct / 100)
        parts.append(
            f'<line class="tc-grid" x1="{_LEFT}" x2="{_LEFT + plot_w}" '
            f'y1="{gy:.1f}" y2="{gy:.1f}"/>'
            f'<text class="tc-axis" x="{_LEFT - 6}" y="{gy + 4:.1f}" '
            f'text-anchor="end">{pct} %</text>'
        )
    for label, t in _time_ticks(window, now):
        parts.append(
            f'<text class="tc-axis" x="{x(t):.1f}" y="{_HEIGHT - 8}" '
            f'text-anchor="middle">{escape(label)}</text>'
        )
    drawn = 0
    for index, (name, points) in enumerate(tiers.items()):
        colour = PALETTE[index % len(PALETTE)]
        for run in _runs(points, start):
            coords = " ".join(f"{x(t):.1f},{y(r):.1f}" for t, r in run)
            if len(run) == 1:
                ((t, r),) = run
                parts.append(
                    f'<circle cx="{x(t):.1f}" cy="{y(r):.1f}" r="2.5" fill="{colour}"/>'
                )
            else:
                parts.append(
                    f'<polyline points="{coords}" fill="none" stroke="{colour}" '
                    f'stroke-width="2"/>'
                )
            drawn += len(run)
        ly = _TOP + 16 + 18 * index
        parts.append(
            f'<rect x="{_WIDTH - _RIGHT + 14}" y="{ly - 9}" width="14" height="4" '
            f'fill="{colour}"/><text class="tc-legend" x="{_WIDTH - _RIGHT + 34}" '
            f'y="{ly - 3}">{escape(name)}</text>'
        )
    if not drawn:
        parts.append(
            f'<text class="tc-axis" x="{_LEFT + plot_w / 2:.0f}" '
            f'y="{_TOP + plot_h / 2:.0f}" text-anchor="middle">'
            f"no requests recorded in this window</text>"
        )
    parts.append("</svg>")
    # Every interpolated string above went through escape(); numbers are floats.
    return mark_safe("".join(parts))  # noqa: S308


def _runs(
    points: Sequence[Mapping[str, Any]], start: float
) -> list[list[tuple[float, float]]]:
    """Split points into runs of consecutive known ratios inside the window."""
    runs: list[list[tuple[float, float]]] = [[]]
    for point in sorted(points, key=lambda p: p["t"]):
        ratio = point.get("hit_ratio")
        if point["t"] < start:
            continue
        if ratio is None:
            if runs[-1]:
                runs.append([])
            continue
        runs[-1].append((float(point["t"]), float(ratio)))
    return [run for run in runs if run]


def _time_ticks(window: float, now: float) -> list[tuple[str, float]]:
    """Return five labels from ``-window`` to ``now``, in minutes or hours."""
    ticks = []
    for i in range(5):
        ago = window * (4 - i) / 4
        if not ago:
            label = "now"
        elif window <= 3 * 3600:
            label = f"-{ago / 60:.0f} min"
        else:
            label = f"-{ago / 3600:.0f} h"
        ticks.append((label, now - ago))
    return ticks
