"""``15m``, ``1h``, ``1d``: durations as the command line writes them."""

from __future__ import annotations

import re

__all__ = ["parse_duration"]

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_PATTERN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd])\s*$")


def parse_duration(text: str) -> float:
    """Return the seconds of ``text`` (``90s``, ``15m``, ``1h``, ``1d``).

    Raise ``ValueError`` with the accepted forms for anything else (a bare
    number, a unit not listed, zero).
    """
    found = _PATTERN.match(text)
    if found is None or float(found.group(1)) <= 0:
        raise ValueError(
            f"{text!r} is not a duration: write a positive number and a unit, "
            "s, m, h or d (90s, 15m, 1h, 1d)"
        )
    return float(found.group(1)) * _UNITS[found.group(2)]
