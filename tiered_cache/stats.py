"""Per-tier counters: plain integers, cheap enough for the L1 hit path.

Increments are not locked: a lost increment under thread contention is an
accepted error of a statistic, a lock on every hit is not. Prometheus export
and the admin dashboard read ``snapshot()``; they never add cost to a call.
"""

from __future__ import annotations

import re
from bisect import bisect_left
from dataclasses import dataclass
from typing import Any

__all__ = [
    "COUNTERS",
    "LATENCY_BUCKETS_MS",
    "POOLED_GROUPS",
    "ChainStats",
    "CounterSet",
    "GroupStats",
    "Latency",
    "TierStats",
]

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


#: Upper bounds (milliseconds) of the latency histograms' buckets; a last,
#: unbounded bucket follows. Fixed, so histograms of every process add up.
LATENCY_BUCKETS_MS = (
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0,
    1000.0, 2500.0,
)  # fmt: skip
#: Why a value was not stored (``refused_by_reason``): bigger than the tier
#: takes (``too_big``), or turned away by the eviction policy (``admission``).
REFUSAL_REASONS = ("too_big", "admission")


class Latency:
    """A fixed-bucket histogram of call durations (one per tier and operation).

    Recording is a bisect and two additions; it is only done around calls
    that leave the process (a tier that can fail), where it costs well under
    1% of the call. ``counts[i]`` is the number of calls that took at most
    ``LATENCY_BUCKETS_MS[i]`` (the last: longer); ``total_ms`` their sum.
    """

    __slots__ = ("counts", "total_ms")

    def __init__(self) -> None:
        self.counts = [0] * (len(LATENCY_BUCKETS_MS) + 1)
        self.total_ms = 0.0

    def record(self, ms: float) -> None:
        """Count one call that took ``ms`` milliseconds."""
        self.counts[bisect_left(LATENCY_BUCKETS_MS, ms)] += 1
        self.total_ms += ms


class TierStats:
    """Counters of one tier in this process.

    ``errors`` counts every failure; ``errors_by_kind`` splits it by the
    bounded ``TierUnavailable.kind`` (``oom``, ``readonly``, ``timeout``...),
    so a refused write is told from an outage without reading the log.
    ``refused`` is split the same way by ``refused_by_reason``
    (``REFUSAL_REASONS``). ``latency`` holds a ``Latency`` per operation of
    the tier (``get``, ``set``...), filled by the slot when metrics are on.
    """

    __slots__ = (*COUNTERS, "errors_by_kind", "refused_by_reason", "latency")

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Set every counter back to zero."""
        for name in COUNTERS:
            setattr(self, name, 0)
        self.errors_by_kind: dict[str, int] = {}
        self.refused_by_reason: dict[str, int] = {}
        self.latency: dict[str, Latency] = {}

    def refuse(self, reason: str, count: int = 1) -> None:
        """Count ``count`` values not stored, for ``reason`` (``REFUSAL_REASONS``)."""
        self.refused += count
        self.refused_by_reason[reason] = self.refused_by_reason.get(reason, 0) + count

    def timed(self, op: str, ms: float) -> None:
        """Record that ``op`` took ``ms`` milliseconds."""
        latency = self.latency.get(op)
        if latency is None:
            latency = self.latency[op] = Latency()
        latency.record(ms)

    def error(self, kind: str) -> None:
        """Count one failure of ``kind`` (off the hit path: failures only)."""
        self.errors += 1
        self.errors_by_kind[kind] = self.errors_by_kind.get(kind, 0) + 1

    def snapshot(self) -> dict[str, Any]:
        """Return the counters as a plain dict (``errors_by_kind`` a copy)."""
        info: dict[str, Any] = {name: getattr(self, name) for name in COUNTERS}
        info["errors_by_kind"] = dict(self.errors_by_kind)
        info["refused_by_reason"] = dict(self.refused_by_reason)
        return info


class CounterSet:
    """Counters kept as the ``int`` fields of a dataclass (bus, journal)."""

    def snapshot(self) -> dict[str, int]:
        """Return the counters as a plain dict."""
        return dict(self.__dict__)


@dataclass
class ChainStats(CounterSet):
    """Counters of a chain of tiers that belong to no one tier.

    ``collapsed``: callers of ``get_or_set`` that joined a computation
    already running in this process instead of starting their own (a
    stampede collapsed). ``stale_served``: values past their freshness
    served by ``cached(stale_if_error=...)`` because computing failed.
    """

    collapsed: int = 0
    stale_served: int = 0


_GROUP_NAME = re.compile(r"[A-Za-z0-9_.-]{1,40}")
#: Group names that stand for many prefixes, not one: ``"-"`` (keys with no
#: ":") and ``"other"`` (the groups past the limit). Nothing can be done to
#: "every key of" them, so the dashboard offers no action on them.
POOLED_GROUPS = frozenset({"-", "other"})


class GroupStats:
    """Hits and misses of ``get`` per key group: the text before the first ":".

    Bounded on purpose: a key is never a group name. A key with no ":" is
    in the group ``"-"``; a prefix that is long or has other characters than
    letters, digits, ``_``, ``.`` and ``-`` is ``"other"``, as is every
    group after the first ``limit`` this process has seen (first come, not
    the busiest: counting all of them to find the busiest is what must not
    happen). Off unless ``METRICS["GROUPS"]`` is set.
    """

    __slots__ = ("limit", "hits", "misses")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.hits: dict[str, int] = {}
        self.misses: dict[str, int] = {}

    def count(self, key: object, hit: bool) -> None:
        """Count one ``get`` of ``key`` (the caller's key, before make_key)."""
        counts = self.hits if hit else self.misses
        name = self.group_of(key)
        counts[name] = counts.get(name, 0) + 1

    def group_of(self, key: object) -> str:
        """Return the bounded group name of ``key``."""
        if type(key) is not str:
            return "other"
        prefix, colon, _ = key.partition(":")
        if not colon:
            return "-"
        if prefix in self.hits or prefix in self.misses:
            return prefix
        if not _GROUP_NAME.fullmatch(prefix):
            return "other"
        known = self.hits.keys() | self.misses.keys()
        if len(known - {"other", "-"}) >= self.limit:
            return "other"
        return prefix

    def reset(self) -> None:
        self.hits = {}
        self.misses = {}
