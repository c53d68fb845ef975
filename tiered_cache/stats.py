"""Per-tier counters: plain integers, cheap enough for the L1 hit path.

Increments are not locked: a lost increment under thread contention is an
accepted error of a statistic, a lock on every hit is not. Prometheus export
and the admin dashboard read ``snapshot()``; they never add cost to a call.
"""

from __future__ import annotations

from typing import Any

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
    """Counters of one tier in this process.

    ``errors`` counts every failure; ``errors_by_kind`` splits it by the
    bounded ``TierUnavailable.kind`` (``oom``, ``readonly``, ``timeout``...),
    so a refused write is told from an outage without reading the log.
    """

    __slots__ = (*COUNTERS, "errors_by_kind")

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Set every counter back to zero."""
        for name in COUNTERS:
            setattr(self, name, 0)
        self.errors_by_kind: dict[str, int] = {}

    def error(self, kind: str) -> None:
        """Count one failure of ``kind`` (off the hit path: failures only)."""
        self.errors += 1
        self.errors_by_kind[kind] = self.errors_by_kind.get(kind, 0) + 1

    def snapshot(self) -> dict[str, Any]:
        """Return the counters as a plain dict (``errors_by_kind`` a copy)."""
        info: dict[str, Any] = {name: getattr(self, name) for name in COUNTERS}
        info["errors_by_kind"] = dict(self.errors_by_kind)
        return info


class CounterSet:
    """Counters kept as the ``int`` fields of a dataclass (bus, journal)."""

    def snapshot(self) -> dict[str, int]:
        """Return the counters as a plain dict."""
        return dict(self.__dict__)
