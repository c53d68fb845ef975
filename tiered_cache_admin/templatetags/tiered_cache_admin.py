"""Number formats of the dashboard: ratios as percentages, rates, durations."""

from __future__ import annotations

import time
from typing import Any

from django import template

register = template.Library()

_NONE = "—"


@register.filter
def percent(ratio: Any) -> str:
    """``0.873`` -> ``"87.3 %"``; ``None`` (no requests) -> a dash."""
    if ratio is None or ratio == "":
        return _NONE
    return f"{float(ratio) * 100:.1f} %"


@register.filter
def rate(per_second: Any) -> str:
    """Requests per second, with the precision small numbers need."""
    if per_second is None:
        return _NONE
    value = float(per_second)
    return f"{value:.0f}" if value >= 100 else f"{value:.2f}"


@register.filter
def ms(milliseconds: Any) -> str:
    """Milliseconds; sub-millisecond values in microseconds."""
    if milliseconds is None:
        return _NONE
    value = float(milliseconds)
    return f"{value * 1000:.0f} µs" if value < 1 else f"{value:.1f} ms"


@register.filter
def duration(seconds: Any) -> str:
    """``3725`` -> ``"1 h 2 min"``; below a minute, seconds."""
    if seconds is None:
        return _NONE
    value = float(seconds)
    if value < 60:
        return f"{value:.0f} s"
    minutes = int(value // 60)
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if hours < 48 else f"{hours // 24} days"


@register.filter
def ago(epoch: Any) -> str:
    """An epoch timestamp as "N ago"; ``None`` (never) -> "never"."""
    if epoch is None or epoch == "":
        return "never"
    return f"{duration(max(time.time() - float(epoch), 0))} ago"
