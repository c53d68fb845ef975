"""The access event: the unit of trace replay and of learning from history."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["AccessEvent"]


@dataclass(frozen=True, slots=True)
class AccessEvent:
    """One access to a key, as a replay or a training set sees it."""

    key: str
    hit: bool
    size: int = 1
    ts: float = 0.0
    tier: str = "l1"
