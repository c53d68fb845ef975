"""L1: the in-process memory tier.

Like Django's LocMemCache, the store lives in one object shared by every
backend instance of the same configuration (Django builds one backend per
thread), but:

* the budget is in bytes (``MAX_BYTES``) and/or entries (``MAX_ENTRIES``), and
  the eviction order comes from a pluggable policy (the policy decides, the
  tier acts);
* immutable builtins are stored as-is, so a hit on a ``str`` costs a dict
  lookup; everything else is stored serialized, so a caller mutating a value
  it got or set never changes the cached copy. Which types stay live is the
  cache's serializer's say (``Serializer.live_types``): those whose round
  trip through it is an equal object of the same type, so an L1 hit returns
  what an L2 hit would (with JSON, a tuple set comes back a list from L1 too);
* reads take no lock (a dict lookup is atomic under the GIL) and nothing is
  serialized or deserialized while the lock is held;
* an entry is trusted until ``min(expires_at, stored_at + max_staleness)``: when
  a wider tier sits below, an L1 copy is a cache of it and may go stale
  (``L1_MAX_STALENESS``; the backend calls ``bound_staleness``).
"""

from __future__ import annotations

import decimal
import sys
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from typing import Any

from ..envelope import MISSING_VALUE, Record
from ..exceptions import BadValue
from ..forksafe import renewed_lock
from ..policy import REGISTRY, BasePolicy, load_policy
from ..sentinels import MISSING
from ..serializers import Serializer
from .base import BaseTier, Scope
from .values import POSITIVE_INT_OR_NONE, option_problems

__all__ = ["MemoryTier"]

# Bytes an entry costs beyond its key's and payload's lengths, apart from the
# policy's own (``BasePolicy.entry_bytes``): the key's and payload's object
# headers, the dict slot (with its growth slack), the entry tuple, its floats
# and stamp. Measured as RSS growth over 1 000 000 small entries on CPython
# 3.11 (``bench/memory.py``), so that ``MAX_BYTES`` bounds what the process
# really grows by, within 10 %: it was 200, and 64 MiB of L1 took 110 MiB.
ENTRY_OVERHEAD = 330

# Entry tuple fields (a tuple is the cheapest record to read on the hit path).
# _LOADS: the ``loads`` of the serializer that wrote the stored payload (called
# as it is on the hit path), or False for a live value.
_VALUE, _LOADS, _DEADLINE, _EXPIRES, _STAMP, _SIZE = range(6)

DEFAULT_MAX_BYTES = 64 * 2**20
#: Invalidation stamps remembered (see ``invalidate``); the oldest go first.
FLOORS = 4096
DEFAULT_MAX_VALUE_BYTES = 2**20
_RULES = {"MAX_BYTES": POSITIVE_INT_OR_NONE, "MAX_ENTRIES": POSITIVE_INT_OR_NONE}


class MemoryTier(BaseTier):
    """Bounded in-process store with TTL and a pluggable eviction policy.

    OPTIONS: ``MAX_BYTES`` (default 64 MiB), ``MAX_ENTRIES`` (default none),
    ``MAX_VALUE_BYTES`` (default 1 MiB: larger values skip L1), ``POLICY``
    (default ``"lru"``; a registry name or a dotted path to a ``BasePolicy``),
    ``POLICY_OPTIONS`` (keyword arguments for the policy).
    """

    scope = Scope.PROCESS
    fallible = False
    known_options = BaseTier.known_options | {
        "MAX_BYTES",
        "MAX_ENTRIES",
        "POLICY",
        "POLICY_OPTIONS",
    }
    default_max_value_bytes = DEFAULT_MAX_VALUE_BYTES

    @classmethod
    def spec_problems(
        cls, location: Any, options: Mapping[str, Any], *, name: str
    ) -> list[BadValue]:
        problems = super().spec_problems(location, options, name=name)
        problems += option_problems(name, options, _RULES)
        policy_options = options.get("POLICY_OPTIONS")
        if policy_options is not None and not isinstance(policy_options, Mapping):
            problems.append(
                BadValue(
                    name, "OPTIONS['POLICY_OPTIONS']", policy_options, "a dict or None"
                )
            )
        else:
            try:
                _policy(options)
            except (ValueError, TypeError) as exc:
                problems.append(
                    BadValue(
                        name,
                        "OPTIONS['POLICY']",
                        options.get("POLICY", "lru"),
                        f"one of {sorted(REGISTRY)} or the dotted path of a "
                        f"BasePolicy subclass taking POLICY_OPTIONS ({exc})",
                    )
                )
        return problems

    def configure(self) -> None:
        options = self.options  # values checked by spec_problems
        self.max_bytes = options.get("MAX_BYTES", DEFAULT_MAX_BYTES)
        self.max_entries = options.get("MAX_ENTRIES")
        self.policy = _policy(options)
        self._data: dict[str, tuple] = {}
        # Stamps of recent invalidations: a promotion that read the older value
        # before the message arrived must not install it after (bounded).
        self._floors: OrderedDict[str, int] = OrderedDict()
        self._lock = renewed_lock(self)
        self._bytes = 0
        self._on_hit = self.policy.on_hit
        self._entry_overhead = ENTRY_OVERHEAD + self.policy.entry_bytes
        #: Values of these exact types are kept live (``Serializer.live_types``).
        self._live_types = self.serializer.live_types
        #: The serializers whose payloads an entry may hold (``_writer``).
        self._writers = tuple(s for s in self.serializer.readers if s is not None)

    def bound_staleness(self, seconds: float | None) -> bool:
        self.max_staleness = seconds
        return True

    # -- reads --------------------------------------------------------------

    def get_value(self, key: str, default: Any) -> Any:
        entry = self._data.get(key)
        if entry is None:
            self.stats.misses += 1
            return default
        deadline = entry[2]  # _DEADLINE
        if deadline is not None and deadline <= self.clock():
            self._expire(key, entry)
            self.stats.misses += 1
            return default
        try:  # noqa: SIM105  (contextlib.suppress costs ~0.3 us here)
            self._on_hit(key)
        except KeyError:  # evicted by another thread since the lookup
            pass
        self.stats.hits += 1
        if entry[1]:  # _LOADS; literal indexes: this is the hottest path
            return entry[1](entry[0])
        return entry[0]

    def get(self, key: str) -> Record | Any:
        entry = self._live(key)
        if entry is None:
            return MISSING
        try:  # noqa: SIM105
            self._on_hit(key)
        except KeyError:
            pass
        loads = entry[_LOADS]
        if loads:
            serializer = self._writer(loads)
            return Record(
                MISSING_VALUE, entry[_VALUE], entry[_EXPIRES], entry[_STAMP], serializer
            )
        return Record(
            entry[_VALUE], None, entry[_EXPIRES], entry[_STAMP], self.serializer
        )

    def has_key(self, key: str) -> bool:
        return self._live(key) is not None

    def usage(self) -> dict[str, int]:
        return {"bytes": self._bytes, "entries": len(self._data)}

    # -- writes -------------------------------------------------------------

    def set(self, key: str, record: Record) -> None:
        entry = self._entry(key, record)
        with self._lock:
            self._store(key, entry, respect_newer=True)

    def set_many(self, records: Mapping[str, Record]) -> None:
        entries = [(key, self._entry(key, record)) for key, record in records.items()]
        with self._lock:
            for key, entry in entries:
                self._store(key, entry, respect_newer=True)

    def add(self, key: str, record: Record) -> bool:
        entry = self._entry(key, record)
        now = self.clock()
        with self._lock:
            current = self._data.get(key)
            if current is not None and not _expired(current, now):
                return False
            return self._store(key, entry, respect_newer=False)

    def delete(self, key: str) -> bool:
        now = self.clock()
        with self._lock:
            entry = self._remove(key)
        if entry is None:
            return False
        return not _expired(entry, now)

    def delete_many(self, keys: Iterable[str]) -> None:
        with self._lock:
            for key in keys:
                self._remove(key)

    def touch(self, key: str, expires_at: float | None) -> bool:
        now = self.clock()
        with self._lock:
            entry = self._data.get(key)
            if entry is None or _expired(entry, now):
                return False
            if expires_at is not None and expires_at <= now:
                self._remove(key)
                return True
            self._data[key] = (
                entry[_VALUE],
                entry[_LOADS],
                self._deadline(expires_at, now),
                expires_at,
                entry[_STAMP],
                entry[_SIZE],
            )
            return True

    def incr(self, key: str, delta: int) -> int:
        now = self.clock()
        with self._lock:
            entry = self._data.get(key)
            if entry is None or _expired(entry, now):
                raise ValueError(f"Key '{key}' not found")
            value = entry[_VALUE]
            if entry[_LOADS] or not isinstance(value, (int, float, decimal.Decimal)):
                raise TypeError(f"Key '{key}' does not hold a number")
            new_value = value + delta
            self._data[key] = (new_value,) + entry[1:]
            return new_value

    def invalidate(self, key: str, stamp: int) -> bool:
        with self._lock:
            floors = self._floors
            if floors.get(key, -1) < stamp:
                floors[key] = stamp
                floors.move_to_end(key)
                if len(floors) > FLOORS:
                    floors.popitem(last=False)
            entry = self._data.get(key)
            if entry is None or entry[_STAMP] >= stamp:
                return False
            self._remove(key)
            return True

    def invalidate_all(self, before: float | None = None) -> None:
        with self._lock:
            for key in list(self._data):
                self._remove(key)
            self._floors.clear()

    def clear(self, namespace: str) -> int:
        with self._lock:
            doomed = [key for key in self._data if key.startswith(namespace)]
            for key in doomed:
                self._remove(key)
        return len(doomed)

    # -- introspection ---------------------------------------------------------

    @property
    def size_bytes(self) -> int:
        """Return the bytes accounted to live and not yet reaped entries."""
        return self._bytes

    def __len__(self) -> int:
        return len(self._data)

    def keys(self, namespace: str) -> list[str]:
        return [key for key in list(self._data) if key.startswith(namespace)]

    def check(self) -> list[str]:
        """Return broken invariants (empty when healthy); tests call it."""
        with self._lock:
            problems = []
            total = sum(entry[_SIZE] for entry in self._data.values())
            if total != self._bytes:
                problems.append(f"{self.name}: bytes {self._bytes} != sum {total}")
            if self.max_bytes is not None and self._bytes > self.max_bytes:
                problems.append(f"{self.name}: {self._bytes} B over {self.max_bytes}")
            if self.max_entries is not None and len(self._data) > self.max_entries:
                problems.append(f"{self.name}: {len(self._data)} entries over limit")
            if set(self.policy) != set(self._data):
                problems.append(f"{self.name}: policy and store disagree on keys")
        return problems

    def describe(self) -> dict[str, Any]:
        info = super().describe()
        info.update(
            policy=self.policy.name,
            entries=len(self._data),
            bytes=self._bytes,
            max_bytes=self.max_bytes,
            max_entries=self.max_entries,
        )
        return info

    # -- internals -------------------------------------------------------------

    def _entry(self, key: str, record: Record) -> tuple:
        """Build the stored tuple outside the lock (serializing happens before).

        A payload keeps the serializer that wrote it (a pickle cache may hold
        a JSON record read from L2); one serialized here uses this cache's.
        """
        value = record.value
        if value is not MISSING_VALUE and type(value) in self._live_types:
            stored, loads, size = value, False, sys.getsizeof(value)
        else:
            if record.serializer is None:
                record.serializer = self.serializer
            stored = record.payload
            loads = record.serializer.loads  # type: ignore[union-attr]
            if stored is None:  # a raw int record without a live value
                raise TypeError("record carries neither a value nor a payload")
            size = len(stored)
        size += len(key) + self._entry_overhead
        expires_at = record.expires_at
        return (
            stored,
            loads,
            self._deadline(expires_at, self.clock()),
            expires_at,
            record.stamp,
            size,
        )

    def _writer(self, loads: Any) -> Serializer:
        """Return the serializer whose ``loads`` an entry keeps: this cache's,
        or one it reads (``Serializer.readers``), compared by identity."""
        for serializer in self._writers:
            if serializer.loads is loads:
                return serializer
        raise LookupError("an L1 entry was written by an unknown serializer")

    def _deadline(self, expires_at: float | None, now: float) -> float | None:
        staleness = self.max_staleness
        if staleness is None:
            return expires_at
        trusted = now + staleness
        return trusted if expires_at is None or trusted < expires_at else expires_at

    def _store(self, key: str, entry: tuple, *, respect_newer: bool) -> bool:
        """Insert under the lock; evict as the policy says. Return stored or not."""
        data = self._data
        current = data.get(key)
        if respect_newer and (
            (
                current is not None
                and current[_STAMP] > entry[_STAMP]
                and not _expired(current, self.clock())
            )
            or self._floors.get(key, -1) > entry[_STAMP]
        ):
            # A promotion racing a newer write, or a value another process has
            # replaced since (its invalidation arrived first): nothing older
            # than what is known is installed.
            return False
        if current is not None:
            self._remove(key)
        size = entry[_SIZE]
        if self.max_bytes is not None and size > self.max_bytes:
            self.stats.refuse("too_big")
            return False
        if self._full(size):
            if not self.policy.admit(key, size):
                self.stats.refuse("admission")
                return False
            self._evict_for(size)
        data[key] = entry
        self._bytes += size
        self.policy.on_insert(key, size, entry[_EXPIRES])
        return True

    def _evict_for(self, size: int) -> None:
        """Evict the policy's victims until ``size`` more bytes fit, or none is left."""
        while self._full(size):
            victim = self.policy.victim()
            if victim is None:
                break
            entry = self._data.pop(victim, None)
            if entry is not None:
                self._bytes -= entry[_SIZE]
                self.stats.evictions += 1
                self.policy.on_evict(victim)  # not on_remove: ghosts remember it
            else:
                self.policy.on_remove(victim)

    def _full(self, incoming: int) -> bool:
        if self.max_bytes is not None and self._bytes + incoming > self.max_bytes:
            return True
        return self.max_entries is not None and len(self._data) >= self.max_entries

    def _remove(self, key: str) -> tuple | None:
        entry = self._data.pop(key, None)
        if entry is not None:
            self._bytes -= entry[_SIZE]
            self.policy.on_remove(key)
        return entry

    def _live(self, key: str) -> tuple | None:
        entry = self._data.get(key)
        if entry is None:
            return None
        if _expired(entry, self.clock()):
            self._expire(key, entry)
            return None
        return entry

    def _expire(self, key: str, entry: tuple) -> None:
        with self._lock:
            if self._data.get(key) is entry:
                self._remove(key)
                self.stats.expirations += 1


def _expired(entry: tuple, now: float) -> bool:
    deadline = entry[_DEADLINE]
    return deadline is not None and deadline <= now


def _policy(options: Mapping[str, Any]) -> BasePolicy:
    return load_policy(
        options.get("POLICY", "lru"), dict(options.get("POLICY_OPTIONS") or {})
    )
