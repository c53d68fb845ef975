"""The chain of tiers of one configuration, and the one call path into a tier.

``backend.py`` speaks Django's API; this module is what it speaks *to*. The
boundary is deliberately small:

* ``Slot`` is a tier as the backend calls it. It owns the tier's circuit
  breaker, the fail-open decision, the error log lines (once per burst) and
  every counter of a call's outcome. Nothing else calls a tier, so nothing
  else can forget to count, log or consult the breaker.
* ``Chain`` arranges the slots from what each tier declares (``BaseTier``'s
  roles): the read order as configured; the write order, widest scope first;
  the authority of each value; the staleness bound of tiers holding copies;
  and the fast path. It owns the one fan-out of a write and the one
  promotion of a hit.

The fast path is the one explicit exception: when the top tier cannot fail
(``fallible = False``, local memory), the backend reads it directly through
``Chain.fast_top.get_value``, with no breaker and no wrapper, and that method
counts its own hit or miss. Everything else goes through a slot.

Chains are built once per process per configuration and shared by every
backend instance (Django makes one per thread and per request).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any

from .conf import TieredOptions, TierSpec
from .envelope import Record, materialize
from .exceptions import CircuitOpen, EnvelopeError, TierUnavailable
from .forksafe import Registry
from .resilience import CLOSED, CircuitBreaker, LogThrottle
from .sentinels import MISSING, UNAVAILABLE
from .tiers import load_tier
from .tiers.base import BaseTier, Scope

__all__ = ["Chain", "Slot", "chain_for"]

logger = logging.getLogger(__name__)

_NOTHING: Collection[str] = ()


class Slot:
    """A tier with its breaker, fail-open decision, log throttle and counters."""

    __slots__ = ("tier", "name", "stats", "breaker", "fail_open", "_log")

    def __init__(
        self,
        tier: BaseTier,
        breaker: CircuitBreaker | None,
        *,
        fail_open: bool,
        log_throttle: LogThrottle,
    ) -> None:
        self.tier = tier
        self.name = tier.name
        self.stats = tier.stats
        #: ``None`` for a tier that cannot fail: there is nothing to guard.
        self.breaker = breaker
        self.fail_open = fail_open
        self._log = log_throttle

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
            result = getattr(self.tier, op)(*args)
        except TierUnavailable as exc:
            self._failed(op, exc)
            if self.fail_open:
                return UNAVAILABLE
            raise
        if breaker is not None:
            breaker.record_success()
        return result

    def _failed(self, op: str, exc: TierUnavailable) -> None:
        breaker = self.breaker
        if breaker is not None:
            if exc.alive:
                # It answered (OOM, disk full): reachable, so the breaker stays
                # closed and reads keep using the tier.
                breaker.record_success()
            else:
                breaker.record_failure()
        self.stats.errors += 1
        if self._log.allow(f"{self.name}:{op}:{exc.kind}"):
            logger.warning(
                "cache tier %s failed during %s [%s] (%s); %s",
                self.name,
                op,
                exc.kind,
                exc.__cause__ or exc,
                "continuing without it" if self.fail_open else "raising",
            )

    # -- counted operations ------------------------------------------------------

    def get(self, key: str) -> Record | Any:
        """Return the record at ``key`` with its value unpickled, or a sentinel."""
        record = self.call("get", key)
        if record is UNAVAILABLE:
            return UNAVAILABLE
        if record is MISSING:
            self.stats.misses += 1
            return MISSING
        if not self._readable(key, record):
            return MISSING
        self.stats.hits += 1
        return record

    def get_many(self, keys: list[str]) -> dict[str, Record] | Any:
        """Return ``{key: record}`` of the readable hits, or ``UNAVAILABLE``."""
        records = self.call("get_many", keys)
        if records is UNAVAILABLE:
            return UNAVAILABLE
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
            self.call("delete", key)
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
                    self.stats.refused += 1
                    self.delete(key)
                return _NOTHING
            if self.call("set", key, record) is UNAVAILABLE:
                return (key,)
            stored = 1
        else:
            accepted = {k: r for k, r in records.items() if tier.accepts(r)}
            if not promotion and len(accepted) < len(records):
                refused = [k for k in records if k not in accepted]
                self.stats.refused += len(refused)
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

    def add(self, key: str, record: Record) -> bool | Any:
        """Store only if absent, atomically here; ``UNAVAILABLE`` if not asked."""
        added = self.call("add", key, record)
        if added is True:
            self.stats.sets += 1
        return added

    def delete(self, key: str) -> bool | Any:
        deleted = self.call("delete", key)
        if deleted is True:
            self.stats.deletes += 1
        return deleted

    def delete_many(self, keys: list[str]) -> None:
        if not keys:
            return
        if len(keys) == 1:
            self.delete(keys[0])
        elif self.call("delete_many", keys) is not UNAVAILABLE:
            self.stats.deletes += len(keys)

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


class Chain:
    """The slots of one configuration, arranged from the tiers' roles."""

    def __init__(self, options: TieredOptions) -> None:
        self.clock = options.clock
        self.log_throttle = LogThrottle()
        slots = tuple(
            Slot(
                *_shared_tier(options, spec),
                fail_open=options.fail_open,
                log_throttle=self.log_throttle,
            )
            for spec in options.tiers
        )
        #: Read order, as configured (fastest first).
        self.slots: tuple[Slot, ...] = slots
        self.by_name = {slot.name: slot for slot in slots}
        top = slots[0].tier
        #: The top tier when it cannot fail: read by the backend directly.
        self.fast_top: BaseTier | None = None if top.fallible else top
        #: Widest scope first, read order within a scope (``sorted`` is stable).
        self.write_order = tuple(sorted(slots, key=lambda s: -s.tier.scope))
        self.authorities = tuple(s for s in self.write_order if s.tier.may_be_authority)
        widest = max((slot.tier.scope for slot in slots), default=Scope.PROCESS)
        #: Tiers holding copies whose staleness bound they cannot enforce yet.
        self.unbounded = tuple(
            slot.name
            for slot in slots
            if slot.tier.holds_copies(widest)
            and not slot.tier.bound_staleness(options.l1_max_staleness)
        )

    # -- writes ----------------------------------------------------------------

    def authority_for(self, record: Record) -> Slot | None:
        """Return the widest tier that may be the authority and accepts ``record``."""
        for slot in self.authorities:
            if slot.tier.accepts(record):
                return slot
        return None

    def write(
        self, records: Mapping[str, Record], *, skip: Slot | None = None
    ) -> set[str]:
        """Write through every tier, widest scope (the authority) first.

        Return the keys whose authority did not store them (a local tier may
        still have). ``skip`` is a tier already written (``add``).
        """
        authority = {key: self.authority_for(r) for key, r in records.items()}
        failed = {key for key, slot in authority.items() if slot is None}
        for slot in self.write_order:
            if slot is skip:
                continue
            for key in slot.store(records):
                if authority[key] is slot:
                    failed.add(key)
        return failed

    def add(self, key: str, record: Record) -> bool:
        """Store ``record`` if ``key`` is absent, atomically at the authority.

        A tier that does not answer hands the decision to the next tier able
        to be the authority; once added, the value is written through.
        """
        for slot in self.authorities:
            if not slot.tier.accepts(record):
                continue
            added = slot.add(key, record)
            if added is UNAVAILABLE:
                continue
            if added:
                self.write({key: record}, skip=slot)
            return bool(added)
        return False

    def incr(self, key: str, delta: int) -> Any:
        """Add ``delta`` atomically at the authority; other tiers drop their copies."""
        for slot in self.authorities:
            value = slot.call("incr", key, delta)
            if value is UNAVAILABLE:
                continue
            for other in self.write_order:
                if other is not slot:
                    other.delete(key)
            return value
        raise ValueError(f"Key '{key}' not found (no tier could answer)")

    def touch(self, key: str, expires_at: float | None) -> bool:
        """Set a new expiry everywhere; answer as the widest tier that answered."""
        answer = None
        for slot in self.write_order:
            result = slot.call("touch", key, expires_at)
            if answer is None and result is not UNAVAILABLE:
                answer = bool(result)
        return bool(answer)

    def clear(self, namespace: str) -> None:
        """Remove every key under ``namespace`` from every tier."""
        for slot in self.write_order:
            if not namespace and slot.tier.scope > Scope.PROCESS:
                logger.error(
                    "clear(): KEY_FUNCTION builds keys with no fixed start, so this "
                    "cache's keys cannot be told apart in shared tier %s; skipped. "
                    "Set KEY_PREFIX or a KEY_FUNCTION that starts keys with it.",
                    slot.name,
                )
                continue
            slot.call("clear", namespace)

    def delete(self, key: str) -> bool:
        """Delete ``key`` everywhere, widest first; return whether one held it."""
        deleted = False
        for slot in self.write_order:
            if slot.delete(key) is True:
                deleted = True
        return deleted

    def delete_many(self, keys: list[str]) -> None:
        for slot in self.write_order:
            slot.delete_many(keys)

    # -- reads -----------------------------------------------------------------

    def promote(self, hits: Mapping[str, Record], above: Sequence[Slot]) -> None:
        """Copy hits into the faster tiers, keeping their remaining lifetime."""
        now = self.clock()
        if all(record.is_live(now) for record in hits.values()):
            live = hits
        else:
            live = {key: record for key, record in hits.items() if record.is_live(now)}
        if live:
            for slot in above:
                slot.store(live, promotion=True)

    def has(self, key: str) -> bool:
        return any(slot.call("has_key", key) is True for slot in self.slots)

    def find(self, key: str) -> Record | Any:
        """Return the first tier's record for ``key`` (uncounted), or MISSING."""
        for slot in self.slots:
            record = slot.call("get", key)
            if record is not MISSING and record is not UNAVAILABLE:
                return record
        return MISSING

    def keys(self, namespace: str) -> Iterable[str]:
        """Return the keys under ``namespace`` of the top tier (when it lists)."""
        try:
            keys = self.slots[0].call("keys", namespace)
        except NotImplementedError:
            return ()
        return () if keys is UNAVAILABLE else keys

    @functools.cached_property
    def lease_slot(self) -> Slot | None:
        """Return the widest tier that holds leases (``BaseTier.holds_leases``).

        ``None`` when no tier can: stampede protection is then per process.
        """
        for slot in self.write_order:
            if slot.tier.holds_leases:
                return slot
        return None

    def close(self) -> None:
        for slot in self.slots:
            slot.tier.close()

    def check(self) -> list[str]:
        return [problem for slot in self.slots for problem in slot.tier.check()]


# Tiers and their breakers are shared by every configuration with the same
# tiers (``share_key``); chains also differ by FAIL_OPEN, so that two caches
# over the same tiers see the same data while deciding differently what a
# caller sees of a failure.
_tiers: Registry[tuple[BaseTier, CircuitBreaker | None]] = Registry()
_chains: Registry[Chain] = Registry()


def _shared_tier(
    options: TieredOptions, spec: TierSpec
) -> tuple[BaseTier, CircuitBreaker | None]:
    def build() -> tuple[BaseTier, CircuitBreaker | None]:
        tier = load_tier(spec.spec, name=spec.name, clock=options.clock)
        if not tier.fallible:
            return tier, None

        def opened() -> None:
            tier.stats.breaker_opened += 1

        return tier, CircuitBreaker(spec.name, options.breaker, on_open=opened)

    return _tiers.get_or_create((options.share_key, spec.name), build)


def chain_for(options: TieredOptions) -> Chain:
    """Return this process's chain for ``options`` (built on first use)."""
    return _chains.get_or_create(
        (options.share_key, options.fail_open), lambda: Chain(options)
    )
