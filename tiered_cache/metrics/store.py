"""Where the processes of a deployment add up their counters: per-minute buckets.

Each flush adds one process's deltas to the bucket of the current minute and
to a running total (``totals``, what Prometheus reads: it only grows, so a
scrape sees counters, never a sum that shrinks as old minutes expire), and
writes the process's gauges and last flush time into the bucket as they are
(``g|<process>|<field>``, ``p|<process>``). Buckets are kept ``RETENTION``.

The store is the cache's widest shared tier, read and written *beside* the
tier, not through it: metric traffic is never counted as cache traffic, never
opens a breaker and is never announced on the bus.

* ``RedisStore`` (L2): one hash per minute, ``HINCRBY``/``HSET`` of one flush
  sent in one pipeline. Keys are ``tiered_cache:metrics:{<alias>:<namespace>}:
  <minute>``: outside every cache's namespace (a ``clear()``, of this cache or
  of another store, never removes the history) and, with the hash tag, on one
  Cluster slot.
* ``DiskStore`` (L3 only): a diskcache ``Cache`` of its own in the L3 folder
  (``<folder>/metrics``), each flush one SQLite transaction, so the
  processes of one machine add up. There is no cross-machine view without L2.
* ``LocalStore``: no shared tier (L1 alone): this process only.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import Any

from ..tiers.base import BaseTier, Scope

__all__ = [
    "RETENTION",
    "DiskStore",
    "LocalStore",
    "RedisStore",
    "Store",
    "shared_tier",
    "store_for",
]

#: How long a minute bucket is kept (seconds): 24 hours, and two minutes of slack.
RETENTION = 24 * 3600
_EXPIRE = RETENTION + 120


class Store:
    """Buckets and running totals of one cache alias (see the module docstring)."""

    #: Where the numbers come from, for the summary: "l2", "l3" or "local".
    kind = "local"

    def add(
        self,
        minute: int,
        deltas: Mapping[str, int],
        gauges: Mapping[str, int],
        process: str,
        now: float,
    ) -> None:
        """Add ``deltas`` to ``minute``'s bucket and the totals; note the gauges."""
        raise NotImplementedError

    def buckets(self, minutes: Iterable[int]) -> dict[int, dict[str, int]]:
        """Return ``{minute: fields}`` of the buckets that exist among ``minutes``."""
        raise NotImplementedError

    def totals(self) -> dict[str, int]:
        """Return the running totals (every flush since the store began)."""
        raise NotImplementedError


def _stamped(gauges: Mapping[str, int], process: str, now: float) -> dict[str, int]:
    fields = {f"g|{process}|{name}": value for name, value in gauges.items()}
    fields[f"p|{process}"] = int(now)
    return fields


class LocalStore(Store):
    """This process's memory: the view of a cache with no shared tier."""

    def __init__(self) -> None:
        self._buckets: dict[int, dict[str, int]] = {}
        self._totals: dict[str, int] = {}

    def add(self, minute, deltas, gauges, process, now):  # type: ignore[no-untyped-def]
        bucket = self._buckets.setdefault(minute, {})
        for name, value in deltas.items():
            bucket[name] = bucket.get(name, 0) + value
            self._totals[name] = self._totals.get(name, 0) + value
        bucket.update(_stamped(gauges, process, now))
        oldest = minute - RETENTION // 60
        for old in [m for m in self._buckets if m < oldest]:
            del self._buckets[old]

    def buckets(self, minutes):  # type: ignore[no-untyped-def]
        return {m: dict(self._buckets[m]) for m in minutes if m in self._buckets}

    def totals(self) -> dict[str, int]:
        return dict(self._totals)


class RedisStore(Store):
    """Hashes in the cache's Redis tier (see the module docstring)."""

    kind = "l2"

    def __init__(self, tier: BaseTier, alias: str, namespace: str) -> None:
        self.tier = tier
        self.base = f"tiered_cache:metrics:{{{alias}:{namespace}}}"

    def _client(self) -> Any:
        # The tier's own connection pool, outside its counted call path.
        return self.tier._writer(self.base)  # type: ignore[attr-defined]

    def add(self, minute, deltas, gauges, process, now):  # type: ignore[no-untyped-def]
        bucket, total = f"{self.base}:{minute}", f"{self.base}:total"
        pipe = self._client().pipeline(transaction=False)
        for name, value in deltas.items():
            pipe.hincrby(bucket, name, value)
            pipe.hincrby(total, name, value)
        pipe.hset(bucket, mapping=_stamped(gauges, process, now))
        pipe.expire(bucket, _EXPIRE)
        pipe.execute()

    def buckets(self, minutes):  # type: ignore[no-untyped-def]
        minutes = list(minutes)

        def read() -> list[Any]:
            pipe = self._client().pipeline(transaction=False)
            for minute in minutes:
                pipe.hgetall(f"{self.base}:{minute}")
            return pipe.execute()

        return {
            minute: _decoded(fields)
            for minute, fields in zip(minutes, _read_twice(read), strict=True)
            if fields
        }

    def totals(self) -> dict[str, int]:
        total = f"{self.base}:total"
        return _decoded(_read_twice(lambda: self._client().hgetall(total)))


def _read_twice(read: Any) -> Any:
    """Return ``read()``, tried again once after a timeout or lost connection.

    The store shares the tier's pool and its short socket timeout (made for
    cache calls); a reader (command, scrape, dashboard) can afford a second
    try. Reads only: a write that timed out may have been applied, and
    adding the same deltas twice would count them twice.
    """
    import redis

    try:
        return read()
    except (redis.TimeoutError, redis.ConnectionError):
        return read()


def _decoded(fields: Mapping[bytes | str, bytes | str]) -> dict[str, int]:
    out = {}
    for name, value in fields.items():
        key = name.decode() if isinstance(name, bytes) else name
        out[key] = int(value)
    return out


class DiskStore(Store):
    """Rows of a diskcache ``Cache`` in the L3 folder (see the module docstring)."""

    kind = "l3"

    def __init__(self, directory: str, alias: str, namespace: str) -> None:
        import diskcache

        self.cache = diskcache.Cache(os.path.join(directory, "metrics"))
        self.base = f"{alias}:{namespace}"

    def _merge(self, key: str, fields: Mapping[str, int], *, add: bool) -> None:
        current = self.cache.get(key) or {}
        for name, value in fields.items():
            current[name] = current.get(name, 0) + value if add else value
        self.cache.set(key, current, expire=None if key.endswith(":total") else _EXPIRE)

    def add(self, minute, deltas, gauges, process, now):  # type: ignore[no-untyped-def]
        bucket, total = f"{self.base}:{minute}", f"{self.base}:total"
        with self.cache.transact(retry=True):
            self._merge(bucket, deltas, add=True)
            self._merge(bucket, _stamped(gauges, process, now), add=False)
            self._merge(total, deltas, add=True)

    def buckets(self, minutes):  # type: ignore[no-untyped-def]
        found = {}
        for minute in minutes:
            fields = self.cache.get(f"{self.base}:{minute}")
            if fields:
                found[minute] = dict(fields)
        return found

    def totals(self) -> dict[str, int]:
        return dict(self.cache.get(f"{self.base}:total") or {})


def shared_tier(tiers: Iterable[BaseTier]) -> tuple[str, BaseTier | None]:
    """Return where a cache over ``tiers`` keeps what its processes share.

    ``("l2", tier)`` for a Redis tier, else ``("l3", tier)`` for a disk tier,
    else ``("local", None)``. The access history (``tiered_cache.history``)
    keeps its log in the same place.
    """
    tiers = list(tiers)
    for tier in tiers:
        if tier.scope == Scope.DEPLOYMENT and hasattr(tier, "_writer"):
            return "l2", tier
    for tier in tiers:
        if tier.scope == Scope.MACHINE and hasattr(tier, "directory"):
            return "l3", tier
    return "local", None


def store_for(alias: str, namespace: str, tiers: Iterable[BaseTier]) -> Store:
    """Return the store of a cache over ``tiers``: L2, else L3, else this process."""
    kind, tier = shared_tier(tiers)
    if kind == "l2":
        return RedisStore(tier, alias, namespace)  # type: ignore[arg-type]
    if kind == "l3":
        return DiskStore(tier.directory, alias, namespace)  # type: ignore[union-attr]
    return LocalStore()
