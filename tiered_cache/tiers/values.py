"""Rules for the values of a tier's OPTIONS, shared by the tiers.

A rule is what a value must be, said once: the tier's ``spec_problems`` (run
by ``manage.py check`` through ``conf.parse_options``, and by the tier's
constructor) applies it, so the check and the constructor cannot disagree.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ..exceptions import BadValue

__all__ = [
    "NON_NEGATIVE_INT",
    "NON_NEGATIVE_INT_OR_NONE",
    "NON_NEGATIVE_SECONDS",
    "POSITIVE_INT",
    "POSITIVE_INT_OR_NONE",
    "SECONDS_OR_NONE",
    "INT_OR_NONE",
    "Rule",
    "option_problems",
]


@dataclass(frozen=True)
class Rule:
    """What a value must be (``expected``, read by people) and the test of it."""

    expected: str
    accepts: Callable[[Any], bool]


def _int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _number(value: Any) -> bool:
    return (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(value)
    )


POSITIVE_INT = Rule("a positive integer", lambda v: _int(v) and v > 0)
POSITIVE_INT_OR_NONE = Rule(
    "a positive integer or None (e.g. 64 * 2**20 for 64 MiB)",
    lambda v: v is None or (_int(v) and v > 0),
)
NON_NEGATIVE_INT = Rule(
    "an integer >= 0 (e.g. 10 * 2**30 for 10 GiB)", lambda v: _int(v) and v >= 0
)
NON_NEGATIVE_INT_OR_NONE = Rule(
    "an integer >= 0 or None", lambda v: v is None or (_int(v) and v >= 0)
)
INT_OR_NONE = Rule("an integer or None", lambda v: v is None or _int(v))
NON_NEGATIVE_SECONDS = Rule(
    "a number of seconds >= 0 (int or float)", lambda v: _number(v) and v >= 0
)
SECONDS_OR_NONE = Rule(
    "a positive number of seconds (int or float) or None",
    lambda v: v is None or (_number(v) and v > 0),
)


def option_problems(
    tier: str, options: Mapping[str, Any], rules: Mapping[str, Rule]
) -> list[BadValue]:
    """Return a ``BadValue`` for each given option its rule does not accept."""
    return [
        BadValue(tier, f"OPTIONS[{key!r}]", options[key], rule.expected)
        for key, rule in rules.items()
        if key in options and not rule.accepts(options[key])
    ]
