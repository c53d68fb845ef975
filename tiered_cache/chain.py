"""The chain of tiers of one configuration, and the one call path into a tier.

``backend.py`` speaks Django's API; this module is what it speaks *to*. The
boundary is deliberately small:

* ``Slot`` (``tiered_cache.slot``) is a tier as the backend calls it. It owns
  the tier's circuit breaker, the fail-open decision, the error log lines
  (once per burst) and every counter of a call's outcome. Nothing else calls
  a tier, so nothing else can forget to count, log or consult the breaker.
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
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from . import reads, wiring
from .coherence import InvalidationBus
from .conf import TieredOptions, TierSpec
from .envelope import Record, new_stamp
from .forksafe import Registry
from .journal import CLEAR, DELETE, INCR, SET, Journal
from .resilience import CLOSED, CircuitBreaker, LogThrottle
from .sentinels import REFUSED, UNAVAILABLE, Constant
from .slot import Slot
from .stats import ChainStats, GroupStats
from .tiers import load_tier
from .tiers.base import BaseTier, Count, Scope, implements

__all__ = ["Chain", "Slot", "built_chain", "chain_for"]

logger = logging.getLogger(__name__)

#: More tries of the last tier that can count, when L2 did not answer.
_COUNT_ATTEMPTS = 3
#: What a tier's ``incr`` gives when it does not say when the counter expires.
_UNKNOWN = Constant("UNKNOWN")


class Chain:
    """The slots of one configuration, arranged from the tiers' roles."""

    def __init__(self, options: TieredOptions) -> None:
        self.clock = options.clock
        #: Counters of no one tier: stampedes collapsed, stale values served.
        self.stats = ChainStats()
        #: Hits and misses per key group (``METRICS["GROUPS"]``), or None.
        groups = options.metrics.groups if options.metrics.enabled else 0
        self.groups = GroupStats(groups) if groups else None
        # One throttle for every chain over these tiers (they differ only in
        # FAIL_OPEN): a failure is one log line, not one per chain.
        self.log_throttle = _throttles.get_or_create(options.share_key, LogThrottle)
        slots = tuple(
            Slot(
                *_shared_tier(options, spec),
                fail_open=options.fail_open,
                log_throttle=self.log_throttle,
                timed=options.metrics.enabled,
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
        for slot in slots:
            if slot.tier.holds_copies(widest):
                slot.tier.copies_of(self._copy_test(slot))
        #: Tiers holding copies whose staleness bound they cannot enforce.
        self.unbounded = tuple(
            slot.name
            for slot in slots
            if slot.tier.holds_copies(widest)
            and not slot.tier.bound_staleness(options.l1_max_staleness)
        )
        #: Where a hit at ``slots[i]`` is promoted: the tiers read before it
        #: whose scope is narrower. A copy never goes back up into a wider tier
        #: (L3 into L2): that is how a deleted key would come back.
        self.narrower = tuple(
            tuple(s for s in slots[:i] if s.tier.scope < slot.tier.scope)
            for i, slot in enumerate(slots)
        )
        #: The tiers holding copies that can drop one (the bus's audience).
        self.copies = tuple(
            slot
            for slot in slots
            if slot.tier.holds_copies(widest) and implements(slot.tier, "invalidate")
        )
        #: Namespaces of the caches built over this chain (``note_namespace``).
        self.namespaces: frozenset[str] = frozenset()
        wired = wiring.build(slots, self.copies, self.namespace_of, options)
        #: The tier carrying the bus, the invalidation bus (``None``: off, or no
        #: tier can carry it) and the changes that tier missed in an outage
        #: (``tiered_cache.journal``).
        self._via: Slot | None = wired.via
        self.bus: InvalidationBus | None = wired.bus
        self.journal: Journal | None = wired.journal
        if self.journal is not None:  # a malformed journal is covered by them
            self.journal.namespaces = lambda: self.namespaces

    def note_namespace(self, namespace: str) -> None:
        """Remember a namespace of this chain's keys (the journal covers by it)."""
        if namespace and namespace not in self.namespaces:
            self.namespaces = self.namespaces | {namespace}

    def namespace_of(self, key: str) -> str:
        """Return the longest known namespace ``key`` is under ("" if none)."""
        return max(
            (n for n in self.namespaces if key.startswith(n)), default="", key=len
        )

    def _copy_test(self, slot: Slot) -> Callable[[Record], bool]:
        """Return whether a record in ``slot`` copies a wider tier's value.

        It does when a wider tier that may be the authority accepts it; a value
        too big for L2 lives in L3 as its own authority, not as a copy.
        """
        wider = tuple(
            s.tier for s in self.authorities if s.tier.scope > slot.tier.scope
        )
        return lambda record: any(tier.accepts(record) for tier in wider)

    def _announcing(self) -> InvalidationBus | None:
        """Return the bus when an announcement can be sent now (else None).

        With the carrying tier's breaker open, the change did not reach it
        either; trying would only pay its timeout again.
        """
        bus = self.bus
        if bus is None:
            return None
        breaker = self._via.breaker  # type: ignore[union-attr]
        return bus if breaker is None or breaker.state == CLOSED else None

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
        # The authorities first: a tier that refuses the value drops its older
        # copy only once the new value is stored, or a reader in between could
        # find the old value below and promote it back up, for good.
        first = [slot for slot in self.write_order if slot in authority.values()]
        rest = [slot for slot in self.write_order if slot not in first]
        joined = self._joined(authority, skip)
        announced = False
        for slot in first + rest:
            if slot is skip:
                continue
            if slot is joined:
                bus = self.bus
                missed, announced = slot.store_announced(
                    records,
                    bus.stream,  # type: ignore[union-attr]
                    bus.writes_message(  # type: ignore[union-attr]
                        (key, record.stamp) for key, record in records.items()
                    ),
                )
                bus.stats.announced += announced  # type: ignore[union-attr]
            else:
                missed = slot.store(records)
            for key in missed:
                if authority[key] is slot:
                    failed.add(key)
        if failed:
            # The authority did not take them: a local copy is now the value
            # the journal replays (from any process of the machine), so it
            # must be on disk before the call returns, not queued.
            for slot in rest:
                if implements(slot.tier, "settle"):
                    slot.call("settle", list(failed))
        journal = self.journal
        if journal is not None and failed:  # journal the writes L2 missed
            slot = journal.authority
            journal.record(
                (key, SET, records[key].stamp, records[key].expires_at)
                for key in failed
                if authority[key] is slot
            )
        bus = self._announcing()
        if bus is not None and not announced:
            # A value no tier took is announced too: every tier dropped its
            # older copy, and other processes must drop theirs (docs/faults.rst
            # E35), or they keep serving the value the caller replaced.
            bus.announce_writes(
                (key, record.stamp)
                for key, record in records.items()
                if key not in failed or authority[key] is None
            )
        unsure = [k for k in failed if authority[k] not in (None, skip)]
        if unsure and self.bus is not None:
            # A write that failed may still have been applied (the reply was
            # lost), or have removed the older value (Redis out of memory,
            # ``RedisTier._drop_refused``). Announcing it costs readers a miss
            # at worst; it goes to the outbox, not to a server that just
            # failed us.
            self.bus.queue_writes((key, records[key].stamp) for key in unsure)
        return failed

    def _joined(
        self, authority: Mapping[str, Slot | None], skip: Slot | None
    ) -> Slot | None:
        """Return the tier that stores these records and their announcement at once.

        That is the bus's tier when it is the authority of every record and
        can append in the same transaction (``Stream.joins_writes``); else the
        announcement is sent after the writes, and queued if that fails.
        """
        via = self._via
        if (
            via is None
            or not authority
            or via is skip
            or self._announcing() is None
            or not self.bus.stream.joins_writes  # type: ignore[union-attr]
        ):
            return None
        return via if all(slot is via for slot in authority.values()) else None

    def add(self, key: str, record: Record) -> bool:
        """Store ``record`` if ``key`` is absent, atomically at the authority.

        A tier that does not answer hands the decision to the next tier able
        to be the authority; once added, the value is written through. A tier
        that answered and refused (Redis out of memory) may hold a live value:
        nothing is added.
        """
        for slot in self.authorities:
            if not slot.tier.accepts(record):
                continue
            added = slot.add(key, record)
            if added is REFUSED:
                return False
            if added is UNAVAILABLE:
                continue
            if added:
                self.write({key: record}, skip=slot)
            return bool(added)
        return False

    def incr(self, key: str, delta: int) -> Any:
        """Add ``delta`` atomically at the authority; keep the count in the copies.

        The count is kept by the copy tiers that can (L3, ``keep_count``) with
        the counter's expiry, stamped and announced like a write; the other
        copies are dropped (a ``get`` reads L2). When the authority (L2) does
        not answer, or refuses (out of memory), the next tier that can be one
        (L3) counts on from the last count it knows, whether its copy is still
        trusted or not, and the journal keeps what was added: L2 gets it with
        ``INCRBY`` when it answers (docs/design.rst, "Counters"). A refusing
        L2 also loses its older count at once (a plain ``DEL`` works out of
        memory), so no process reads a count lower than the one returned here.
        """
        missed = refused = announced = False
        for slot in self._counters:
            try:
                if slot is self._joined_counter and self._announcing() is not None:
                    value, announced = self._incr_announced(slot, key, delta)
                else:
                    value = slot.attempt("incr", key, delta)
                if value is UNAVAILABLE and missed and slot is self._counters[-1]:
                    # The last tier that can count, L2 down: a busy moment
                    # (its own queue) must not lose the count.
                    value = self._again(slot, key, delta)
            except ValueError:
                # Not there: unless L2 has yet to take a count made here
                # (after a refusal, or a restart), which counts on below.
                if not self._journaled(slot) or not self.journal.counts(key):  # type: ignore[union-attr]
                    raise
                value = UNAVAILABLE
            if value is UNAVAILABLE or value is REFUSED:
                if self._journaled(slot):
                    missed = True
                    refused = value is REFUSED
                continue
            stamp = getattr(value, "stamp", None) or new_stamp()
            expires_at = getattr(value, "expires_at", _UNKNOWN)
            # Copies that keep the count (``keep_count``: L3's, the base for an
            # outage) are not fenced; the others go (a ``get`` reads L2).
            keeping = (
                ()
                if missed or expires_at is _UNKNOWN
                else [s for s in self._keep_count if s is not slot]
            )
            self._fence(
                [key],
                stamp,
                [s for s in self.copies if s is not slot and s not in keeping],
            )
            if missed:  # counted below L2: L2 gets the delta later
                journal: Journal = self.journal  # type: ignore[assignment]
                if expires_at is _UNKNOWN:
                    journal.record([(key, DELETE, stamp)])
                else:
                    change = (key, INCR, stamp, delta, int(value), expires_at)
                    journal.record([change])
                if refused:
                    journal.authority.call("delete", key)
            elif keeping:
                count = Record(int(value), None, expires_at, stamp)
                for other in keeping:
                    other.call("keep_count", key, count, delta >= 0)
            bus = self._announcing()
            if bus is not None and not announced:
                bus.announce_writes([(key, stamp)])
            return int(value)
        raise ValueError(f"Key '{key}' not found (no tier could answer)")

    @functools.cached_property
    def _joined_counter(self) -> Slot | None:
        """The tier that counts and announces the count in one round trip
        (``incr_announced``: the bus's tier, where the stream joins writes)."""
        via = self._via
        if via is None or not self.bus.stream.joins_writes:  # type: ignore[union-attr]
            return None
        return via if implements(via.tier, "incr_announced") else None

    def _incr_announced(self, slot: Slot, key: str, delta: int) -> tuple[Any, bool]:
        """``incr`` at ``slot`` with its announcement: (count, announced).

        The stamp is taken before the count: the message says the key
        changed at it, and the copies fenced at it are all older.
        """
        bus: InvalidationBus = self.bus  # type: ignore[assignment]
        stamp = new_stamp()
        fields = bus.writes_message([(key, stamp)])
        result = slot.attempt("incr_announced", key, delta, bus.stream, fields)
        if result is UNAVAILABLE or result is REFUSED:
            return result, False
        value, announced = result
        if isinstance(value, Count) and value.stamp is None:
            value.stamp = stamp
        bus.stats.announced += announced
        return value, announced

    @staticmethod
    def _again(slot: Slot, key: str, delta: int) -> Any:
        """``incr`` at ``slot`` at most ``_COUNT_ATTEMPTS`` more times."""
        value = UNAVAILABLE
        for _ in range(_COUNT_ATTEMPTS):
            value = slot.attempt("incr", key, delta)
            if value is not UNAVAILABLE:
                break
        return value

    @functools.cached_property
    def _counters(self) -> tuple[Slot, ...]:
        """The tiers that may count, widest first: not L1 where L3 keeps counts.

        L1's count is this process's alone: counting there while L2 and L3
        do not answer (L3 busy for a moment) would return a count no other
        process sees and drop the machine's (docs/design.rst, "Counters").
        Without such a tier, L1 counts what it holds, as before.
        """
        if not self._keep_count:
            return self.authorities
        return tuple(s for s in self.authorities if s.tier.scope > Scope.PROCESS)

    @functools.cached_property
    def _keep_count(self) -> tuple[Slot, ...]:
        """The copy tiers that keep counts for an outage (``keep_count``)."""
        return tuple(s for s in self.copies if implements(s.tier, "keep_count"))

    def touch(self, key: str, expires_at: float | None) -> bool:
        """Set a new expiry everywhere; answer as the widest tier that answered."""
        answer = None
        for slot in self.write_order:
            result = slot.call("touch", key, expires_at)
            if answer is None and result is not UNAVAILABLE:
                answer = bool(result)
        bus = self._announcing()
        if answer and bus is not None:
            bus.announce_drops([key])
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
            if slot.call("clear", namespace) is UNAVAILABLE and self._journaled(slot):
                self.journal.record([(namespace, CLEAR, 0)])  # type: ignore[union-attr]
        bus = self._announcing()
        if bus is not None:
            bus.announce_clear(namespace)

    def delete(self, key: str) -> bool:
        """Delete ``key`` everywhere, widest first; return whether one held it.

        ``False`` when the authority answered and refused (Redis READONLY or
        MISCONF; out of memory a plain ``DEL`` still works): it goes on
        serving the value, so the delete did not happen. The copies here are
        dropped all the same and the delete is journaled for when it can be.
        """
        deleted = missed = refused = False
        for slot in self.write_order:
            result = slot.delete(key)
            if result is True:
                deleted = True
            elif result is UNAVAILABLE or result is REFUSED:
                missed = missed or self._journaled(slot)
                refused = refused or (result is REFUSED and slot is self.authorities[0])
        self._announce_deletes([key], missed)
        return deleted and not refused

    def delete_many(self, keys: list[str]) -> None:
        missed = False
        for slot in self.write_order:
            if slot.delete_many(keys) is UNAVAILABLE:
                missed = missed or self._journaled(slot)
        self._announce_deletes(keys, missed)

    def _journaled(self, slot: Slot) -> bool:
        """Return whether changes ``slot`` misses are journaled (the bus's L2)."""
        return self.journal is not None and slot is self.journal.authority

    def _announce_deletes(self, keys: list[str], missed: bool = False) -> None:
        stamp = new_stamp()  # after the delete: older copies go
        self._fence(keys, stamp)
        if missed:  # L2 did not answer: replay the deletes when it does
            self.journal.record((key, DELETE, stamp) for key in keys)  # type: ignore[union-attr]
        bus = self._announcing()
        if bus is not None:
            bus.announce_writes((key, stamp) for key in keys)

    def _fence(
        self, keys: Iterable[str], stamp: int, slots: Sequence[Slot] | None = None
    ) -> None:
        """Keep values older than ``stamp`` out of this process's copies.

        A read that fetched the old value below before a delete (or ``incr``)
        must not promote it into L1 after: the copy tiers remember ``stamp``.
        """
        for key in keys:
            for slot in self.copies if slots is None else slots:
                slot.call("invalidate", key, stamp)

    # -- reads -----------------------------------------------------------------

    def promote(self, hits: Mapping[str, Record], above: Sequence[Slot]) -> None:
        """Copy hits into the faster tiers, keeping their remaining lifetime."""
        if len(hits) == 1:
            ((key, record),) = hits.items()
            self.promote_one(key, record, above)
            return
        now = self.clock()
        live = {k: r for k, r in hits.items() if r.is_live(now)}
        if live:
            for slot in above:
                slot.store(live, promotion=True)

    def promote_one(self, key: str, record: Record, above: Sequence[Slot]) -> None:
        """``promote`` of one hit: the second half of a ``get`` that hit L2."""
        if not record.is_live(self.clock()):
            return
        top = self.fast_top
        for slot in above:
            if slot.tier is top:
                # The fast path's other half: local memory cannot fail, so the
                # one promoted hit of a ``get`` skips the slot's wrapper.
                if top.accepts(record):  # type: ignore[union-attr]
                    top.set(key, record)  # type: ignore[union-attr]
                    slot.stats.sets += 1
                    slot.stats.promotions += 1
            else:
                slot.store({key: record}, promotion=True)

    # The miss path and the lookups that must agree with it (``reads``): an
    # L2 that answered a miss disowns L3's copy.
    read_below = reads.read_below
    read_many = reads.read_many
    has = reads.has
    find = reads.find
    inspect = reads.inspect

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
_throttles: Registry[LogThrottle] = Registry()
_chains: Registry[Chain] = Registry()


def _shared_tier(
    options: TieredOptions, spec: TierSpec
) -> tuple[BaseTier, CircuitBreaker | None]:
    def build() -> tuple[BaseTier, CircuitBreaker | None]:
        tier = load_tier(
            spec.spec,
            name=spec.name,
            clock=options.clock,
            serializer=options.serializer,
        )
        if not tier.fallible:
            return tier, None

        def opened() -> None:
            tier.stats.breaker_opened += 1

        return tier, CircuitBreaker(spec.name, options.breaker, on_open=opened)

    return _tiers.get_or_create((options.share_key, spec.name), build)


def chain_for(options: TieredOptions) -> Chain:
    """Return this process's chain for ``options`` (built on first use)."""
    return _chains.get_or_create(_chain_key(options), lambda: Chain(options))


def built_chain(options: TieredOptions) -> Chain | None:
    """Return this process's chain for ``options`` if one was built, else None.

    For readers of counters (``tiered_cache.metrics``): looking must not
    build a chain, connect to Redis or start a bus listener.
    """
    return _chains.get(_chain_key(options))


def _chain_key(options: TieredOptions) -> tuple[str, bool, bool, int]:
    # Metrics on or off changes whether slots time their calls.
    metrics = options.metrics
    return (options.share_key, options.fail_open, metrics.enabled, metrics.groups)
