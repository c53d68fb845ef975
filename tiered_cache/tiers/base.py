"""The tier contract, documented once (Django's ``BaseCache`` way).

A tier stores ``Record`` objects under *final* keys: the backend has already
applied KEY_PREFIX, VERSION and KEY_FUNCTION, and a tier never changes a key.
Expiry is absolute (``Record.expires_at`` on the backend's clock, ``None`` =
never); a tier must not return an entry whose expiry has passed on that clock.

Errors: a tier raises ``TierUnavailable`` (chained to the cause) for anything
its transport does wrong (connection refused, timeout, disk full, OOM). It
raises nothing for bad stored data: that is a miss, logged and counted in
``stats.rejected``. Programming errors (``TypeError`` and the like) propagate.
The backend alone decides what the caller sees.

Concurrency: one tier object serves every thread of the process (the backend
shares tiers by configuration); methods must be thread-safe.
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from django.core.exceptions import ImproperlyConfigured

from ..envelope import Record, encode, materialize
from ..exceptions import EnvelopeError
from ..resilience import LogThrottle
from ..sentinels import MISSING
from ..stats import TierStats

__all__ = ["COMPRESSORS", "BaseTier"]

COMPRESSORS = ("zlib", "zstd")

logger = logging.getLogger(__name__)
_throttle = LogThrottle()


class BaseTier:
    """One level of the chain.

    Subclasses are built as ``cls(location, params, name=..., clock=...)`` where
    ``params`` is the tier spec (shaped like a CACHES entry). ``OPTIONS`` keys
    every tier understands:

    ``MAX_VALUE_BYTES``
        Values whose pickled payload is larger skip this tier (placement);
        the default is the class's ``default_max_value_bytes``.
    ``COMPRESS_MIN_BYTES``, ``COMPRESSOR``, ``COMPRESS_LEVEL``
        How ``encode`` compresses envelopes: payloads at least that long
        (default ``default_compress_min_bytes``; ``None`` = never) with
        ``"zlib"`` (default) or ``"zstd"`` (the ``[zstd]`` extra).

    Subclasses read their own OPTIONS in ``configure``, not in ``__init__``:
    one constructor signature for every tier.
    """

    #: Visible to other processes (L2, and L3 for processes on one machine).
    #: L1 copies are capped by ``L1_MAX_STALENESS`` when a shared tier exists.
    shared = True
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
    ) -> None:
        self.name = name
        self.location = location
        self.params = params
        self.options: Mapping[str, Any] = params.get("OPTIONS") or {}
        self.clock = clock
        options = self.options
        self.max_value_bytes: int | None = options.get(
            "MAX_VALUE_BYTES", self.default_max_value_bytes
        )
        self.compress_min_bytes: int | None = options.get(
            "COMPRESS_MIN_BYTES", self.default_compress_min_bytes
        )
        self.compressor: str = options.get("COMPRESSOR", "zlib")
        self.compress_level: int | None = options.get("COMPRESS_LEVEL")
        if self.compressor not in COMPRESSORS:
            raise ImproperlyConfigured(
                f"tier {name!r}: COMPRESSOR must be one of {COMPRESSORS}, "
                f"not {self.compressor!r}"
            )
        if self.compressor == "zstd" and importlib.util.find_spec("zstandard") is None:
            raise ImproperlyConfigured(
                f"tier {name!r}: COMPRESSOR 'zstd' needs the zstandard package "
                "(pip install django-tiered-cache[zstd])"
            )
        self.stats = TierStats()
        self.configure()

    def configure(self) -> None:
        """Read the adapter's own OPTIONS; called at the end of ``__init__``."""

    def encode(self, record: Record) -> bytes | int:
        """Return what a shared tier stores for ``record`` (envelope or raw int)."""
        return encode(
            record,
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
        """Return the value for ``key`` or ``default`` (the fast read path)."""
        record = self.get(key)
        if record is MISSING:
            return default
        try:
            return materialize(record)
        except EnvelopeError as exc:
            self.reject(key, exc)
            self.delete(key)
            return default

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
        is not an integer.
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

    def describe(self) -> dict[str, Any]:
        """Return a JSON-able description (admin, ``cache_stats``)."""
        return {"name": self.name, "class": type(self).__name__, "shared": self.shared}

    def reject(self, key: str, reason: object) -> None:
        """Count and log stored data this tier will not serve (a miss)."""
        self.stats.rejected += 1
        if _throttle.allow(f"reject:{self.name}"):
            logger.warning(
                "tier %s: ignoring unreadable entry %r: %s", self.name, key, reason
            )

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"
