"""TieredCache: one Django cache BACKEND over an ordered chain of tiers.

Design
======

Keys. ``make_key`` (KEY_PREFIX, VERSION, KEY_FUNCTION) runs once per call and
the result is validated with Django's warnings. ``stored_key`` is the key
every tier stores: that key, behind ``<LOCATION>|`` when the entry names a
store, or a digest for keys no tier can hold (``keys.storable_key``).
``clear()`` removes the keys under this cache's *namespace*: the literal start
every key it can build shares (``keys.clear_namespace``), so two caches or
applications sharing a Redis database never flush each other.

Tiers. ``OPTIONS["TIERS"]`` lists CACHES-shaped specs, fastest first: usually
L1 (``MemoryTier``, one process), L2 (Redis, every machine), L3 (diskcache,
the processes of one machine). Each tier declares its roles (``BaseTier``:
scope, whether it may be the authority, whether it can fail, whether it holds
copies of a wider tier), and ``tiered_cache.chain`` arranges the chain from
those declarations alone. This module calls tiers only through the chain and
its slots: each ``Slot`` is the one call path into a tier (breaker, fail-open,
logging, counters). Chains are built once per process per configuration and
shared by every backend instance: Django makes one backend per thread and per
async context and calls ``close()`` after each request, so instances must be
cheap and must share data (Django's own tests expect aliases with identical
configuration to see each other's keys, as LocMemCache does).

Read path. Tiers are asked in read order; the first hit wins. A hit below the
top is promoted into the faster, narrower tiers that accept it, with its
*remaining* lifetime (the absolute expiry travels with the value). An L1
promotion never replaces a newer L1 entry (the write stamps are compared), so
a read that races a write cannot plant the older value. Stored bytes that are
not a record signed for their key (``tiered_cache.signing``) are a logged,
counted miss, never unpickled. When the top tier cannot fail (local memory), it is
read directly, without a lock, a breaker or a wrapper and, for immutable
values, without unpickling: that is the fast path the benchmark measures, and
the one documented exception to "every call goes through a slot".

Write path. The value is serialized once (``SERIALIZER``: pickle by default,
or JSON), before any lock; a value the serializer cannot encode raises here,
whatever FAIL_OPEN says. Every write fans out through one
routine (``Chain.write``), widest scope first: the *authority* of a value is
the widest tier that may be one and accepts it (L2, else L3, else L1), so it
is written first. A tier that does not accept the value (``MAX_VALUE_BYTES``)
has any older copy deleted instead, so no tier keeps serving a value that was
replaced. ``add``, ``incr`` and ``decr`` are atomic at the authority (Redis
``SET NX``/``INCRBY``, diskcache transactions), never read-modify-write
across tiers; after ``incr`` the other tiers drop their copies and re-read on
demand. ``delete``, ``touch`` and ``clear`` reach every tier.

Failure. With FAIL_OPEN (the default) a tier that does not answer is skipped:
reads fall through to the next tier, writes still reach the healthy tiers,
``add``/``incr`` fall over to the next tier able to be the authority. With
FAIL_OPEN off the error reaches the caller, chained to its cause. Programming
errors (bad timeout types, unpicklable values) always raise. A configuration
error does not raise from the constructor (Django's own system checks build
every cache, and ``manage.py check`` must report the error with its hint):
every cache call raises it instead.

Coherence and stampedes. Copies in tiers narrower than the widest (L1; L3
below an L2) are dropped by the invalidation bus (``tiered_cache.coherence``)
when another process changes the value, and are trusted at most
``L1_MAX_STALENESS`` seconds after they were copied. An L2 that answers a miss
disowns L3's copy, and a hit is never promoted into a wider tier, so a deleted
key does not come back (``Chain.read_below``). ``get_or_set`` computes a
missing value once per key per process and, with a Redis lease, once per
deployment (``tiered_cache.stampede``).

Changes L2 did not take while it was down are journaled and reconciled when
it answers again (``tiered_cache.journal``). What is *not* promised is listed
in docs/design.rst.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from asgiref.sync import sync_to_async
from django.core.cache.backends.base import DEFAULT_TIMEOUT, BaseCache
from django.core.exceptions import ImproperlyConfigured

from . import stampede
from .chain import chain_for
from .compat import ExpiryView
from .conf import Refusal, options_for
from .envelope import Record, materialize
from .exceptions import EnvelopeError
from .history.recorder import recorder_for
from .keys import (
    MAX_STORED_KEY_LENGTH,
    clear_namespace,
    storable_key,
    validate_key,
)
from .sentinels import MISSING, UNAVAILABLE
from .tiers.base import BaseTier

if TYPE_CHECKING:
    from .slot import Slot

__all__ = ["TieredCache"]

logger = logging.getLogger(__name__)

_KEY_MEMO_SIZE = 4096
_EXPIRED = -math.inf  # a timeout <= 0: "do not store", Django semantics
#: Timeouts this long (3 x 10**10 years) mean "never": in milliseconds, a
#: longer one overflows what a float or Redis can hold (docs/faults.rst E36).
_FOREVER = 10**18
#: What raises the configuration error of a misconfigured cache (``close`` is
#: left alone: Django calls it after every request).
_API = [
    "get", "get_many", "has_key", "set", "set_many", "add", "incr", "decr",
    "touch", "delete", "delete_many", "clear", "get_or_set", "incr_version",
    "decr_version", "stored_key", "tier", "stats", "check", "breaker_state",
    "inspect",
]  # fmt: skip


class _KeyPart:
    """An attribute whose assignment drops the instance's memo of final keys."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.attr = f"_{name}"

    def __get__(self, obj: Any, objtype: type | None = None) -> Any:
        return self if obj is None else getattr(obj, self.attr)

    def __set__(self, obj: Any, value: Any) -> None:
        setattr(obj, self.attr, value)
        obj._keys = {}


class TieredCache(BaseCache):
    """Django cache backend chaining L1 memory, L2 Redis and L3 diskcache."""

    def __init__(self, location: str, params: dict[str, Any]) -> None:
        self._keys: dict[str, str] = {}
        raw = params.get("OPTIONS")
        # BaseCache calls OPTIONS.get(): a list must reach parse_options' error.
        super().__init__(
            params if isinstance(raw, Mapping | None) else {**params, "OPTIONS": {}}
        )
        self.location = location
        # LOCATION names a store, as with LocMemCache: caches whose LOCATION
        # differs never see each other's keys, even on the same servers.
        self._store_prefix = f"{location}|" if location else ""
        try:
            self.options = options_for(raw)
            self._chain = chain_for(self.options)
        except ImproperlyConfigured as exc:
            self._refuse_every_call(exc)
            return
        self._chain.note_namespace(self.namespace)  # the outage journal's cover
        self._slots = self._chain.slots
        self._top = self._chain.fast_top
        self._below = 0 if self._top is None else 1
        self._clock = self.options.clock
        self._serializer = self.options.serializer
        if self._chain.groups is not None:
            # Counting per key group wraps ``get`` on this instance only, so
            # a cache without METRICS["GROUPS"] pays nothing on its hit path.
            self.get = self._get_counting_group  # type: ignore[method-assign]
        recorder = recorder_for(self.options)
        if recorder is not None:
            # OPTIONS["HISTORY"] (issue 9): reads of sampled keys are recorded;
            # without it ``get`` stays the plain method.
            self.get = recorder.wrap(self, self.get)  # type: ignore[method-assign]

    def _refuse_every_call(self, error: ImproperlyConfigured) -> None:
        """Make every cache call raise ``error`` (see "Failure" above)."""

        refusal = Refusal(error)
        for name in _API:
            setattr(self, name, refusal.refuse)
        self._chain = self._slots = refusal  # type: ignore[assignment]

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

    def stored_key(self, key: Any, version: int | None = None) -> str:
        """Return the key every tier stores for ``key`` (validated, as Django's)."""
        return self._key(key, version)

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
        return self._storable(self._store_prefix + final), clean

    def _storable(self, final: str) -> str:
        """Return the form of a prefixed final key that every tier can hold."""
        if not final.isascii() or len(final) > MAX_STORED_KEY_LENGTH:
            return storable_key(final, self.namespace)
        return final

    def _stored_from_made(self, key: str) -> str:
        """Map a ``make_key`` result (or an already stored key) to the stored key."""
        prefix = self._store_prefix
        return self._storable(key if key.startswith(prefix) else prefix + key)

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
        if timeout >= _FOREVER:
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
        return self._get_below_top(key, default)

    def _get_below_top(self, key: str, default: Any) -> Any:
        """Read the stored ``key`` from the tiers below the fast top, counted."""
        slots = self._slots
        for index in range(self._below, len(slots)):
            record = slots[index].get(key)
            if record is MISSING or record is UNAVAILABLE:
                # The miss path: the chain reads on (an L2 miss disowns L3's
                # copy; a failed tier is not promoted into). The L2 hit never
                # comes here.
                record = self._chain.read_below(key, index, record)
                return default if record is MISSING else record.value
            if index:
                self._chain.promote_one(key, record, slots[:index])
            return record.value
        return default

    def _get_top_counted(self, key: str) -> Any:
        """``get`` of the stored ``key`` (or MISSING) whose top lookup was counted.

        For ``get_or_set``, which looked at the fast top (counted) before
        joining a flight: the leader's read looks at the top again uncounted
        (a flight may have landed since) and counts the tiers below. One
        call of the user is one lookup per tier (issue 8).
        """
        top = self._top
        if top is not None:
            value = _value_of(top.get(key))
            if value is not MISSING:
                return value
        return self._get_below_top(key, MISSING)

    def _peek(self, key: str, default: Any) -> Any:
        """Return what ``get`` would for the stored ``key``: uncounted, unpromoted.

        A second look inside one call of the user (``get_or_set`` reading
        back what its ``add`` kept, a flight's leader looking again once it
        holds the lease): the call's lookup was counted already (issue 8).
        """
        value = _value_of(self._chain.find(key))
        return default if value is MISSING else value

    def _get_counting_group(
        self, key: Any, default: Any = None, version: int | None = None
    ) -> Any:
        value = TieredCache.get(self, key, MISSING, version)
        self._chain.groups.count(key, value is not MISSING)  # type: ignore[union-attr]
        return default if value is MISSING else value

    def get_many(self, keys: Iterable[Any], version: int | None = None) -> dict:
        originals = {self._key(key, version): key for key in keys}
        found: dict[Any, Any] = {}
        pending = list(originals)
        chain = self._chain
        answered: list[Slot] = []  # tiers that answered for every key still pending
        failed: list[Slot] = []
        for index, slot in enumerate(self._slots):
            if not pending:
                break
            hits = chain.read_many(slot, pending, answered)
            if hits is UNAVAILABLE:
                failed.append(slot)
                continue
            answered.append(slot)
            if not hits:
                continue
            for final, record in hits.items():
                found[originals[final]] = record.value
            if index:
                # Narrower tiers only, and not one that just failed (it would
                # pay its timeout again).
                above = [s for s in chain.narrower[index] if s not in failed]
                chain.promote(hits, above)
            pending = [final for final in pending if final not in hits]
        return found

    def has_key(self, key: Any, version: int | None = None) -> bool:
        return self._chain.has(self._key(key, version))

    def get_or_set(
        self,
        key: Any,
        default: Any,
        timeout: Any = DEFAULT_TIMEOUT,
        version: int | None = None,
    ) -> Any:
        """Return the value at ``key``; if missing, store ``default`` (or its result).

        Django's semantics; a callable ``default`` runs once per key per
        process and, when a tier holds leases (L2), once per deployment
        (``tiered_cache.stampede``).
        """
        return stampede.get_or_set(self, self._chain, key, default, timeout, version)

    async def aget_or_set(
        self,
        key: Any,
        default: Any,
        timeout: Any = DEFAULT_TIMEOUT,
        version: int | None = None,
    ) -> Any:
        # The coordinated path in a thread, like every a* method here.
        return await sync_to_async(self.get_or_set, thread_sensitive=True)(
            key, default, timeout=timeout, version=version
        )

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
        # Serialized before anything is written: a value that cannot be
        # raises and the cache keeps what it held, as in Django's backends.
        record = Record.for_value(
            value, None if expires_at == _EXPIRED else expires_at, self._serializer
        )
        if expires_at == _EXPIRED:
            self._chain.delete(key)
            return
        self._chain.write({key: record})

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
            records[final] = Record.for_value(value, expires_at, self._serializer)
        if expires_at == _EXPIRED:
            self._chain.delete_many(list(records))
            return []
        failed = self._chain.write(records)
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
        record = Record.for_value(
            value, None if expires_at == _EXPIRED else expires_at, self._serializer
        )
        if expires_at == _EXPIRED:
            # Django: report whether it *would* have been added, store nothing.
            return not self._chain.has(key)
        return self._chain.add(key, record)

    def incr(self, key: Any, delta: int = 1, version: int | None = None) -> Any:
        return self._chain.incr(self._key(key, version), delta)

    def decr(self, key: Any, delta: int = 1, version: int | None = None) -> Any:
        return self.incr(key, -delta, version=version)

    def touch(
        self, key: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None
    ) -> bool:
        key = self._key(key, version)
        expires_at = self._expires_at(timeout)
        if expires_at == _EXPIRED:
            return self._chain.delete(key)
        return self._chain.touch(key, expires_at)

    def delete(self, key: Any, version: int | None = None) -> bool:
        return self._chain.delete(self._key(key, version))

    def delete_many(self, keys: Iterable[Any], version: int | None = None) -> None:
        finals = [self._key(key, version) for key in keys]
        if finals:
            self._chain.delete_many(finals)

    def clear(self) -> None:
        self._chain.clear(self.namespace)

    def close(self, **kwargs: Any) -> None:
        # Django calls this after every request; tiers keep their shared pools.
        if not isinstance(self._chain, Refusal):
            self._chain.close()

    # -- introspection ---------------------------------------------------------------

    def tier(self, name: str) -> BaseTier:
        """Return the tier called ``name`` (``"l1"``, ``"l2"``...) for raw access.

        Tier methods take the *stored* key (``stored_key``) and speak
        ``Record`` objects (``tier.get(cache.stored_key("k"))`` is a ``Record``
        or ``MISSING``; ``envelope.materialize(record)`` is the value).
        """
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

    def breaker_state(self, name: str) -> str | None:
        """Return ``closed``, ``open`` or ``half_open`` for tier ``name``.

        ``None`` for a tier that cannot fail and so has no breaker (L1).
        """
        breaker = self._chain.by_name[name].breaker
        return None if breaker is None else breaker.state

    def stats(self) -> dict[str, dict[str, Any]]:
        """Return this process's counters per tier, with breaker states."""
        return {slot.name: slot.snapshot() for slot in self._slots}

    def inspect(
        self, key: Any, version: int | None = None, *, values: bool = False
    ) -> dict[str, dict[str, Any]]:
        """Return the tiers holding ``key``: ``{tier: {"ttl": s | None, "size": n}}``.

        For the admin's key inspector: each tier is read directly (no counter,
        no promotion); ``ttl`` is the remaining lifetime (``None`` = never
        expires), ``size`` the pickled value's bytes. A tier that could not
        answer is ``{"error": "unavailable"}``. Values are unpickled only
        with ``values=True`` (``"value"`` in each entry): unpickling runs code.
        """
        return self._chain.inspect(self._key(key, version), values=values)

    @property
    def _expire_info(self) -> Mapping[str, float | None]:
        """LocMemCache's ``{final key: absolute expiry}``, as a read-only view.

        Code (Django's own tests among it) peeks at LocMemCache's private
        ``_expire_info[cache.make_key(key)]`` to see a key's expiry; this view
        answers from the first tier holding the key (``None`` = never expires).
        """
        chain = self._chain
        return ExpiryView(
            find=lambda key: chain.find(self._stored_from_made(key)),
            keys=lambda: chain.keys(self.namespace),
        )

    def check(self) -> list[str]:
        """Return broken invariants of the tiers (empty when healthy)."""
        return self._chain.check()


def _value_of(record: Record | Any) -> Any:
    """Return a record's value; MISSING for a miss or a payload that won't load."""
    if record is MISSING or record is UNAVAILABLE:
        return MISSING
    try:
        return materialize(record)
    except EnvelopeError:
        return MISSING
