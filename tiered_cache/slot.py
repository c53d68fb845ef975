"""``Slot``: a tier as the backend calls it, and the one call path into it.

A slot owns the tier's circuit breaker, the fail-open decision, the error log
lines (once per burst) and every counter of a call's outcome. Nothing else
calls a tier, so nothing else can forget to count, log or consult the breaker
(the chain's fast path, documented in ``tiered_cache.chain``, is the one
exception).
"""

from __future__ import annotations

import logging
import threading
import time
from bisect import bisect_left as _bisect
from collections.abc import Collection, Mapping
from typing import Any

from .envelope import MISSING_VALUE, Record, materialize
from .exceptions import CircuitOpen, EnvelopeError, TierUnavailable
from .resilience import CLOSED, CircuitBreaker, LogThrottle
from .sentinels import MISSING, REFUSED, UNAVAILABLE
from .stats import LATENCY_BUCKETS_MS, Latency
from .tiers.base import BaseTier

__all__ = ["Slot"]

logger = logging.getLogger(__name__)

_NOTHING: Collection[str] = ()
_perf_counter = time.perf_counter


class Slot:
    """A tier with its breaker, fail-open decision, log throttle and counters."""

    __slots__ = (
        "tier",
        "name",
        "stats",
        "breaker",
        "fail_open",
        "timed",
        "_log",
        "_failing",
        "_refusal",
    )

    def __init__(
        self,
        tier: BaseTier,
        breaker: CircuitBreaker | None,
        *,
        fail_open: bool,
        log_throttle: LogThrottle,
        timed: bool = False,
    ) -> None:
        self.tier = tier
        self.name = tier.name
        self.stats = tier.stats
        #: ``None`` for a tier that cannot fail: there is nothing to guard.
        self.breaker = breaker
        self.fail_open = fail_open
        #: Time every call into the tier (``stats.latency``): metrics are on
        #: and the tier leaves the process, so a clock pair is a small part
        #: of the call. Local memory is never timed (its hit is the budget).
        self.timed = timed and tier.fallible
        self._log = log_throttle
        #: A failure was logged and no success since: the next one is logged too.
        self._failing = False
        #: Per thread: whether the last failure was a refusal (``attempt``).
        self._refusal = threading.local()

    # -- the one call path -----------------------------------------------------

    def call(self, op: str, *args: Any) -> Any:
        """Run ``tier.<op>(*args)``; ``UNAVAILABLE`` when it could not answer.

        With FAIL_OPEN off, the ``TierUnavailable`` (or ``CircuitOpen``)
        reaches the caller instead, chained to its cause.
        """
        breaker = self.breaker
        if breaker is not None and breaker.state != CLOSED and not breaker.allow():
            self.stats.skipped += 1
            if self.fail_open:
                return UNAVAILABLE
            raise CircuitOpen(self.name, op)
        try:
            if self.timed:
                started = _perf_counter()
                try:
                    result = getattr(self.tier, op)(*args)
                finally:
                    # TierStats.timed, inlined: this is the L2-hit path.
                    ms = (_perf_counter() - started) * 1000.0
                    latency = self.stats.latency.get(op)
                    if latency is None:
                        latency = self.stats.latency[op] = Latency()
                    latency.counts[_bisect(LATENCY_BUCKETS_MS, ms)] += 1
                    latency.total_ms += ms
            else:
                result = getattr(self.tier, op)(*args)
        except TierUnavailable as exc:
            self._failed(op, exc)
            if self.fail_open:
                return UNAVAILABLE
            raise
        if breaker is not None and not breaker.quiet:
            breaker.record_success()
        if self._failing:
            self._answered_again(op)
        return result

    def attempt(self, op: str, *args: Any) -> Any:
        """``call``, but ``REFUSED`` when the tier answered and refused.

        For changes whose caller must not report success while the tier
        still serves the older value (``delete``, ``add``; docs/faults.rst
        #8): a refusal is not an outage, and the journal does not make it
        right at once.
        """
        refusal = self._refusal
        refusal.alive = False
        result = self.call(op, *args)
        if result is UNAVAILABLE and refusal.alive:
            return REFUSED
        return result

    def _answered_again(self, op: str) -> None:
        # The failure was a WARNING; so is its end, once (a breaker that
        # opened logs its own closing).
        self._failing = False
        if self._log.allow(f"{self.name}:recovered"):
            logger.warning("cache tier %s answered again (%s)", self.name, op)

    def _failed(self, op: str, exc: TierUnavailable) -> None:
        if exc.busy:
            self._busy(op, exc)
            return
        self._refusal.alive = exc.alive
        breaker = self.breaker
        if breaker is not None:
            if exc.alive:
                # It answered (OOM, disk full): reachable, so the breaker stays
                # closed and reads keep using the tier.
                breaker.record_success()
            else:
                breaker.record_failure()
        self.stats.error(exc.kind)
        self._failing = True
        if self._log.allow(f"{self.name}:{op}:{exc.kind}"):
            logger.warning(
                "cache tier %s failed during %s [%s] (%s); %s",
                self.name,
                op,
                exc.kind,
                exc.__cause__ or exc,
                "continuing without it" if self.fail_open else "raising",
            )

    def _busy(self, op: str, exc: TierUnavailable) -> None:
        # Back-pressure, not a fault: the tier was never asked, so neither the
        # breaker nor the failure log hears of it (docs/faults.rst #12).
        self.stats.busy += 1
        if not self._log.allow(f"{self.name}:busy"):
            return
        if exc.kind != "pool":  # another queue of this process (the disk tier's)
            logger.warning(
                "cache tier %s: busy during %s (%s); skipped for this call, the "
                "tier is not marked failing",
                self.name,
                op,
                exc,
            )
        else:
            logger.warning(
                "cache tier %s: no free connection in time during %s (%s); "
                "a miss for this call, the tier is not marked failing. Many at "
                "once mean the pool is too small for this process's concurrency "
                "(CONNECTION_POOL_KWARGS max_connections / timeout)",
                self.name,
                op,
                exc.__cause__ or exc,
            )

    # -- counted operations ------------------------------------------------------

    def get(self, key: str) -> Record | Any:
        """Return the record at ``key`` with its value unpickled, or a sentinel."""
        return self.counted(key, self.call("get", key))

    def get_many(self, keys: list[str]) -> dict[str, Record] | Any:
        """Return ``{key: record}`` of the readable hits, or ``UNAVAILABLE``."""
        records = self.call("get_many", keys)
        if records is UNAVAILABLE:
            return UNAVAILABLE
        return self.counted_many(keys, records)

    def counted(self, key: str, record: Record | Any) -> Record | Any:
        """Count a record fetched with ``call("get")``; return it unpickled.

        The second half of ``get``, and on its own the chain's miss path, which
        looks at a record before deciding that it is a hit (``Chain.read_below``).
        """
        if record is UNAVAILABLE:
            return UNAVAILABLE
        if record is MISSING:
            self.stats.misses += 1
            return MISSING
        if record.value is MISSING_VALUE and not self._readable(key, record):
            return MISSING
        self.stats.hits += 1
        return record

    def counted_many(
        self, keys: Collection[str], records: Mapping[str, Record]
    ) -> dict[str, Record]:
        """Count records fetched with ``call("get_many")``; return the readable hits.

        The second half of ``get_many``, and on its own the chain's path after
        a wider tier answered (``Chain.read_many``).
        """
        hits = {k: r for k, r in records.items() if self._readable(k, r)}
        self.stats.hits += len(hits)
        self.stats.misses += len(keys) - len(hits)
        return hits

    def _readable(self, key: str, record: Record) -> bool:
        """Unpickle the value; a bad payload is rejected and deleted (a miss)."""
        try:
            materialize(record)
        except EnvelopeError as exc:
            self.tier.reject(key, exc)
            self.delete(key)
            return False
        return True

    def store(
        self, records: Mapping[str, Record], *, promotion: bool = False
    ) -> Collection[str]:
        """Write the records this tier accepts; return the keys it did not store.

        A record the tier refuses (placement) is not stored; unless this is a
        promotion, any older copy is deleted, so no tier keeps serving a value
        that was replaced. Refused keys are not reported as failures. One
        record (``set``, a ``get`` hit) takes a path with no intermediate dict:
        it is the L2-hit path of the benchmark.
        """
        tier = self.tier
        if len(records) == 1:
            ((key, record),) = records.items()
            if not tier.accepts(record):
                if not promotion:
                    self.stats.refuse("too_big")
                    self.delete(key)
                return _NOTHING
            if self.call("set", key, record) is UNAVAILABLE:
                return (key,)
            stored = 1
        else:
            accepted = {k: r for k, r in records.items() if tier.accepts(r)}
            if not promotion and len(accepted) < len(records):
                refused = [k for k in records if k not in accepted]
                self.stats.refuse("too_big", len(refused))
                self.delete_many(refused)
            if not accepted:
                return _NOTHING
            if self.call("set_many", accepted) is UNAVAILABLE:
                return accepted.keys()
            stored = len(accepted)
        self.stats.sets += stored
        if promotion:
            self.stats.promotions += stored
        return _NOTHING

    def store_announced(
        self, records: Mapping[str, Record], stream: Any, fields: Mapping[str, str]
    ) -> tuple[Collection[str], bool]:
        """Write records the tier accepts, and their announcement, in one step.

        Return the keys not stored (all or none) and whether the announcement
        was appended (``BaseTier.set_many_announced``). The chain calls it only
        when every record is accepted here.
        """
        appended = self.call("set_many_announced", records, stream, fields)
        if appended is UNAVAILABLE:
            return records.keys(), False
        self.stats.sets += len(records)
        return _NOTHING, appended

    def add(self, key: str, record: Record) -> bool | Any:
        """Store only if absent, atomically here; ``UNAVAILABLE`` if not asked,
        ``REFUSED`` if the tier answered and refused."""
        added = self.attempt("add", key, record)
        if added is True:
            self.stats.sets += 1
        return added

    def delete(self, key: str) -> bool | Any:
        """Delete ``key``: whether it held it, ``UNAVAILABLE`` or ``REFUSED``."""
        deleted = self.attempt("delete", key)
        if deleted is True:
            self.stats.deletes += 1
        return deleted

    def delete_many(self, keys: list[str]) -> Any:
        """Delete every key; return ``UNAVAILABLE`` when the tier did not answer."""
        if not keys:
            return None
        result = self.call("delete_many", keys)
        if result is not UNAVAILABLE:
            self.stats.deletes += len(keys)
        return result

    def acquire_lease(self, key: str, seconds: float) -> str | None | Any:
        """Take the lease ``key`` (``BaseTier.acquire_lease``).

        Return its token, ``None`` when another holder has it, or
        ``UNAVAILABLE`` when the tier did not answer (the outcome is then
        unknown: act as if the lease were not held, never wait on it).
        """
        token = self.call("acquire_lease", key, seconds)
        if token is None:
            self.stats.leases_refused += 1
        elif token is not UNAVAILABLE:
            self.stats.leases += 1
        return token

    def release_lease(self, key: str, token: str) -> Any:
        """Give the lease back if ``token`` holds it; ``UNAVAILABLE`` if not asked."""
        return self.call("release_lease", key, token)

    def snapshot(self) -> dict[str, Any]:
        """Return the counters, with the breaker state when there is one."""
        info: dict[str, Any] = self.stats.snapshot()
        if self.breaker is not None:
            info["breaker"] = self.breaker.state
        return info
