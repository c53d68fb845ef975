"""``cached``: a function's result kept in a cache, computed once, refreshed early.

::

    from tiered_cache import cached

    @cached(timeout=300, early_recompute=1.0, stale_if_error=600)
    def sales_report(year: int) -> dict: ...

Keys. ``key(*args, **kwargs)`` names the entry when given. Otherwise the key is
``cached:<module>.<qualname>:<digest>``, where the digest (SHA-256, 32 hex
digits) covers the arguments in a canonical form that is the same in every
process: ``None``, booleans, numbers, strings, bytes, enums, dates and times,
``Decimal``, ``UUID``, saved Django model instances (by label and primary
key), and tuples, lists, dicts and sets of those (keyword order and set order
do not matter). Anything else raises ``TypeError``: its ``repr`` may differ
between processes (a memory address) and would quietly give one key per
process, so pass ``key=`` instead (methods: ``self`` is such an argument). The
name part is cut to at most 120 characters, so keys stay bounded.

Records. Under its key the decorator stores a tuple ``(value, delta, soft
expiry)``: the value, how long computing it took (seconds), and the absolute
time (on the cache's clock) at which it stops being fresh, ``timeout``
seconds after it was computed. The cache entry itself lives ``timeout +
stale_if_error`` seconds, so the last value outlives its freshness when a
stale value may be served. Read such a key with the decorated function, not
with ``cache.get``.

Coordination. A missing or no longer fresh value is computed through
``tiered_cache.stampede``: once per key per process (single flight) and, on a
``TieredCache`` whose tiers hold leases (L2), once per deployment. On any
other Django cache, single flight per process only.

Early recomputation (``early_recompute=beta``): XFetch, from A. Vattani, F.
Chakraborty, G. Lipovetsky, "Optimal Probabilistic Cache Stampede
Prevention", VLDB 2015. On a hit, the caller recomputes the value now, before
it expires, when::

    now - delta * beta * log(random()) >= soft expiry

with ``random()`` uniform in (0, 1]. A value that took longer to compute
(``delta``) is refreshed earlier; ``beta`` > 1 favours earlier refreshes, < 1
later ones; 1 is the paper's optimum. The chance rises as expiry nears, so
one caller among many refreshes and the others keep getting the current
value without waiting: a refresh never blocks a caller that has a fresh
value. It is skipped when a thread of this process or a lease holder
elsewhere is already refreshing, or when the lease tier does not answer. A
refresh that raises is logged and counted, and the caller gets the current
value.

Stale if error (``stale_if_error=seconds``, off by default): when computing a
value raises, or when the lease tier (the authority) does not answer and
this process would have to compute without coordination, the last value is
served if it expired at most that many seconds ago. The error is logged and
counted; the next call tries again.
"""

from __future__ import annotations

import functools
import inspect
import logging
import math
import random
import time
from collections.abc import Callable
from typing import Any

from django.core.cache import BaseCache, caches
from django.core.cache.backends.base import DEFAULT_TIMEOUT

from . import stampede
from .backend import TieredCache
from .function_keys import bounded_name, default_key
from .resilience import LogThrottle
from .sentinels import MISSING

__all__ = ["CachedStats", "cached", "default_key"]

logger = logging.getLogger(__name__)
_throttle = LogThrottle()

# Indirections the tests replace (a fake random draw, a fake stopwatch).
_timer = time.perf_counter


def _random() -> float:
    """Return a uniform draw in (0, 1] (``log`` of it is finite)."""
    return 1.0 - random.random()


class CachedStats:
    """Counters of one decorated function in this process (plain integers).

    ``hits``: fresh values served; ``misses``: calls that found no fresh
    value; ``computations``: values computed and stored (early ones too);
    ``early``: early recomputations (XFetch); ``stale``: stale values served;
    ``errors``: computations that raised.
    """

    __slots__ = ("hits", "misses", "computations", "early", "stale", "errors")

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Set every counter back to zero."""
        for name in self.__slots__:
            setattr(self, name, 0)

    def snapshot(self) -> dict[str, int]:
        """Return the counters as a plain dict."""
        return {name: getattr(self, name) for name in self.__slots__}


def cached(
    timeout: Any = DEFAULT_TIMEOUT,
    key: Callable[..., Any] | None = None,
    cache: str | BaseCache = "default",
    early_recompute: float | bool | None = None,
    stale_if_error: float | None = None,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Cache the results of the decorated function (see the module docstring).

    :param timeout: seconds a value stays fresh; the cache's default timeout
        when omitted, ``None`` for ever, ``0`` to compute on every call
        (still once for concurrent callers).
    :param key: a callable taking the function's arguments and returning its
        cache key; by default the function's qualified name and a digest of
        the arguments.
    :param cache: a ``CACHES`` alias, or a cache object.
    :param early_recompute: ``beta`` of XFetch (``True`` = 1.0), or
        ``None``/``False`` for no early recomputation.
    :param stale_if_error: seconds past its freshness that the last value may
        be served when computing fails or the lease tier does not answer;
        ``None`` (default) never serves a stale value.

    The decorated function gains ``cache_key(*args, **kwargs)`` (its key),
    ``invalidate(*args, **kwargs)`` (delete the entry) and ``stats``
    (``CachedStats``).
    """
    if callable(timeout) and not isinstance(timeout, (int, float)):
        raise TypeError("use @cached(...) with parentheses, e.g. @cached(timeout=60)")
    timeout = _check_timeout(timeout)
    if key is not None and not callable(key):
        raise TypeError(f"key must be a callable or None, not {key!r}")
    if not isinstance(cache, (str, BaseCache)):
        raise TypeError(f"cache must be a CACHES alias or a cache, not {cache!r}")
    beta = _check_beta(early_recompute)
    grace = _check_seconds("stale_if_error", stale_if_error)

    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        if inspect.iscoroutinefunction(func):
            raise TypeError("cached() decorates plain functions, not coroutines")
        rules = _Rules(func, timeout, key, cache, beta, grace)

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            return _Call(rules, args, kwargs).run()

        def cache_key(*args: Any, **kwargs: Any) -> Any:
            """Return the cache key of this call (before ``make_key``)."""
            return rules.key_of(args, kwargs)

        def invalidate(*args: Any, **kwargs: Any) -> bool:
            """Delete the entry of this call; return whether there was one."""
            return _resolve(cache).delete(rules.key_of(args, kwargs))

        wrapper.cache_key = cache_key  # type: ignore[attr-defined]
        wrapper.invalidate = invalidate  # type: ignore[attr-defined]
        wrapper.stats = rules.stats  # type: ignore[attr-defined]
        return wrapper

    return decorate


class _Rules:
    """What ``cached(...)`` was given for one function, and its counters."""

    def __init__(
        self,
        func: Callable[..., Any],
        timeout: Any,
        key: Callable[..., Any] | None,
        cache: str | BaseCache,
        beta: float | None,
        grace: float,
    ) -> None:
        self.func = func
        self.name = bounded_name(f"{func.__module__}.{func.__qualname__}")
        self.timeout = timeout
        self.key = key
        self.cache = cache
        self.beta = beta
        self.grace = grace
        self.stats = CachedStats()

    def key_of(self, args: tuple, kwargs: dict) -> Any:
        if self.key is not None:
            return self.key(*args, **kwargs)
        return default_key(self.name, args, kwargs)

    def log(self, what: str, exc: BaseException | None) -> None:
        if _throttle.allow(f"{self.name}:{what}"):
            logger.warning("cached %s: %s", self.name, what, exc_info=exc)


class _Call:
    """One call of a decorated function: its cache, key and coordination."""

    def __init__(self, rules: _Rules, args: tuple, kwargs: dict) -> None:
        self.rules = rules
        self.args = args
        self.kwargs = kwargs
        backend = self.backend = _resolve(rules.cache)
        self.key = rules.key_of(args, kwargs)
        timeout = rules.timeout
        #: Seconds a new value stays fresh (``None``: for ever).
        self.fresh_for = (
            backend.default_timeout if timeout is DEFAULT_TIMEOUT else timeout
        )
        #: The entry read first, and the last one seen no longer fresh.
        self.current: Any = MISSING
        self.stale: Any = MISSING

    @functools.cached_property
    def clock(self) -> Callable[[], float]:
        """Return the clock of soft expiries: the cache's own (CLOCK) if it has one."""
        backend = self.backend
        return backend.options.clock if isinstance(backend, TieredCache) else time.time

    def coordinate(self) -> tuple[str, str | None, float | None, float]:
        """Return the flight key, lease key, lease seconds and longest poll.

        Built only on a miss or a refresh: a hit does not pay for them.
        """
        backend = self.backend
        if not isinstance(backend, TieredCache):
            # An alias: one flight table for every thread's instance of it.
            cache = self.rules.cache
            scope = cache if isinstance(cache, str) else id(backend)
            self.coordinator = stampede.local_coordinator(scope)
            return backend.make_key(self.key), None, None, 0.05
        options = backend.options.stampede
        stored = backend.stored_key(self.key)
        self.coordinator = stampede.coordinator_for(backend._chain)
        return (
            stored,
            stampede.lease_key(backend.namespace, stored),
            stampede.lease_seconds(
                options.lease_seconds, self.fresh_for, backend.default_timeout
            ),
            options.max_poll_seconds,
        )

    def run(self) -> Any:
        rules = self.rules
        entry = self.current = self.read()
        if entry is not MISSING:
            rules.stats.hits += 1
            _, delta, soft = entry
            if rules.beta is not None and soft is not None:
                now = self.clock()
                if now - delta * rules.beta * math.log(_random()) >= soft:
                    entry = self.refresh_early()
            return entry[0]
        rules.stats.misses += 1
        flight, lease_key, lease_seconds, max_poll = self.coordinate()
        entry = self.coordinator.run(
            flight,
            self.read_again,
            self.produce,
            lease_key=lease_key,
            lease_seconds=lease_seconds,
            max_poll=max_poll,
        )
        return entry[0]

    def read(self) -> Any:
        """Return the fresh entry, or MISSING (remembering a stale one)."""
        return self._fresh(self.backend.get(self.key, MISSING))

    def _fresh(self, entry: Any) -> Any:
        if not _is_entry(entry):
            return MISSING
        soft = entry[2]
        if soft is None or self.clock() < soft:
            return entry
        self.stale = entry
        return MISSING

    def read_again(self) -> Any:
        """``read`` for the flight's leader: its first look was counted (issue 8)."""
        backend = self.backend
        if not isinstance(backend, TieredCache):
            return self.read()
        entry = backend._peek(backend.stored_key(self.key), MISSING)
        return self._fresh(entry)

    def produce(self, outage: bool) -> tuple:
        """Compute, store and return a new entry (or serve a stale one)."""
        rules = self.rules
        if outage and self.stale_usable():
            rules.stats.stale += 1
            _count_stale(self.backend)
            rules.log("the lease tier did not answer; serving the last value", None)
            return self.stale
        started = _timer()
        try:
            value = rules.func(*self.args, **self.kwargs)
        except Exception as exc:
            rules.stats.errors += 1
            if not self.stale_usable():
                raise
            rules.stats.stale += 1
            _count_stale(self.backend)
            rules.log("computing the value raised; serving the last value", exc)
            return self.stale
        delta = float(_timer() - started)
        fresh_for = self.fresh_for
        if fresh_for is None:
            entry = (value, delta, None)
            stored_for = None
        else:
            entry = (value, delta, float(self.clock() + fresh_for))
            stored_for = fresh_for + rules.grace if fresh_for > 0 else rules.grace
        self.backend.set(self.key, entry, stored_for)
        rules.stats.computations += 1
        return entry

    def refresh_early(self) -> tuple:
        """XFetch fired: recompute now unless someone already does; never raise.

        Return the new entry, or the current one when nothing was recomputed.
        """
        current = self.current
        self.stale = MISSING  # the current value is fresh: nothing stale to serve
        try:
            flight, lease_key, lease_seconds, _ = self.coordinate()
            entry = self.coordinator.refresh(
                flight, self.produce, lease_key=lease_key, lease_seconds=lease_seconds
            )
        except Exception as exc:
            self.rules.log("early recomputation raised; serving the value", exc)
            return current
        if entry is MISSING:
            return current
        self.rules.stats.early += 1
        return entry

    def stale_usable(self) -> bool:
        stale = self.stale
        if stale is MISSING or not self.rules.grace or stale[2] is None:
            return False
        return self.clock() < stale[2] + self.rules.grace


def _resolve(cache: str | BaseCache) -> BaseCache:
    return caches[cache] if isinstance(cache, str) else cache


def _count_stale(backend: Any) -> None:
    """Count a stale value served in the cache's metrics (a TieredCache's)."""
    chain = getattr(backend, "_chain", None)
    stats = getattr(chain, "stats", None)
    if stats is not None and hasattr(stats, "stale_served"):
        stats.stale_served += 1


def _is_entry(entry: Any) -> bool:
    return (
        type(entry) is tuple
        and len(entry) == 3
        and type(entry[1]) is float
        and (entry[2] is None or type(entry[2]) is float)
    )


def _check_timeout(timeout: Any) -> Any:
    if timeout is DEFAULT_TIMEOUT or timeout is None:
        return timeout
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise TypeError(f"timeout must be a number of seconds or None, not {timeout!r}")
    if math.isnan(timeout):
        raise ValueError("timeout must not be NaN")
    if math.isinf(timeout):
        return None
    return max(timeout, 0)


def _check_beta(beta: Any) -> float | None:
    if beta is None or beta is False:
        return None
    if beta is True:
        return 1.0
    return _check_seconds("early_recompute", beta) or None


def _check_seconds(name: str, value: Any) -> float:
    if value is None:
        return 0.0
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not value >= 0
        or not math.isfinite(value)
    ):
        raise ValueError(f"{name} must be a non-negative, finite number, not {value!r}")
    return float(value)
