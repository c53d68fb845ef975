"""Sentinels with readable reprs.

A cache must tell "no value" from "a stored None" and "the tier could not
answer" without looking at falsiness, so each of these is its own object.
"""

from __future__ import annotations

__all__ = ["MISSING", "REFUSED", "UNAVAILABLE", "Constant"]


class Constant:
    """A named singleton that prints its name (diskcache's ``Constant`` idea)."""

    __slots__ = ("_name",)

    def __init__(self, name: str) -> None:
        self._name = name

    def __repr__(self) -> str:
        return self._name

    def __bool__(self) -> bool:
        # Falsiness must never be used to detect a miss: make misuse loud.
        raise TypeError(f"{self._name} has no truth value; compare with `is`")


MISSING = Constant("MISSING")
UNAVAILABLE = Constant("UNAVAILABLE")
#: The tier answered and refused the change (Redis OOM, READONLY, MISCONF): it
#: still serves what it held (``Slot.attempt``).
REFUSED = Constant("REFUSED")
