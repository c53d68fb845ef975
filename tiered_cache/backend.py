"""TieredCache: one Django cache BACKEND over an ordered chain of tiers.

Design
======

Keys. ``make_key`` (KEY_PREFIX, VERSION, KEY_FUNCTION) runs once per call and
the result is validated with Django's warnings; every tier stores exactly that
final key. ``clear()`` removes the keys under this cache's *namespace*: the
literal start every key it can build shares (``keys.clear_namespace``), so two
caches or applications sharing a Redis database never flush each other.

Tiers. ``OPTIONS["TIERS"]`` lists CACHES-shaped specs, fastest first: usually
L1 (``MemoryTier``, per process), L2 (Redis, shared by every machine), L3
(diskcache, shared by the processes of one machine). The tier objects, their
circuit breakers and counters are built once per process per configuration and
shared by every backend instance: Django makes one backend per thread and per
async context and calls ``close()`` after each request, so instances must be
cheap and must share data (Django's own tests expect aliases with identical
configuration to see each other's keys, as LocMemCache does).

Read path. Tiers are asked in order; the first hit wins. A hit below the top is
promoted into every faster tier that accepts it, with its *remaining* lifetime
(the absolute expiry travels with the value), never extended. An L1 promotion
never replaces a newer L1 entry (the write stamps are compared), so a read that
races a write cannot plant the older value. Bytes that are not a valid envelope
are a logged, counted miss, never an exception and never an unpickle of
unknown data. L1 is read without a lock, without a tier call wrapper and, for
immutable values, without unpickling: that is the path the benchmark measures.

Write path. The value is pickled once, before any lock (an unpicklable value
raises here, whatever FAIL_OPEN says). The *authority* is the first shared tier
whose placement rules accept the value (L2, else L3); with no shared tier, L1.
``set`` writes the authority first, then every other accepting tier; a tier
that does not accept the value (``MAX_VALUE_BYTES``) has any older copy
deleted instead, so no tier keeps serving a value that was replaced. ``add``,
``incr`` and ``decr`` are atomic at the authority (Redis ``SET NX``/``INCRBY``,
diskcache transactions), never read-modify-write across tiers; after ``incr``
the other tiers drop their copies and re-read on demand. ``delete``, ``touch``
and ``clear`` reach every tier.

Failure. Every call to a tier below L1 goes through ``_call``: the one place
where the circuit breaker is consulted and where errors are counted and logged
(once per burst). With FAIL_OPEN (the default) a ``TierUnavailable`` becomes
"this tier did not answer": reads fall through to the next tier, writes still
reach the healthy tiers, ``add``/``incr`` fall over to the next tier able to be
the authority. With FAIL_OPEN off the error reaches the caller, chained to its
cause. Programming errors (bad timeout types, unpicklable values) always raise.

What is *not* promised (yet). L1 copies are trusted for at most
``L1_MAX_STALENESS`` seconds when a shared tier exists, so another process's
write becomes visible within that bound; the invalidation bus that shortens it
is a separate piece. A write that reached L1/L3 while L2 was down is not
replayed into L2 when it returns, and a hit found only in L3 is promoted back
into L2 (which may resurrect a value another machine deleted while this
machine missed it): both are bounded by the TTL and by the coming coherence
work. ``set_many`` reports a key as failed when its authority did not store it,
even if a local tier did.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Iterable, Mapping
from typing import Any

from django.core.cache.backends.base import DEFAULT_TIMEOUT, BaseCache

from .conf import TieredOptions, config_identity, parse_options
from .envelope import Record, materialize
from .exceptions import CircuitOpen, EnvelopeError, TierUnavailable
from .forksafe import at_fork
from .keys import (
    MAX_STORED_KEY_LENGTH,
    clear_namespace,
    storable_key,
    validate_key,
)
from .resilience import CLOSED, CircuitBreaker, LogThrottle
from .sentinels import MISSING, UNAVAILABLE
from .tiers import load_tier
from .tiers.base import BaseTier

__all__ = ["TieredCache"]

logger = logging.getLogger(__name__)

_KEY_MEMO_SIZE = 4096
# Operations whose success the backend counts for every tier (reads are
# counted where the hit or miss is known).
_COUNTED = {
    "set": "sets",
    "set_many": "sets",
    "add": "sets",
    "delete": "deletes",
    "delete_many": "deletes",
}
_EXPIRED = -math.inf  # a timeout <= 0: "do not store", Django semantics


class _Slot:
    """A tier with the breaker that guards it; shared process-wide."""

    __slots__ = ("tier", "name", "breaker", "shared")

    def __init__(self, tier: BaseTier, breaker: CircuitBreaker) -> None:
        self.tier = tier
        self.name = tier.name
        self.breaker = breaker
        self.shared = tier.shared


class _Chain:
    """The tiers of one configuration, built once per process."""

    def __init__(self, options: TieredOptions) -> None:
        breaker = options.breaker
        slots = []
        for spec in options.tiers:
            tier = load_tier(spec.spec, name=spec.name, clock=options.clock)
            slots.append(
                _Slot(
                    tier,
                    CircuitBreaker(
                        spec.name,
                        failure_threshold=breaker.failure_threshold,
                        failure_rate=breaker.failure_rate,
                        min_calls=breaker.min_calls,
                        window=breaker.window,
                        open_seconds=breaker.open_seconds,
                        on_open=_count_open(tier),
                    ),
                )
            )
        self.slots: tuple[_Slot, ...] = tuple(slots)
        self.by_name = {slot.name: slot for slot in slots}
        top = slots[0]
        # The top tier is read without the _call wrapper only when it is local
        # memory: it cannot fail, so there is nothing for a breaker to guard.
        self.local_top: BaseTier | None = None if top.shared else top.tier
        has_shared = any(slot.shared for slot in slots)
        for slot in slots:
            if not slot.shared and has_shared and hasattr(slot.tier, "max_staleness"):
                slot.tier.max_staleness = options.l1_max_staleness
        # Authority candidates: shared tiers in read order, then local ones.
        self.authority_order = tuple(
            [s for s in slots if s.shared] + [s for s in slots if not s.shared]
        )
        self.log_throttle = LogThrottle()


def _count_open(tier: BaseTier):
    def on_open() -> None:
        tier.stats.breaker_opened += 1

    return on_open


class _KeyPart:
    """An attribute whose assignment drops the instance's memo of final keys."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.attr = f"_{name}"

    def __get__(self, obj: Any, objtype: type | None = None) -> Any:
        return self if obj is None else getattr(obj, self.attr)

    def __set__(self, obj: Any, value: Any) -> None:
        setattr(obj, self.attr, value)
        obj._keys = {}


_chains: dict[str, _Chain] = {}
_chains_lock = threading.Lock()


def _renew_chains_lock() -> None:
    global _chains_lock
    _chains_lock = threading.Lock()


at_fork(_renew_chains_lock)


def _chain_for(options: TieredOptions) -> _Chain:
    chain = _chains.get(options.share_key)
    if chain is None:
        with _chains_lock:
            chain = _chains.get(options.share_key)
            if chain is None:
                chain = _chains[options.share_key] = _Chain(options)
    return chain


_options_cache: dict[str, TieredOptions] = {}


def _options_for(params: Mapping[str, Any]) -> TieredOptions:
    """Parse OPTIONS once per distinct configuration (instances are per thread)."""
    raw = params.get("OPTIONS") or {}
    try:
        cache_key = config_identity(raw)
    except (TypeError, ValueError):  # e.g. non-string dict keys: just parse
        return parse_options(raw)
    options = _options_cache.get(cache_key)
    if options is None:
        options = _options_cache[cache_key] = parse_options(raw)
    return options


class TieredCache(BaseCache):
    """Django cache backend chaining L1 memory, L2 Redis and L3 diskcache."""

    def __init__(self, location: str, params: dict[str, Any]) -> None:
        self._keys: dict[str, str] = {}
        super().__init__(params)
        self.location = location
        # LOCATION names a store, as with LocMemCache: caches whose LOCATION
        # differs never see each other's keys, even on the same servers.
        self._store_prefix = f"{location}|" if location else ""
        self.options = _options_for(params)
        self._chain = _chain_for(self.options)
        self._slots = self._chain.slots
        self._top = self._chain.local_top
        self._fail_open = self.options.fail_open
        self._clock = self.options.clock

    # -- keys and timeouts -------------------------------------------------------
    #
    # Building and validating the final key costs ~0.45 us, a quarter of an L1
    # hit. Final keys of plain string keys at the default version are therefore
    # remembered per instance (instances are per thread: no lock). Keys that
    # warn are never remembered, so they warn on every call as in Django; the
    # memo is dropped whenever key_func, key_prefix or version is reassigned
    # (Django's own tests swap key_func on a live instance).

    key_func = _KeyPart()
    key_prefix = _KeyPart()
    version = _KeyPart()

    def _key(self, key: Any, version: int | None) -> str:
        if version is None and type(key) is str:
            final = self._keys.get(key)
            if final is not None:
                return final
            final, clean = self._build_key(key, None)
            if clean:
                keys = self._keys
                if len(keys) >= _KEY_MEMO_SIZE:
                    keys.clear()
                keys[key] = final
            return final
        return self._build_key(key, version)[0]

    def _build_key(self, key: Any, version: int | None) -> tuple[str, bool]:
        """Return the key every tier stores, and whether it passed validation."""
        final = self.make_key(key, version)
        clean = validate_key(final)
        if self._store_prefix:
            final = self._store_prefix + final
        if not final.isascii() or len(final) > MAX_STORED_KEY_LENGTH:
            final = storable_key(final, self.namespace)
        return final, clean

    def make_and_validate_key(self, key: Any, version: int | None = None) -> str:
        return self._key(key, version)

    def _expires_at(self, timeout: Any) -> float | None:
        """Return the absolute expiry for ``timeout`` (Django semantics)."""
        if timeout is DEFAULT_TIMEOUT:
            timeout = self.default_timeout
        if timeout is None:
            return None
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
            raise TypeError(
                f"timeout must be a number of seconds or None, not "
                f"{type(timeout).__name__}"
            )
        if timeout != timeout:
            raise ValueError("timeout must not be NaN")
        if timeout <= 0:
            return _EXPIRED
        if timeout == math.inf:
            return None
        return self._clock() + timeout

    @property
    def namespace(self) -> str:
        """Return the literal start shared by every key this cache stores.

        Empty when the key function gives keys no fixed start: then this
        cache's keys cannot be told apart from others' in a shared tier.
        """
        namespace = clear_namespace(self.key_func, self.key_prefix, self.version)
        return self._store_prefix + namespace if namespace else ""

    # -- the one place tier calls go through -------------------------------------

    def _call(self, slot: _Slot, op: str, *args: Any) -> Any:
        breaker = slot.breaker
        if breaker.state != CLOSED and not breaker.allow():
            slot.tier.stats.skipped += 1
            if self._fail_open:
                return UNAVAILABLE
            raise CircuitOpen(slot.name, op)
        try:
            result = getattr(slot.tier, op)(*args)
        except TierUnavailable as exc:
            if exc.alive:
                # It answered (OOM, disk full): reachable, so the breaker stays
                # closed and reads keep using the tier.
                breaker.record_success()
            else:
                breaker.record_failure()
            slot.tier.stats.errors += 1
            if self._chain.log_throttle.allow(f"{slot.name}:{op}:{exc.kind}"):
                logger.warning(
                    "cache tier %s failed during %s [%s] (%s); %s",
                    slot.name,
                    op,
                    exc.kind,
                    exc.__cause__ or exc,
                    "continuing without it" if self._fail_open else "raising",
                )
            if self._fail_open:
                return UNAVAILABLE
            raise
        breaker.record_success()
        counter = _COUNTED.get(op)
        if counter is not None and result is not False:
            stats = slot.tier.stats
            n = len(args[0]) if op.endswith("_many") else 1
            setattr(stats, counter, getattr(stats, counter) + n)
        return result

    def _materialize(self, slot: _Slot, key: str, record: Record) -> Any:
        try:
            return materialize(record)
        except EnvelopeError as exc:
            slot.tier.reject(key, exc)
            self._call(slot, "delete", key)
            return MISSING

    # -- reads ---------------------------------------------------------------------

    def get(self, key: Any, default: Any = None, version: int | None = None) -> Any:
        if version is None and type(key) is str:
            final = self._keys.get(key)
            key = self._key(key, None) if final is None else final
        else:
            key = self._key(key, version)
        top = self._top
        if top is not None:
            value = top.get_value(key, MISSING)
            if value is not MISSING:
                return value
        return self._get_below(key, default)

    def _get_below(self, key: str, default: Any) -> Any:
        slots = self._slots
        start = 1 if self._top is not None else 0
        for index in range(start, len(slots)):
            slot = slots[index]
            record = self._call(slot, "get", key)
            if record is UNAVAILABLE:
                continue
            if record is MISSING:
                slot.tier.stats.misses += 1
                continue
            value = self._materialize(slot, key, record)
            if value is MISSING:
                continue
            slot.tier.stats.hits += 1
            if index:
                self._promote_one(key, record, slots[:index])
            return value
        return default

    def _promote(self, records: Mapping[str, Record], above: Iterable[_Slot]) -> None:
        """Copy hits into the faster tiers, keeping their remaining lifetime."""
        now = self._clock()
        live = {
            key: record
            for key, record in records.items()
            if record.expires_at is None or record.expires_at > now
        }
        for slot in above:
            accepted = {k: r for k, r in live.items() if slot.tier.accepts(r)}
            if not accepted:
                continue
            if len(accepted) == 1:
                ((key, record),) = accepted.items()
                result = self._call(slot, "set", key, record)
            else:
                result = self._call(slot, "set_many", accepted)
            if result is not UNAVAILABLE:
                slot.tier.stats.promotions += len(accepted)

    def _promote_one(self, key: str, record: Record, above: Iterable[_Slot]) -> None:
        """Promote one hit (the ``get`` path: no dicts, L1 without the wrapper)."""
        expires_at = record.expires_at
        if expires_at is not None and expires_at <= self._clock():
            return
        top = self._top
        for slot in above:
            tier = slot.tier
            if not tier.accepts(record):
                continue
            if tier is top:
                tier.set(key, record)  # local memory cannot fail
                tier.stats.sets += 1
            elif self._call(slot, "set", key, record) is UNAVAILABLE:
                continue
            tier.stats.promotions += 1

    def get_many(self, keys: Iterable[Any], version: int | None = None) -> dict:
        originals = {self._key(key, version): key for key in keys}
        found: dict[Any, Any] = {}
        pending = list(originals)
        slots = self._slots
        for index, slot in enumerate(slots):
            if not pending:
                break
            records = self._call(slot, "get_many", pending)
            if records is UNAVAILABLE:
                continue
            tier_stats = slot.tier.stats
            hits: dict[str, Record] = {}
            for final, record in records.items():
                value = self._materialize(slot, final, record)
                if value is not MISSING:
                    found[originals[final]] = value
                    hits[final] = record
            tier_stats.hits += len(hits)
            tier_stats.misses += len(pending) - len(hits)
            if hits and index:
                self._promote(hits, slots[:index])
            pending = [final for final in pending if final not in hits]
        return found

    def has_key(self, key: Any, version: int | None = None) -> bool:
        return self._has(self._key(key, version))

    # -- writes --------------------------------------------------------------------

    def set(
        self,
        key: Any,
        value: Any,
        timeout: Any = DEFAULT_TIMEOUT,
        version: int | None = None,
    ) -> None:
        key = self._key(key, version)
        expires_at = self._expires_at(timeout)
        if expires_at == _EXPIRED:
            Record.for_value(value, None)  # unpicklable still raises, as in Django
            self._delete_everywhere(key)
            return
        self._write(key, Record.for_value(value, expires_at))

    def _write(self, key: str, record: Record) -> bool:
        """Write through every accepting tier, authority first.

        Return whether the authority (the first accepting shared tier, else
        L1) stored it.
        """
        stored = False
        authority = None
        for slot in self._write_order(record):
            if not slot.tier.accepts(record):
                slot.tier.stats.refused += 1
                self._call(slot, "delete", key)
                continue
            result = self._call(slot, "set", key, record)
            if authority is None:
                authority = slot
                stored = result is not UNAVAILABLE
        return stored

    def _write_order(self, record: Record) -> list[_Slot]:
        """Return the authority for ``record`` first, then the rest in read order."""
        for slot in self._chain.authority_order:
            if slot.tier.accepts(record):
                return [slot] + [s for s in self._slots if s is not slot]
        return list(self._slots)

    def set_many(
        self,
        data: Mapping[Any, Any],
        timeout: Any = DEFAULT_TIMEOUT,
        version: int | None = None,
    ) -> list:
        if not data:
            return []
        expires_at = self._expires_at(timeout)
        records: dict[str, Record] = {}
        originals: dict[str, Any] = {}
        for key, value in data.items():
            final = self._key(key, version)
            originals[final] = key
            records[final] = Record.for_value(value, expires_at)
        if expires_at == _EXPIRED:
            for slot in self._slots:
                self._call(slot, "delete_many", list(records))
            return []
        # Which tier is the authority of each key (placement may differ by size).
        authority: dict[str, _Slot | None] = {}
        for final, record in records.items():
            authority[final] = next(
                (s for s in self._chain.authority_order if s.tier.accepts(record)), None
            )
        failed: set[str] = {final for final, slot in authority.items() if slot is None}
        for slot in sorted(self._slots, key=lambda s: not s.shared):
            accepted = {k: r for k, r in records.items() if slot.tier.accepts(r)}
            refused = [k for k in records if k not in accepted]
            if refused:
                slot.tier.stats.refused += len(refused)
                self._call(slot, "delete_many", refused)
            if not accepted:
                continue
            if self._call(slot, "set_many", accepted) is UNAVAILABLE:
                failed.update(k for k in accepted if authority[k] is slot)
        return [originals[final] for final in records if final in failed]

    def add(
        self,
        key: Any,
        value: Any,
        timeout: Any = DEFAULT_TIMEOUT,
        version: int | None = None,
    ) -> bool:
        key = self._key(key, version)
        expires_at = self._expires_at(timeout)
        record = Record.for_value(value, None if expires_at == _EXPIRED else expires_at)
        if expires_at == _EXPIRED:
            # Django: report whether it *would* have been added, store nothing.
            return not self._has(key)
        for slot in self._chain.authority_order:
            if not slot.tier.accepts(record):
                continue
            added = self._call(slot, "add", key, record)
            if added is UNAVAILABLE:
                continue  # fail over to the next tier able to be the authority
            if added:
                for other in self._slots:
                    if other is slot:
                        continue
                    if other.tier.accepts(record):
                        self._call(other, "set", key, record)
                    else:
                        other.tier.stats.refused += 1
                        self._call(other, "delete", key)
            return bool(added)
        return False

    def _has(self, final_key: str) -> bool:
        return any(
            self._call(slot, "has_key", final_key) is True for slot in self._slots
        )

    def incr(self, key: Any, delta: int = 1, version: int | None = None) -> Any:
        final = self._key(key, version)
        for slot in self._chain.authority_order:
            value = self._call(slot, "incr", final, delta)
            if value is UNAVAILABLE:
                continue
            for other in self._slots:
                if other is not slot:
                    self._call(other, "delete", final)
            return value
        raise ValueError(f"Key '{final}' not found (no tier could answer)")

    def decr(self, key: Any, delta: int = 1, version: int | None = None) -> Any:
        return self.incr(key, -delta, version=version)

    def touch(
        self, key: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None
    ) -> bool:
        key = self._key(key, version)
        expires_at = self._expires_at(timeout)
        if expires_at == _EXPIRED:
            return self._delete_everywhere(key)
        answer = None
        for slot in self._chain.authority_order:
            result = self._call(slot, "touch", key, expires_at)
            if answer is None and result is not UNAVAILABLE:
                answer = bool(result)
        return bool(answer)

    def delete(self, key: Any, version: int | None = None) -> bool:
        return self._delete_everywhere(self._key(key, version))

    def _delete_everywhere(self, final_key: str) -> bool:
        deleted = False
        for slot in self._chain.authority_order:
            if self._call(slot, "delete", final_key) is True:
                deleted = True
        return deleted

    def delete_many(self, keys: Iterable[Any], version: int | None = None) -> None:
        finals = [self._key(key, version) for key in keys]
        if not finals:
            return
        for slot in self._chain.authority_order:
            self._call(slot, "delete_many", finals)

    def clear(self) -> None:
        namespace = self.namespace
        for slot in self._chain.authority_order:
            if not namespace and slot.shared:
                logger.error(
                    "clear(): KEY_FUNCTION builds keys with no fixed start, so this "
                    "cache's keys cannot be told apart in shared tier %s; skipped. "
                    "Set KEY_PREFIX or a KEY_FUNCTION that starts keys with it.",
                    slot.name,
                )
                continue
            self._call(slot, "clear", namespace)

    def close(self, **kwargs: Any) -> None:
        # Django calls this after every request; tiers keep their shared pools.
        for slot in self._slots:
            slot.tier.close()

    # -- introspection ---------------------------------------------------------------

    def tier(self, name: str) -> BaseTier:
        """Return the tier called ``name`` (``"l1"``, ``"l2"``...) for raw access."""
        try:
            return self._chain.by_name[name].tier
        except KeyError:
            raise KeyError(
                f"no tier {name!r}; this cache has {list(self._chain.by_name)}"
            ) from None

    @property
    def tiers(self) -> tuple[BaseTier, ...]:
        """Return the tiers in read order."""
        return tuple(slot.tier for slot in self._slots)

    def breaker_state(self, name: str) -> str:
        """Return ``closed``, ``open`` or ``half_open`` for tier ``name``."""
        return self._chain.by_name[name].breaker.state

    def stats(self) -> dict[str, dict[str, Any]]:
        """Return this process's counters per tier, with breaker states."""
        return {
            slot.name: {**slot.tier.stats.snapshot(), "breaker": slot.breaker.state}
            for slot in self._slots
        }

    @property
    def _expire_info(self) -> Mapping[str, float | None]:
        """LocMemCache's ``{final key: absolute expiry}``, as a read-only view.

        Code (Django's own tests among it) peeks at LocMemCache's private
        ``_expire_info[cache.make_key(key)]`` to see a key's expiry; this view
        answers from the first tier holding the key (``None`` = never expires).
        """
        return _ExpiryView(self)

    def check(self) -> list[str]:
        """Return broken invariants of the local tiers (empty when healthy)."""
        problems: list[str] = []
        for slot in self._slots:
            checker = getattr(slot.tier, "check", None)
            if checker is not None:
                problems.extend(checker())
        return problems


class _ExpiryView(Mapping):
    """Read-only ``{final key: expires_at}`` over the tiers of one cache."""

    def __init__(self, cache: TieredCache) -> None:
        self._cache = cache

    def __getitem__(self, key: str) -> float | None:
        cache = self._cache
        prefix = cache._store_prefix
        stored = key if key.startswith(prefix) else prefix + key
        for slot in cache._slots:
            record = cache._call(slot, "get", stored)
            if record is not MISSING and record is not UNAVAILABLE:
                return record.expires_at
        raise KeyError(key)

    def __iter__(self):
        """Iterate over this cache's keys in the local top tier (L1)."""
        namespace = self._cache.namespace
        keys = list(getattr(self._cache._top, "_data", ()))
        return iter([key for key in keys if key.startswith(namespace)])

    def __len__(self) -> int:
        return len(list(iter(self)))
