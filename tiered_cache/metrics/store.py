"""Where the processes of a deployment add up their counters: per-minute buckets.

Each flush adds one process's deltas to the bucket of the current minute and
to a running total (``totals``, what Prometheus reads: it only grows, so a
scrape sees counters, never a sum that shrinks as old minutes expire), and
writes the process's gauges and last flush time into the bucket as they are
(``g|<process>|<field>``, ``p|<process>``). Buckets are kept ``RETENTION``.

The store is the cache's widest shared tier, read and written *beside* the
tier, not through it: metric traffic is never counted as cache traffic, never
opens a breaker and is never announced on the bus.

* ``RedisStore`` (L2): one hash per minute; a flush is one Lua script, so it
  is applied whole or not at all, and once: each batch carries its sender's
  sequence number and the script skips a batch already applied (a retry of
  a flush whose reply was lost adds nothing). Keys are
  ``tiered_cache:metrics:{<alias>:<namespace>}:<minute>``: outside every
  cache's namespace (a ``clear()``, of this cache or of another store, never
  removes the history) and, with the hash tag, on one Cluster slot.
* ``DiskStore`` (L3 only): a diskcache ``Cache`` of its own in the L3 folder
  (``<folder>/metrics``), each flush one SQLite transaction, so the
  processes of one machine add up. There is no cross-machine view without L2.
* ``LocalStore``: no shared tier (L1 alone): this process only.

Key groups are first come *deployment-wide*: each process counts its own
first ``METRICS["GROUPS"]`` groups, so the processes of a deployment (and
every restart) may bring different ones. The store keeps the set of groups
it has taken (``...:groups``) and adds a delta of any group beyond the
first ``GROUPS`` to ``other``, so the totals, and the series a scrape
returns, stay bounded however many processes come and go.

The store is shared, so anyone may have written into it: readers skip a
field whose value is not an integer and a key that is not a hash (with a
warning), and a flush replaces a value it cannot add to (docs/faults.rst
#41). A key of the wrong type refuses the flush whole, with an error naming
the key; the batch waits for the next flush.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable, Mapping
from typing import Any

from ..resilience import LogThrottle
from ..tiers.base import BaseTier, Scope

__all__ = [
    "MAX_FIELDS",
    "RETENTION",
    "Batch",
    "DiskStore",
    "LocalStore",
    "RedisStore",
    "Store",
    "readable",
    "shared_tier",
    "store_for",
]

logger = logging.getLogger(__name__)
_throttle = LogThrottle()

#: The most fields a reader takes from one Redis hash. A flush writes a bounded
#: number (tiers x counters, latency buckets, groups, each process's gauges):
#: a hash far beyond that is someone else's, and is skipped rather than read.
MAX_FIELDS = 100_000
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
        batch: Batch | None = None,
    ) -> None:
        """Add ``deltas`` to ``minute``'s bucket and the totals; note the gauges.

        ``batch`` names this flush (its sender and sequence number): a store
        whose write can have an unknown outcome (Redis) applies a batch once
        however often it is sent again.
        """
        raise NotImplementedError

    def buckets(self, minutes: Iterable[int]) -> dict[int, dict[str, int]]:
        """Return ``{minute: fields}`` of the buckets that exist among ``minutes``."""
        raise NotImplementedError

    def totals(self) -> dict[str, int]:
        """Return the running totals (every flush since the store began)."""
        raise NotImplementedError

    def now(self) -> float:
        """Return the time of the store's clock, the one its minutes follow."""
        return time.time()


class Batch:
    """The identity of one flush: who sent it (one process's life) and its number.

    ``sender`` is unique to a process's life (a restarted process reusing a
    pid is another sender); ``seq`` grows with every new batch it sends.
    """

    __slots__ = ("sender", "seq")

    def __init__(self, sender: str, seq: int) -> None:
        self.sender = sender
        self.seq = seq


def readable(fields: Any, where: str) -> dict[str, int]:
    """Return the integer fields of ``fields`` (a hash read back); skip the rest.

    The store is shared: a field someone else wrote with a value that is not
    an integer, or a stored object that is not a mapping at all, is skipped
    with a warning (one line per ``where`` every 10 s) instead of failing
    every reader.
    """
    if not isinstance(fields, Mapping):
        _warn(where, f"holds {type(fields).__name__}, not a hash of counters")
        return {}
    out: dict[str, int] = {}
    skipped = []
    for name, value in fields.items():
        key = name.decode(errors="replace") if isinstance(name, bytes) else str(name)
        try:
            if isinstance(value, float) or value is None:
                raise ValueError
            out[key] = int(value)
        except (TypeError, ValueError):
            skipped.append(key)
    if skipped:
        _warn(where, f"fields that are not integers skipped: {sorted(skipped)[:5]}")
    return out


def _warn(where: str, what: str) -> None:
    if _throttle.allow(where):
        logger.warning("cache metrics: store key %s %s", where, what)


def _stamped(gauges: Mapping[str, int], process: str, now: float) -> dict[str, int]:
    fields = {f"g|{process}|{name}": value for name, value in gauges.items()}
    fields[f"p|{process}"] = int(now)
    return fields


class LocalStore(Store):
    """This process's memory: the view of a cache with no shared tier."""

    def __init__(self) -> None:
        self._buckets: dict[int, dict[str, int]] = {}
        self._totals: dict[str, int] = {}

    def add(self, minute, deltas, gauges, process, now, batch=None):  # type: ignore[no-untyped-def]
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


#: One flush into Redis (``RedisStore.add``): whole, once, or refused whole.
#: KEYS: the totals, the sender's last sequence number, the groups taken.
#: ARGV: the sequence number, the buckets' lifetime, the number of deltas, the
#: most groups, the buckets' key without the minute, the process, then delta
#: name/value pairs, then gauge name/value pairs. The minute is the server's
#: (``TIME``), not the sender's: a process whose clock is off still counts in
#: the minutes readers look at. The bucket's key is made here, on the slot
#: of the declared keys (one hash tag).
_ADD = """
local now = tonumber(redis.call('TIME')[1])
local bucket = ARGV[5] .. ':' .. math.floor(now / 60)
local keys = {bucket, KEYS[1], KEYS[2], KEYS[3]}
local wanted_types = {'hash', 'hash', 'string', 'set'}
for i = 1, 4 do
  local kind = redis.call('TYPE', keys[i])['ok']
  local wanted = wanted_types[i]
  if kind ~= 'none' and kind ~= wanted then
    return redis.error_reply('metrics store key ' .. keys[i] .. ' holds a ' ..
      kind .. ', not a ' .. wanted .. ': delete it')
  end
end
local last = tonumber(redis.call('GET', keys[3]) or '')
if last ~= nil and last >= tonumber(ARGV[1]) then
  return 0
end
redis.call('SET', keys[3], ARGV[1], 'EX', ARGV[2])
local limit = tonumber(ARGV[4])
local stop = 6 + 2 * tonumber(ARGV[3])
for i = 7, stop, 2 do
  local name = ARGV[i]
  local group, result = string.match(name, '^grp|(.*)|([^|]*)$')
  if group and group ~= 'other' and group ~= '-'
      and redis.call('SISMEMBER', keys[4], group) == 0 then
    if redis.call('SCARD', keys[4]) < limit then
      redis.call('SADD', keys[4], group)
    else
      name = 'grp|other|' .. result
    end
  end
  for k = 1, 2 do
    local added = redis.pcall('HINCRBY', keys[k], name, ARGV[i + 1])
    if type(added) == 'table' and added['err'] then
      redis.call('HSET', keys[k], name, ARGV[i + 1])
    end
  end
end
for i = stop + 1, #ARGV, 2 do
  redis.call('HSET', keys[1], 'g|' .. ARGV[6] .. '|' .. ARGV[i], ARGV[i + 1])
end
redis.call('HSET', keys[1], 'p|' .. ARGV[6], now)
redis.call('EXPIRE', keys[1], ARGV[2])
return 1
"""


class RedisStore(Store):
    """Hashes in the cache's Redis tier (see the module docstring).

    A flush is one script (``_ADD``) rather than a pipeline: a pipeline is
    not atomic, so a command refused halfway (OOM, a field that is not a
    number) left the totals added to and the bucket not, and the retry added
    to the totals again; and a pipeline whose reply was lost (a timeout) was
    counted twice by its retry. The script checks the key types before it
    writes, replaces a value ``HINCRBY`` refuses, and applies a batch at
    most once per sender and sequence number. Under ``maxmemory`` the first
    write is refused before anything is written (Redis stops checking memory
    once a script has written). Buckets follow the server's clock (``TIME``),
    and so do the readers (``now``): one clock for the deployment, whatever
    the clocks of its machines say.
    """

    kind = "l2"

    def __init__(
        self, tier: BaseTier, alias: str, namespace: str, groups: int = 0
    ) -> None:
        self.tier = tier
        self.base = f"tiered_cache:metrics:{{{alias}:{namespace}}}"
        self.groups = groups

    def _client(self) -> Any:
        # The tier's own connection pool, outside its counted call path.
        return self.tier._writer(self.base)  # type: ignore[attr-defined]

    def add(self, minute, deltas, gauges, process, now, batch=None):  # type: ignore[no-untyped-def]
        if batch is None:  # a one-off write (tests): a sequence of its own
            batch = Batch(f"{process}:{now!r}", 1)
        keys = [
            f"{self.base}:total",
            f"{self.base}:sent:{batch.sender}",
            f"{self.base}:groups",
        ]
        args: list[Any] = [batch.seq, _EXPIRE, len(deltas), self.groups]
        args += [self.base, process]
        for name, value in [*deltas.items(), *gauges.items()]:
            args += [name, value]
        client = self._client()
        client.register_script(_ADD)(keys=keys, args=args, client=client)

    def now(self) -> float:
        seconds, micros = _read_twice(lambda: self._client().time())
        return seconds + micros / 1e6

    def buckets(self, minutes):  # type: ignore[no-untyped-def]
        keys = {f"{self.base}:{minute}": minute for minute in minutes}
        return {keys[key]: fields for key, fields in self._hashes(list(keys)).items()}

    def totals(self) -> dict[str, int]:
        total = f"{self.base}:total"
        return self._hashes([total]).get(total, {})

    def _hashes(self, keys: list[str]) -> dict[str, dict[str, int]]:
        """Return the readable fields of the hashes at ``keys`` that exist.

        Each hash's length is read first: a hash of more than ``MAX_FIELDS``
        fields (someone else's: a flush writes a bounded number) is skipped
        with a warning rather than read into memory. A key of another type
        is skipped too (``_raise_unless_wrong_type``).
        """

        def read() -> dict[str, Any]:
            client = self._client()
            pipe = client.pipeline(transaction=False)
            for key in keys:
                pipe.hlen(key)
            wanted = []
            for key, size in zip(keys, pipe.execute(raise_on_error=False), strict=True):
                if isinstance(size, Exception):
                    _raise_unless_wrong_type(size, key)
                elif size > MAX_FIELDS:
                    _warn(key, f"has {size} fields, more than {MAX_FIELDS}: skipped")
                elif size:
                    wanted.append(key)
            pipe = client.pipeline(transaction=False)
            for key in wanted:
                pipe.hgetall(key)
            return dict(zip(wanted, pipe.execute(raise_on_error=False), strict=True))

        found = {}
        for key, fields in _read_twice(read).items():
            if isinstance(fields, Exception):
                _raise_unless_wrong_type(fields, key)
            elif fields:
                found[key] = readable(fields, key)
        return found


def _raise_unless_wrong_type(exc: Exception, where: str) -> None:
    """Warn of a key that is not a hash (someone else's); raise anything else."""
    if "WRONGTYPE" not in str(exc):
        raise exc
    _warn(where, "is not a hash: skipped (delete it)")


def _read_twice(read: Any) -> Any:
    """Return ``read()``, tried again once after a timeout or lost connection.

    The store shares the tier's pool and its short socket timeout (made for
    cache calls); a reader (command, scrape, dashboard) can afford a second
    try. Reads only: writes are made safe to send again by their batch.
    """
    import redis

    try:
        return read()
    except (redis.TimeoutError, redis.ConnectionError):
        return read()


class DiskStore(Store):
    """Rows of a diskcache ``Cache`` in the L3 folder (see the module docstring)."""

    kind = "l3"

    def __init__(
        self, directory: str, alias: str, namespace: str, groups: int = 0
    ) -> None:
        import diskcache

        self.groups = groups
        self.directory = os.path.join(directory, "metrics")
        self.cache = diskcache.Cache(self.directory)
        self.base = f"{alias}:{namespace}"

    def _merge(self, key: str, fields: Mapping[str, int], *, add: bool) -> None:
        current = readable(self.cache.get(key) or {}, f"{self.directory}:{key}")
        for name, value in fields.items():
            current[name] = current.get(name, 0) + value if add else value
        self.cache.set(key, current, expire=None if key.endswith(":total") else _EXPIRE)

    def add(self, minute, deltas, gauges, process, now, batch=None):  # type: ignore[no-untyped-def]
        bucket, total = f"{self.base}:{minute}", f"{self.base}:total"
        with self.cache.transact(retry=True):
            deltas = self._fold_groups(deltas)
            self._merge(bucket, deltas, add=True)
            self._merge(bucket, _stamped(gauges, process, now), add=False)
            self._merge(total, deltas, add=True)

    def _fold_groups(self, deltas: Mapping[str, int]) -> dict[str, int]:
        """Add the deltas of groups beyond the first ``groups`` to ``other``."""
        key = f"{self.base}:groups"
        taken = self.cache.get(key)
        taken = set(taken) if isinstance(taken, (set, frozenset)) else set()
        out: dict[str, int] = {}
        for name, value in deltas.items():
            if name.startswith("grp|"):
                group, _, result = name[4:].rpartition("|")
                if group not in taken and group not in ("other", "-"):
                    if len(taken) < self.groups:
                        taken.add(group)
                    else:
                        name = f"grp|other|{result}"
            out[name] = out.get(name, 0) + value
        self.cache.set(key, taken)
        return out

    def buckets(self, minutes):  # type: ignore[no-untyped-def]
        found = {}
        for minute in minutes:
            key = f"{self.base}:{minute}"
            fields = readable(self.cache.get(key) or {}, f"{self.directory}:{key}")
            if fields:
                found[minute] = fields
        return found

    def totals(self) -> dict[str, int]:
        key = f"{self.base}:total"
        return readable(self.cache.get(key) or {}, f"{self.directory}:{key}")


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


def store_for(
    alias: str, namespace: str, tiers: Iterable[BaseTier], groups: int = 0
) -> Store:
    """Return the store of a cache over ``tiers``: L2, else L3, else this process.

    ``groups``: how many key groups the deployment counts by name
    (``METRICS["GROUPS"]``).
    """
    kind, tier = shared_tier(tiers)
    if kind == "l2":
        return RedisStore(tier, alias, namespace, groups)  # type: ignore[arg-type]
    if kind == "l3":
        directory = tier.directory  # type: ignore[union-attr]
        return DiskStore(directory, alias, namespace, groups)
    return LocalStore()
