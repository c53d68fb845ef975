"""Per-tier counters: plain integers, cheap enough for the L1 hit path.

Increments are not locked: a lost increment under thread contention is an
accepted error of a statistic, a lock on every hit is not. Prometheus export
and the admin dashboard read ``snapshot()``; they never add cost to a call.
"""

from __future__ import annotations

__all__ = ["COUNTERS", "CounterSet", "TierStats"]

COUNTERS = (
    "hits",
    "misses",
    "sets",
    "deletes",
    "evictions",
    "expirations",
    "promotions",
    "errors",
    "busy",
    "rejected",
    "poison_rejected",
    "skipped",
    "refused",
    "breaker_opened",
    "leases",
    "leases_refused",
)


class TierStats:
    """Counters of one tier in this process."""

    __slots__ = COUNTERS

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Set every counter back to zero."""
        for name in COUNTERS:
            setattr(self, name, 0)

    def snapshot(self) -> dict[str, int]:
        """Return the counters as a plain dict."""
        return {name: getattr(self, name) for name in COUNTERS}


class CounterSet:
    """Counters kept as the ``int`` fields of a dataclass (bus, journal)."""

    def snapshot(self) -> dict[str, int]:
        """Return the counters as a plain dict."""
        return dict(self.__dict__)
