"""Where the sampled history of a deployment is kept: L2, else L3.

Beside the tier, not through it (as the metrics store: ``metrics.store``):
history traffic is never counted as cache traffic, never announced on the
bus, and outside every cache's namespace, so a ``clear()`` keeps it.

* the *log*: the last ``MAX_RECORDS`` accesses of every process, a ring
  (Redis: a list trimmed on each flush; L3: a ``diskcache.Deque`` with
  ``maxlen``), each ``hash,time,size,hit,tier``;
* the *names*: the sampled keys by name, which warming needs (a hash cannot
  be re-run), sent again by each flush that has reads of them: Redis, a
  sorted set by last flush time trimmed to ``MAX_KEYS``; L3, a ``Deque`` of
  ``(hash, key)`` pairs with ``maxlen`` (a key sent by several flushes takes
  several places);
* *fields*: small values under a name: the warm set, the checkpoint of an
  interrupted ``warm_cache``, each process's L1 miss-ratio curve.

``HistoryStore`` itself (no shared tier) keeps all of it in this process.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..metrics.store import shared_tier
from ..tiers.base import BaseTier
from .options import HistoryOptions
from .recorder import Access
from .sampling import MODULUS

__all__ = ["History", "HistoryStore", "history_store_for"]


@dataclass
class History:
    """What the store holds: accesses (oldest first) and sampled keys' names.

    Two samples share the log: every read of a key whose hash is under
    ``sample_rate`` of the hash space, and one read in ``read_every`` of the
    other keys; ``weight(hash)`` says how many reads one record stands for.
    """

    accesses: list[Access] = field(default_factory=list)
    names: dict[int, str] = field(default_factory=dict)
    sample_rate: float = 1.0
    read_every: int = 0

    def weight(self, hashed: int) -> int:
        """Return how many reads a record of the key hashed ``hashed`` stands for."""
        if hashed < int(self.sample_rate * MODULUS) or not self.read_every:
            return 1
        return self.read_every


def _pack(access: Access) -> str:
    hashed, at, size, hit, tier = access
    return f"{hashed},{at:.3f},{size},{int(hit)},{tier}"


def _unpack(text: str | bytes) -> Access | None:
    if isinstance(text, bytes):
        text = text.decode()
    try:
        hashed, at, size, hit, tier = text.split(",", 4)
        return int(hashed), float(at), int(size), hit == "1", tier
    except ValueError:  # not ours, or cut: skipped
        return None


class HistoryStore:
    """The log, names and fields of one cache alias (see the module docstring)."""

    kind = "local"

    def __init__(self, options: HistoryOptions) -> None:
        self.options = options
        self._log: deque[str] = deque(maxlen=options.max_records)
        self._names: dict[int, str] = {}
        self._fields: dict[str, str] = {}

    def append(self, accesses: Iterable[Access], names: Mapping[int, str]) -> None:
        """Add accesses to the log and names to the side table (both bounded)."""
        self._log.extend(_pack(a) for a in accesses)
        for hashed, key in names.items():  # to the newest end, as Redis' ZADD
            self._names.pop(hashed, None)
            self._names[hashed] = key
        while len(self._names) > self.options.max_keys:
            del self._names[next(iter(self._names))]

    def read(self) -> History:
        """Return the whole history held."""
        return self._history(_accesses(self._log), dict(self._names))

    def _history(self, accesses: list[Access], names: dict[int, str]) -> History:
        options = self.options
        return History(accesses, names, options.sample_rate, options.read_every)

    def put(self, name: str, value: str) -> None:
        self._fields[name] = value

    def get(self, name: str) -> str | None:
        return self._fields.get(name)

    def remove(self, name: str) -> None:
        self._fields.pop(name, None)

    def fields(self, prefix: str) -> dict[str, str]:
        """Return the fields whose name starts with ``prefix``."""
        return {k: v for k, v in self._fields.items() if k.startswith(prefix)}


def _accesses(texts: Iterable[str | bytes]) -> list[Access]:
    return [a for a in map(_unpack, texts) if a is not None]


class RedisHistoryStore(HistoryStore):
    kind = "l2"

    def __init__(self, options: HistoryOptions, tier: BaseTier, base: str) -> None:
        self.options = options
        self.tier = tier
        self.base = base

    def _client(self) -> Any:
        return self.tier._writer(self.base)  # type: ignore[attr-defined]

    def append(self, accesses: Iterable[Access], names: Mapping[int, str]) -> None:
        packed = [_pack(a) for a in accesses]
        if not packed and not names:
            return
        log, table = f"{self.base}:log", f"{self.base}:names"
        pipe = self._client().pipeline(transaction=False)
        if packed:
            pipe.rpush(log, *packed)
            pipe.ltrim(log, -self.options.max_records, -1)
        if names:
            at = self.tier.clock()
            pipe.zadd(table, {f"{h}:{key}": at for h, key in names.items()})
            pipe.zremrangebyrank(table, 0, -self.options.max_keys - 1)
        pipe.execute()

    def read(self) -> History:
        client = self._client()
        log = client.lrange(f"{self.base}:log", 0, -1)
        names = {}
        for member in client.zrange(f"{self.base}:names", 0, -1):
            text = member.decode() if isinstance(member, bytes) else member
            hashed, _, key = text.partition(":")
            names[int(hashed)] = key
        return self._history(_accesses(log), names)

    def put(self, name: str, value: str) -> None:
        self._client().hset(f"{self.base}:fields", name, value)

    def get(self, name: str) -> str | None:
        value = self._client().hget(f"{self.base}:fields", name)
        return value.decode() if isinstance(value, bytes) else value

    def remove(self, name: str) -> None:
        self._client().hdel(f"{self.base}:fields", name)

    def fields(self, prefix: str) -> dict[str, str]:
        found = self._client().hgetall(f"{self.base}:fields")
        out = {}
        for name, value in found.items():
            name = name.decode() if isinstance(name, bytes) else name
            if name.startswith(prefix):
                out[name] = value.decode() if isinstance(value, bytes) else value
        return out


class DiskHistoryStore(HistoryStore):
    kind = "l3"

    def __init__(self, options: HistoryOptions, directory: str, base: str) -> None:
        import diskcache

        self.options = options
        root = os.path.join(directory, "history", base.replace("/", "_"))
        self._log = diskcache.Deque(  # type: ignore[assignment]
            directory=os.path.join(root, "log"), maxlen=options.max_records
        )
        self._pairs = diskcache.Deque(
            directory=os.path.join(root, "names"), maxlen=options.max_keys
        )
        self._cache = diskcache.Cache(os.path.join(root, "fields"))

    def append(self, accesses: Iterable[Access], names: Mapping[int, str]) -> None:
        self._log.extend(_pack(a) for a in accesses)
        self._pairs.extend(names.items())

    def read(self) -> History:
        return self._history(_accesses(self._log), dict(self._pairs))

    def put(self, name: str, value: str) -> None:
        self._cache.set(name, value)

    def get(self, name: str) -> str | None:
        return self._cache.get(name)

    def remove(self, name: str) -> None:
        self._cache.delete(name)

    def fields(self, prefix: str) -> dict[str, str]:
        return {
            name: self._cache.get(name)
            for name in self._cache.iterkeys()
            if isinstance(name, str) and name.startswith(prefix)
        }


def history_store_for(
    options: HistoryOptions, alias: str, namespace: str, tiers: Iterable[BaseTier]
) -> HistoryStore:
    """Return the history store of a cache over ``tiers``: L2, else L3, else local."""
    kind, tier = shared_tier(tiers)
    base = f"tiered_cache:history:{{{alias}:{namespace}}}"
    if kind == "l2":
        return RedisHistoryStore(options, tier, base)  # type: ignore[arg-type]
    if kind == "l3":
        return DiskHistoryStore(options, tier.directory, f"{alias}:{namespace}")  # type: ignore[union-attr]
    return HistoryStore(options)
