"""The tier contract, documented once (Django's ``BaseCache`` way).

A tier stores ``Record`` objects under *final* keys: the backend has already
applied KEY_PREFIX, VERSION and KEY_FUNCTION, and a tier never changes a key.
Expiry is absolute (``Record.expires_at`` on the backend's clock, ``None`` =
never); a tier must not return an entry that is not ``Record.is_live`` on
that clock.

Roles. A tier declares what it is, and the backend arranges the chain from
those declarations alone (see ``tiered_cache.chain``):

* ``scope``: who sees its entries, ``PROCESS`` (L1), ``MACHINE`` (L3) or
  ``DEPLOYMENT`` (L2). Writes go widest scope first.
* ``may_be_authority``: whether it may hold the authoritative copy, the one
  written first and where ``add``/``incr`` are atomic. The authority of a value
  is the widest tier that may be one and accepts the value.
* ``fallible``: whether its calls can fail (network, disk). Fallible tiers are
  guarded by a circuit breaker; an infallible top tier (local memory) is read
  on the backend's lock-free fast path.
* ``holds_copies(widest)``: whether its entries are copies of a wider tier's
  in this chain, which go stale when another process or machine writes: they
  need invalidation and are trusted only for ``max_staleness`` seconds
  (``bound_staleness``). The chain says which records are copies
  (``copies_of``): those a wider tier would hold.
* ``holds_leases``: whether it can hold *leases* (``acquire_lease``,
  ``release_lease``), the short-lived locks that let one process of the whole
  scope compute a missing value while the others wait for it
  (``tiered_cache.stampede``). Optional; the default tier holds none.

Errors: a tier raises ``TierUnavailable`` (chained to the cause) for anything
its transport does wrong (connection refused, timeout, disk full, OOM). It
raises nothing for bad stored data: that is a miss, logged and counted in
``stats.rejected``. Programming errors (``TypeError`` and the like) propagate.
The backend alone decides what the caller sees.

Counters: the backend counts what a call returned (hits, misses, sets,
deletes, promotions, errors, refusals) in ``stats``; a tier counts only what
happens inside it (evictions, expirations, rejected entries). The one
exception is the fast path's ``get_value``, which counts its own hit or miss.

Concurrency: one tier object serves every thread of the process (the backend
shares tiers by configuration); methods must be thread-safe.
"""

from __future__ import annotations

import enum
import importlib.util
import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any, ClassVar

from django.core.exceptions import ImproperlyConfigured

from ..envelope import Record, encode, materialize
from ..exceptions import (
    BadValue,
    BadValues,
    EnvelopeError,
    RefusedSerializer,
    UntrustedRecord,
)
from ..resilience import LogThrottle
from ..sentinels import MISSING
from ..serializers import PICKLE, Serializer
from ..stats import TierStats
from .optional import OptionalMethods, Stream, StreamState
from .values import (
    INT_OR_NONE,
    NON_NEGATIVE_INT_OR_NONE,
    POSITIVE_INT_OR_NONE,
    Rule,
    option_problems,
)

__all__ = [
    "COMPRESSORS",
    "BaseTier",
    "Count",
    "Scope",
    "Stream",
    "StreamState",
    "implements",
]

COMPRESSORS = ("zlib", "zstd")

logger = logging.getLogger(__name__)
_throttle = LogThrottle()


_BASE_RULES: Mapping[str, Rule] = {
    "MAX_VALUE_BYTES": POSITIVE_INT_OR_NONE,
    "COMPRESS_MIN_BYTES": NON_NEGATIVE_INT_OR_NONE,
    "COMPRESS_LEVEL": INT_OR_NONE,
}


class Count(int):
    """An ``incr`` result that also says when the counter expires, and the
    stamp it was stored with (``None``: none, a raw int in Redis).

    The chain keeps the count in the copy tiers with that expiry, so that a
    counter outlives an outage of its authority (docs/design.rst, "Counters").
    A tier that returns a plain ``int`` gets its copies dropped instead.
    """

    expires_at: float | None
    stamp: int | None

    def __new__(
        cls, value: int, expires_at: float | None, stamp: int | None = None
    ) -> Count:
        count = super().__new__(cls, value)
        count.expires_at = expires_at
        count.stamp = stamp
        return count


class Scope(enum.IntEnum):
    """Who sees a tier's entries; a wider scope is more authoritative."""

    PROCESS = 1
    MACHINE = 2
    DEPLOYMENT = 3

    def __str__(self) -> str:
        return self.name.lower()


class BaseTier(OptionalMethods):
    """One level of the chain.

    Subclasses are built as ``cls(location, params, name=..., clock=...,
    serializer=...)`` where ``params`` is the tier spec (shaped like a CACHES
    entry) and ``serializer`` the cache's ``SERIALIZER``
    (``tiered_cache.serializers``): a tier reads envelopes with
    ``decode(data, key, self.serializer)``, which refuses what that
    serializer does not read, and ``encode`` serializes with it. ``OPTIONS``
    keys every tier understands:

    ``MAX_VALUE_BYTES``
        Values whose pickled payload is larger skip this tier (placement);
        the default is the class's ``default_max_value_bytes``.
    ``COMPRESS_MIN_BYTES``, ``COMPRESSOR``, ``COMPRESS_LEVEL``
        How ``encode`` compresses envelopes: payloads at least that long
        (default ``default_compress_min_bytes``; ``None`` = never) with
        ``"zlib"`` (default) or ``"zstd"`` (the ``[zstd]`` extra).

    Subclasses read their own OPTIONS in ``configure``, not in ``__init__``:
    one constructor signature for every tier. Every key of ``OPTIONS`` must be
    known (``known_options``) and every value usable (``spec_problems``);
    ``validate_spec`` says so before anything is built, for ``manage.py
    check`` as much as for the constructor.
    """

    #: Who sees this tier's entries (see the module docstring).
    scope: ClassVar[Scope] = Scope.DEPLOYMENT
    #: May hold the authoritative copy of a value.
    may_be_authority: ClassVar[bool] = True
    #: Calls can fail: guarded by a circuit breaker, never on the fast path.
    fallible: ClassVar[bool] = True
    #: Implements ``acquire_lease``/``release_lease`` (stampede protection).
    holds_leases: ClassVar[bool] = False
    #: The OPTIONS keys this tier understands; subclasses add theirs.
    known_options: ClassVar[frozenset[str]] = frozenset(
        {"MAX_VALUE_BYTES", "COMPRESS_MIN_BYTES", "COMPRESSOR", "COMPRESS_LEVEL"}
    )
    #: Known OPTIONS that have no effect here (``manage.py check`` warns).
    ineffective_options: ClassVar[frozenset[str]] = frozenset()
    #: Default of ``OPTIONS["MAX_VALUE_BYTES"]`` (``None``: no limit).
    default_max_value_bytes: int | None = None
    #: Default of ``OPTIONS["COMPRESS_MIN_BYTES"]`` (``None``: never compress).
    default_compress_min_bytes: int | None = None

    def __init__(
        self,
        location: Any,
        params: Mapping[str, Any],
        *,
        name: str,
        clock: Callable[[], float],
        serializer: Serializer = PICKLE,
    ) -> None:
        self.name = name
        self.location = location
        self.params = params
        self.options: Mapping[str, Any] = params.get("OPTIONS") or {}
        self.clock = clock
        #: The cache's SERIALIZER: what ``decode`` may read, what ``encode`` writes.
        self.serializer = serializer
        #: Seconds a copy is trusted after it is stored (``bound_staleness``).
        self.max_staleness: float | None = None
        #: Which records here copy a wider tier's (``copies_of``); None: none.
        self.copy_of: Callable[[Record], bool] | None = None
        options = self.options
        self.validate_spec(location, options, name=name)
        self.max_value_bytes: int | None = options.get(
            "MAX_VALUE_BYTES", self.default_max_value_bytes
        )
        self.compress_min_bytes: int | None = options.get(
            "COMPRESS_MIN_BYTES", self.default_compress_min_bytes
        )
        self.compressor: str = options.get("COMPRESSOR", "zlib")
        self.compress_level: int | None = options.get("COMPRESS_LEVEL")
        self.stats = TierStats()
        self.configure()

    def configure(self) -> None:
        """Read the adapter's own OPTIONS; called at the end of ``__init__``."""

    @classmethod
    def validate_options(cls, options: Mapping[str, Any], *, name: str) -> None:
        """Raise ``ImproperlyConfigured`` for an OPTIONS key this tier ignores.

        A misspelled key (``MAX_BYTE``) must not be silently dropped.
        Subclasses that also take a library's own settings extend this.
        """
        unknown = sorted(str(key) for key in options if key not in cls.known_options)
        if unknown:
            raise ImproperlyConfigured(
                f"tier {name!r}: unknown OPTIONS {unknown}; "
                f"{cls.__name__} knows {sorted(cls.known_options)}"
            )

    @classmethod
    def validate_spec(
        cls, location: Any, options: Mapping[str, Any], *, name: str
    ) -> None:
        """Raise for unknown OPTIONS keys, then ``BadValues`` for bad values.

        ``conf.parse_options`` (hence ``manage.py check``) and the constructor
        both call this, so a value the check accepts is one the tier takes.
        """
        cls.validate_options(options, name=name)
        problems = cls.spec_problems(location, options, name=name)
        if problems:
            raise BadValues(problems)

    @classmethod
    def spec_problems(
        cls, location: Any, options: Mapping[str, Any], *, name: str
    ) -> list[BadValue]:
        """Return every bad value of LOCATION and OPTIONS; subclasses extend it."""
        problems = option_problems(name, options, _BASE_RULES)
        compressor = options.get("COMPRESSOR", "zlib")
        if compressor not in COMPRESSORS:
            problems.append(
                BadValue(
                    name,
                    "OPTIONS['COMPRESSOR']",
                    compressor,
                    f"one of {', '.join(map(repr, COMPRESSORS))}",
                )
            )
        elif compressor == "zstd" and importlib.util.find_spec("zstandard") is None:
            problems.append(
                BadValue(
                    name,
                    "OPTIONS['COMPRESSOR']",
                    compressor,
                    "'zlib' unless the zstandard package is installed (pip "
                    "install 'django-tiered-cache[zstd]')",
                )
            )
        return problems

    # -- roles ------------------------------------------------------------

    def holds_copies(self, widest: Scope) -> bool:
        """Return whether entries here copy a wider tier's (``widest`` in the chain).

        Such copies go stale when another process or machine writes, so they
        need invalidation and a staleness bound.
        """
        return self.scope < widest

    def bound_staleness(self, seconds: float | None) -> bool:
        """Trust a copy at most ``seconds`` after it is stored (``None``: no bound).

        Return whether this tier enforces the bound; the default cannot.
        """
        return False

    def copies_of(self, is_copy: Callable[[Record], bool]) -> None:
        """Learn which records here copy a wider tier's (``is_copy``); the chain
        calls it for tiers that hold copies. The others (a value too big for
        the wider tier) are this tier's own: it is their authority.
        """
        self.copy_of = is_copy

    def encode(self, key: str, record: Record) -> bytes | int:
        """Return what a shared tier stores for ``record`` (envelope or raw int)
        under the final key ``key`` (the envelope's tag binds it)."""
        return encode(
            record,
            key,
            serializer=self.serializer,
            compress_min_bytes=self.compress_min_bytes,
            compressor=self.compressor,
            compress_level=self.compress_level,
        )

    # -- placement --------------------------------------------------------

    def accepts(self, record: Record) -> bool:
        """Return whether this tier takes ``record`` (size limits)."""
        limit = self.max_value_bytes
        return limit is None or record.size <= limit

    # -- reads --------------------------------------------------------------

    def get(self, key: str) -> Record | Any:
        """Return the live ``Record`` for ``key`` or ``MISSING``.

        The record's ``value`` may still need unpickling: read it through
        ``envelope.materialize``. ``expires_at`` is the absolute expiry, so the
        caller can promote the record with its remaining lifetime.
        """
        raise NotImplementedError

    def get_value(self, key: str, default: Any) -> Any:
        """Return the value for ``key`` or ``default`` (the fast read path).

        The backend calls it only on a top tier that cannot fail, without a
        slot, so it counts its own hit or miss.
        """
        record = self.get(key)
        if record is MISSING:
            self.stats.misses += 1
            return default
        try:
            value = materialize(record)
        except EnvelopeError as exc:
            self.reject(key, exc)
            self.delete(key)
            return default
        self.stats.hits += 1
        return value

    def get_many(self, keys: Iterable[str]) -> dict[str, Record]:
        """Return ``{key: Record}`` for the keys present; absent keys are left out."""
        found = {}
        for key in keys:
            record = self.get(key)
            if record is not MISSING:
                found[key] = record
        return found

    def has_key(self, key: str) -> bool:
        """Return whether ``key`` holds a live entry."""
        return self.get(key) is not MISSING

    # -- writes -------------------------------------------------------------

    def set(self, key: str, record: Record) -> None:
        """Store ``record`` under ``key``, replacing any entry."""
        raise NotImplementedError

    def set_many(self, records: Mapping[str, Record]) -> None:
        """Store every record; the default loops over ``set``."""
        for key, record in records.items():
            self.set(key, record)

    def add(self, key: str, record: Record) -> bool:
        """Store ``record`` only if ``key`` holds no live entry; atomic here.

        Return whether it was stored.
        """
        raise NotImplementedError

    def delete(self, key: str) -> bool:
        """Remove ``key``; return whether a live entry was there."""
        raise NotImplementedError

    def delete_many(self, keys: Iterable[str]) -> None:
        """Remove every key; the default loops over ``delete``."""
        for key in keys:
            self.delete(key)

    def touch(self, key: str, expires_at: float | None) -> bool:
        """Give ``key`` a new absolute expiry; return whether it was present."""
        raise NotImplementedError

    def incr(self, key: str, delta: int) -> int:
        """Add ``delta`` to the integer at ``key`` atomically; return the result.

        Raise ``ValueError`` when the key is absent, ``TypeError`` when the value
        is not an integer. A ``Count`` (the result with its expiry) lets the
        chain keep copies of the counter.
        """
        raise NotImplementedError

    def clear(self, namespace: str) -> int:
        """Remove every key starting with ``namespace``; return how many (or -1).

        Tiers are shared by caches with other prefixes and by other
        applications: never flush a whole database here.
        """
        raise NotImplementedError

    # -- lifecycle ----------------------------------------------------------

    def close(self) -> None:
        """Release per-request resources; shared pools stay open."""

    # -- coherence ------------------------------------------------------------

    def invalidate(self, key: str, stamp: int) -> bool:
        """Drop the copy of ``key`` if it is older than ``stamp``; return whether.

        A copy written at ``stamp`` or later stays (a late message never drops
        a newer value), and the tier remembers ``stamp`` for a while so that a
        promotion racing the message cannot install the older value after it.
        Tiers that hold copies (``holds_copies``) implement it.
        """
        raise NotImplementedError

    def invalidate_all(self, before: float | None = None) -> None:
        """Drop every copy (the bus missed messages it cannot replay).

        ``before`` (the backend's clock; default now): copies made since may
        stay (a tier that cannot tell drops them too).

        Never raises, and is called even while the tier's breaker is open: a
        tier whose copies outlive the process stops trusting them in memory at
        once and makes that last (``save_position``) when it can.
        """
        raise NotImplementedError

    def keys(self, namespace: str) -> Iterable[str]:
        """Return the keys held under ``namespace`` (expired ones may be among them).

        Tiers that cannot list their keys cheaply raise ``NotImplementedError``.
        """
        raise NotImplementedError

    def check(self) -> list[str]:
        """Return broken invariants of this tier (empty when healthy); tests call it."""
        return []

    def usage(self) -> dict[str, int] | None:
        """Return ``{"bytes": n, "entries": n}`` held by this tier, or ``None``.

        Read by the metrics flush every few seconds, never on a cache call:
        only tiers that know both numbers without a scan answer (local
        memory); a shared tier whose keys mix with other caches' returns
        ``None``, as does one that would have to count.
        """
        return None

    def describe(self) -> dict[str, Any]:
        """Return a JSON-able description (admin, ``cache_stats``)."""
        return {
            "name": self.name,
            "class": type(self).__name__,
            "scope": str(self.scope),
            "may_be_authority": self.may_be_authority,
            "max_staleness": self.max_staleness,
        }

    def reject(self, key: str, reason: object) -> None:
        """Count and log stored data this tier will not serve (a miss).

        Data that fails authentication (``UntrustedRecord``: forged, copied
        from another key, foreign, truncated) is also ``poison_rejected``, and
        logged under its own burst: it may be an attack, or a SECRET_KEY
        changed without SECRET_KEY_FALLBACKS. A record written by a serializer
        this cache does not read (``RefusedSerializer``) has its own burst too.
        """
        self.stats.rejected += 1
        if isinstance(reason, RefusedSerializer):
            if _throttle.allow(f"serializer:{self.name}"):
                logger.warning(
                    "tier %s: refusing the entry at %r: %s; a miss. Many at "
                    "once: processes with another SERIALIZER share these keys "
                    "(give them another KEY_PREFIX), or someone holding "
                    "SECRET_KEY wrote it",
                    self.name,
                    key,
                    reason,
                )
            return
        if isinstance(reason, UntrustedRecord):
            self.stats.poison_rejected += 1
            if _throttle.allow(f"poison:{self.name}"):
                logger.warning(
                    "tier %s: refusing an entry not signed for %r by this "
                    "deployment (%s); a miss, never unpickled. Many at once: "
                    "someone else writes here, or SECRET_KEY changed without "
                    "the old key in SECRET_KEY_FALLBACKS",
                    self.name,
                    key,
                    reason,
                )
            return
        if _throttle.allow(f"reject:{self.name}"):
            logger.warning(
                "tier %s: ignoring unreadable entry %r: %s", self.name, key, reason
            )

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"


def implements(tier: BaseTier, method: str) -> bool:
    """Return whether ``tier`` overrides ``BaseTier.method`` (an optional part)."""
    return getattr(type(tier), method) is not getattr(BaseTier, method)
