"""The outage journal: changes the authority did not answer, reconciled later.

A ``set`` or ``delete`` made while L2 did not answer reached only the local
tiers, and L2 may go on serving the value it replaced (docs/faults.rst #7,
#23). The chain *records* such a change here (key, set or delete, the stamp of
the local write) and *reconciles* it once L2 answers again:

* a delete is replayed through L2's ordinary ``delete``, unless L2 holds a
  value newer than the delete (written by another process meanwhile);
* a set is replayed with ``replace_older`` (``BaseTier``): our record is
  stored only over a live entry with an older stamp, atomically. The value
  comes from our own local copy with that very stamp, the expiry from the
  entry (the copy's is bounded by how long it is trusted). When L2 holds a newer
  value, nothing (another process deleted it meanwhile), or our local copy is
  gone, the set becomes an *invalidation*: L2's older entry, if any, is
  removed the same way, and the copies here are dropped. A miss is fine; an
  older value is not;
* an ``incr`` counted in L3 (L2 did not answer, or refused it) is journaled
  with what it added: at L2 the sum of those deltas is added to the count
  (``add_count``: ``INCRBY``), or, with no count there, L2 takes this
  machine's count; so counts made on several machines during an outage add
  up. A set or delete of the key journaled before it makes it a delete
  (a miss, never a wrong count);
* a ``clear()`` is journaled as its namespace, cleared at L2 like the
  prefixes of an overflow (below);
* every reconciled key is then announced on the bus (other processes and
  machines drop older copies) and fenced in this process's copy tiers (a
  listener skips its own messages).

Last change wins per key. The journal is bounded (``MAX_ENTRIES`` keys); a key
beyond it is *covered* by its cache's namespace (the chain knows those of the
caches built over it), cleared at L2 and announced, as ``clear()`` would; never
a shorter prefix, since L2 is shared. At most ``MAX_PREFIXES`` namespaces are
kept; a key with none (a ``KEY_FUNCTION`` without fixed text) or beyond them
is *lost*: logged, counted, and its older value may stay in L2 until it expires.

Where it lives: in the machine's L3 when there is one (one small document,
``journal_rows``), so a restarted process or any other of the machine finds
and reconciles it; in memory otherwise, or when L3 fails too. Two processes
may replay the same entries: a delete twice is a delete, a set is compared by
stamp. An entry goes only once reconciled, and only if no newer change of the
key was recorded meanwhile. A row in L3 is not trusted: a malformed one is
replaced by the chain's namespaces (cleared like an overflow's), and a prefix
that is not one of them is never cleared.

When: the bus listener (``coherence``) calls ``tick`` off every request
thread, at once when its first read after an outage answers, then once a
heartbeat. It has just heard L2 answer, so L2's open breaker is not waited
for: one direct call on the tier closes it when it answers.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from .coherence import InvalidationBus
from .envelope import Record, new_stamp
from .exceptions import TierUnavailable
from .forksafe import renewed_lock
from .journal_rows import EXPIRED, Doc, dump, empty, json_expiry, parse
from .resilience import CLOSED, LogThrottle
from .sentinels import MISSING, REFUSED, UNAVAILABLE
from .slot import Slot
from .stats import CounterSet
from .tiers.base import implements

__all__ = ["CLEAR", "DELETE", "INCR", "SET", "Journal", "JournalStats"]

logger = logging.getLogger(__name__)

#: Keys remembered one by one; more are covered by prefixes.
MAX_ENTRIES = 1000
#: Namespaces covering the keys beyond ``MAX_ENTRIES``.
MAX_PREFIXES = 16
#: Replay passes while L2's breaker is held open for requests (``reconcile``).
_PASSES = 3
#: Journaled operations: ``clear(namespace)`` is journaled as a prefix.
SET, DELETE, CLEAR, INCR = "s", "d", "c", "i"
#: A change: ``(key, op, stamp)``, ``(key, SET, stamp, expires_at)`` or
#: ``(key, INCR, stamp, delta, value, expires_at)``.
Change = tuple[Any, ...]


@dataclass
class JournalStats(CounterSet):
    """Counters of one journal in this process."""

    recorded: int = 0
    replayed: int = 0
    invalidated: int = 0
    overflowed: int = 0
    cleared: int = 0
    lost: int = 0
    malformed: int = 0
    refused: int = 0


class Journal:
    """Record what the authority missed; reconcile it when it answers again."""

    def __init__(
        self,
        authority: Slot,
        keeper: Slot | None,
        copies: tuple[Slot, ...],
        *,
        max_entries: int = MAX_ENTRIES,
        max_prefixes: int = MAX_PREFIXES,
        namespace_of: Callable[[str], str] = lambda key: "",
    ) -> None:
        self.authority = authority
        self.keeper = keeper
        self.copies = copies
        #: The bus that announces what is reconciled (set by the chain).
        self.bus: InvalidationBus | None = None
        self.max_entries = max_entries
        self.max_prefixes = max_prefixes
        #: The namespace a stored key is under ("" when unknown).
        self.namespace_of = namespace_of
        #: The namespaces of the caches built over the chain (set by the chain).
        self.namespaces: Callable[[], Iterable[str]] = tuple
        #: One journal per authority (its name and location) per keeper.
        self.name = hashlib.sha256(
            repr((authority.name, authority.tier.location)).encode()
        ).hexdigest()[:16]
        self.stats = JournalStats()
        self._memory: Doc = empty()
        self._lock = renewed_lock(self)
        self._logged = False
        self._log = LogThrottle()
        self._refused: set[str] = set()

    # -- recording (the write path, during an outage) ------------------------------

    def record(self, changes: Iterable[Change]) -> None:
        """Remember ``(key, SET or DELETE, stamp)`` changes L2 did not answer.

        A set may carry its expiry, ``(key, SET, stamp, expires_at)``: the
        replay stores the value with it (the local copy it is read from may be
        served with a shorter one, ``tiers/disk/copies.py``). ``(namespace,
        CLEAR, 0)`` is a ``clear()``: the namespace is cleared at L2 and
        announced, like the prefixes of an overflow.
        """
        changes = list(changes)
        if not changes:
            return
        self.stats.recorded += len(changes)
        if not self._logged:
            self._logged = True
            logger.warning(
                "cache tier %s did not answer a write; journaling changes in %s "
                "to reconcile them when it answers again",
                self.authority.name,
                self.keeper.name if self.keeper is not None else "memory",
            )
        if self.keeper is not None:
            try:
                done = self.keeper.call(
                    "update_journal", self.name, lambda data: self._add(data, changes)
                )
            except TierUnavailable:
                done = UNAVAILABLE
            if done is not UNAVAILABLE:
                return
        with self._lock:
            self._merge(self._memory, changes)

    def _add(self, data: bytes | None, changes: list[Change]) -> bytes:
        doc = self._row(data)
        self._merge(doc, changes)
        return dump(doc)  # type: ignore[return-value]

    def _merge(self, doc: Doc, changes: list[Change]) -> None:
        entries, cover = doc["e"], doc["c"]
        for key, op, stamp, *rest in changes:
            if op == CLEAR:
                self._cover(cover, key)
                continue
            entry = _entry(op, stamp, rest)
            old = entries.get(key)
            if old is not None:
                entries[key] = _merged(old, entry)
            elif len(entries) < self.max_entries:
                entries[key] = entry
            else:
                self.stats.overflowed += 1
                self._cover(cover, self.namespace_of(key))

    def _cover(self, cover: list[str], namespace: str) -> None:
        """Cover a forgotten key by its namespace, if there is room (see module)."""
        if namespace and any(namespace.startswith(p) for p in cover):
            return
        if namespace and len(cover) < self.max_prefixes:
            cover.append(namespace)
            return
        self.stats.lost += 1
        if self._log.allow("lost"):
            logger.error(
                "cache tier %s: the outage journal is full and cannot cover a "
                "key (no namespace, or %d namespaces already); its older value "
                "there is not removed and may be served until it expires",
                self.authority.name,
                self.max_prefixes,
            )

    def counts(self, key: str) -> bool:
        """Return whether a count made here waits for L2 to take it (``incr``)."""
        entry = self.pending()["e"].get(key)
        return entry is not None and entry[0] == INCR

    # -- reconciling (the listener thread) -----------------------------------------

    def pending(self) -> Doc:
        """Return what is journaled (memory and keeper merged; may be empty)."""
        with self._lock:
            doc = json.loads(json.dumps(self._memory))
        kept = self._kept()
        if kept is not None:
            for key, entry in kept["e"].items():
                old = doc["e"].get(key)
                doc["e"][key] = entry if old is None else _merged(old, entry)
            for prefix in kept["c"]:
                if prefix not in doc["c"]:
                    doc["c"].append(prefix)
        doc["c"] = [p for p in doc["c"] if self._known(p)]
        return doc

    def _kept(self) -> Doc | None:
        """Return the journal kept in L3 (None: none, or not readable now).

        A malformed one is replaced there at once (``_row``), reported once
        rather than once a heartbeat, and read as replaced at the next tick.
        """
        try:
            data = (
                None
                if self.keeper is None
                else self.keeper.call("read_journal", self.name)
            )
        except TierUnavailable:
            return None
        if data is UNAVAILABLE or data is None:
            return None
        doc = parse(data)
        if doc is None:
            with contextlib.suppress(TierUnavailable):
                self.keeper.call(  # type: ignore[union-attr]
                    "update_journal", self.name, lambda now: dump(self._row(now))
                )
        return doc

    def _row(self, data: bytes | None) -> Doc:
        """Return the journal stored as ``data``; a malformed one is unknown
        changes, covered by the chain's namespaces (as in an overflow).
        """
        doc = parse(data)
        if doc is not None:
            return doc
        self.stats.malformed += 1
        logger.error(
            "cache tier %s: the outage journal is malformed; replaced by a "
            "clear of this cache's namespaces there",
            self.authority.name,
        )
        doc = empty()
        for namespace in sorted(self.namespaces()):
            self._cover(doc["c"], namespace)
        return doc

    def _known(self, prefix: str) -> bool:
        """Return whether ``prefix`` is a namespace of the chain's caches."""
        if prefix and self.namespace_of(prefix) == prefix:
            return True
        if prefix not in self._refused:
            self._refused.add(prefix)
            self.stats.refused += 1
            logger.error(
                "cache tier %s: the outage journal names prefix %r, which is not "
                "a namespace of this cache; not cleared",
                self.authority.name,
                prefix,
            )
        return False

    def tick(self) -> None:
        """Reconcile what is journaled, if anything (called by the listener)."""
        if self.bus is None:
            return
        doc = self.pending()
        if doc["e"] or doc["c"]:
            self.reconcile(doc)

    def reconcile(self, doc: Doc | None = None) -> bool:
        """Replay or invalidate journaled changes; return whether all are done.

        Stops at the first call L2 does not answer: what is left stays
        journaled for the next tick. After an outage, L2's breaker is *held*
        open for requests while the replay runs (``_reach``), and closed once
        it is done: a request does not read the value L2 held before the
        outage, or count on from its older count, while the changes made
        here are being replayed. Changes journaled meanwhile are replayed in
        the same hold (at most ``_PASSES`` passes).
        """
        doc = self.pending() if doc is None else doc
        if not (doc["e"] or doc["c"]):
            return True
        held = self._reach(doc)
        if held is None:
            return False
        finished = False
        try:
            for _ in range(_PASSES if held else 1):
                finished = self._reconcile(doc)
                if not finished:
                    break
                doc = self.pending()
                if not (doc["e"] or doc["c"]):
                    break
        finally:
            if held:
                self.authority.breaker.release(close=finished)  # type: ignore[union-attr]
        return finished

    def _reconcile(self, doc: Doc) -> bool:
        """One pass of ``reconcile`` over ``doc``."""
        done: Doc = empty()
        try:
            finished = self._replay(doc, done)
        except TierUnavailable:  # FAIL_OPEN off: the slot raises instead
            finished = False
        self._forget(done)
        if finished and len(done["e"]) + len(done["c"]) == len(doc["e"]) + len(
            doc["c"]
        ):
            if self._logged or done["e"] or done["c"]:
                logger.warning(
                    "cache tier %s answers again: journaled changes reconciled "
                    "(%d replayed, %d turned into invalidations, %d prefixes "
                    "cleared so far)",
                    self.authority.name,
                    self.stats.replayed,
                    self.stats.invalidated,
                    self.stats.cleared,
                )
            self._logged = False
            return True
        return False

    def _reach(self, doc: Doc) -> bool | None:
        """Return whether L2 answers: ``False`` when its breaker is closed (the
        replay goes through as any call), ``True`` when one direct call
        answered and the breaker is now held for this thread (see
        ``reconcile``), ``None`` when L2 does not answer.
        """
        slot = self.authority
        breaker = slot.breaker
        if breaker is None or breaker.state == CLOSED:
            return False
        probe = next(iter(doc["e"]), None) or doc["c"][0] or "-"
        try:
            slot.tier.has_key(probe)
        except TierUnavailable:
            return None
        breaker.hold()
        return True

    def _replay(self, doc: Doc, done: Doc) -> bool:
        """Reconcile ``doc``, noting in ``done`` what is done and announced."""
        l2 = self.authority
        for prefix in doc["c"]:
            if not prefix:
                pass  # never recorded (``_cover``); an empty prefix is everything
            elif l2.call("clear", prefix) is UNAVAILABLE:
                return False
            else:
                for slot in self.copies:  # our own listener skips our message
                    slot.call("clear", prefix)
                if not self._announce("announce_clear", prefix):
                    return False
                self.stats.cleared += 1
            done["c"].append(prefix)
        announced: list[tuple[str, int]] = []
        reconciled: Doc = empty()
        try:
            for key, entry in doc["e"].items():
                if entry[0] == INCR:
                    outcome = self._replay_count(key)
                    if outcome is None:  # another process took it: done
                        reconciled["e"][key] = entry
                        continue
                else:
                    outcome = self._replay_one(key, *entry)
                if outcome is UNAVAILABLE:
                    return False
                after, replayed = outcome
                for slot in self.copies:
                    slot.call("invalidate", key, after)
                self.stats.replayed += replayed
                self.stats.invalidated += not replayed
                announced.append((key, after))
                reconciled["e"][key] = entry
        finally:
            # Forgotten only once announced: else replayed again (harmless).
            if announced and self._announce("announce_writes", announced):
                done["e"].update(reconciled["e"])
        return True

    def _announce(self, op: str, what: Any) -> bool:
        """Announce on the bus; return whether the announcement was sent."""
        bus = self.bus
        if bus is None:
            return False
        errors = bus.stats.announce_errors
        getattr(bus, op)(what)
        return bus.stats.announce_errors == errors

    def _replay_one(self, key: str, op: str, stamp: int, *expiry: Any) -> Any:
        """Apply one change at L2; return ``(stamp, replayed)`` or ``UNAVAILABLE``.

        Copies older than the returned stamp are stale everywhere. ``replayed``
        says whether L2 now reflects the change itself (else it was turned
        into an invalidation). A set is stored with the expiry it was given
        (``expiry``), not the one its local copy is served with: an L3 copy's
        is bounded by how long it is trusted (``tiers/disk/copies.py``).
        """
        l2 = self.authority
        if op == DELETE:
            found = l2.call("get", key)
            if found is UNAVAILABLE:
                return UNAVAILABLE
            if found is not MISSING and found.stamp > stamp:
                return stamp, False  # written after our delete: kept
            if l2.delete(key) in (UNAVAILABLE, REFUSED):
                return UNAVAILABLE
            return stamp, True
        record = self._local(key, stamp)
        ours = record is not None
        if record is not None and expiry:
            record = Record(record.value, record.payload, expiry[0], stamp)
        if record is None:  # storing an expired record deletes the key
            record = Record(None, b"", EXPIRED, stamp)
        found = l2.call("replace_older", key, record)
        if found is UNAVAILABLE:
            return UNAVAILABLE
        if found is not None and found > stamp:
            return found, False  # a newer value: ours goes
        if found == stamp or (found is not None and ours):
            return stamp, True  # ours is there (a timed-out write landed) or stored
        # Nothing there (deleted meanwhile?), or our value is gone here and
        # L2's older one was removed: a miss everywhere, never an older value.
        return max(new_stamp(), stamp + 1), False

    def _replay_count(self, key: str) -> Any:
        """Add a journaled count at L2: ``(stamp, True)``, ``UNAVAILABLE`` or
        ``None`` (another process of the machine took it first).

        Unlike a set or a delete, a count must be applied once: the entry is
        *taken* out of the journal (a transaction in L3) before it is added,
        so two processes reconciling at once never add it twice, and it is
        put back (its delta added to whatever was counted since) if L2 does
        not take it.
        """
        entry = self._take(key)
        if entry is None:
            return None
        _, stamp, delta, value, expires_at = entry
        count = self.authority.call("add_count", key, delta, value, expires_at)
        if count is UNAVAILABLE:
            self.record([(key, INCR, stamp, delta, value, expires_at)])
            return UNAVAILABLE
        after = max(new_stamp(), stamp + 1)
        if count is not None:
            # L3 keeps the count L2 now holds, with the stamp every process
            # is told (older copies go): requests held off L2 during the
            # replay count on from it, and an outage after starts from it.
            kept = Record(count, None, expires_at, after)
            for slot in self.copies:
                if implements(slot.tier, "keep_count"):
                    slot.call("keep_count", key, kept, True)
        return after, True

    def _take(self, key: str) -> list[Any] | None:
        """Remove the count journaled for ``key`` (memory and L3); return it."""
        taken: list[list[Any]] = []
        with self._lock:
            entry = self._memory["e"].get(key)
            if entry is not None and entry[0] == INCR:
                taken.append(self._memory["e"].pop(key))
        if self.keeper is not None:

            def take(data: bytes | None) -> bytes | None:
                doc = self._row(data)
                entry = doc["e"].get(key)
                if entry is not None and entry[0] == INCR:
                    taken.append(doc["e"].pop(key))
                return dump(doc)

            with contextlib.suppress(TierUnavailable):  # left for the next tick
                self.keeper.call("update_journal", self.name, take)
        if not taken:
            return None
        return functools.reduce(_merged, taken)

    def _local(self, key: str, stamp: int) -> Record | None:
        """Return our local copy written at ``stamp`` (widest tier first), or None.

        Without it, an expired stand-in is replayed instead: ``replace_older``
        then removes an older value at L2 and keeps a newer one.
        """
        for slot in reversed(self.copies):  # L3 outlives the process that wrote
            record = slot.call("get", key)
            found = record is not MISSING and record is not UNAVAILABLE
            if found and record.stamp == stamp:
                return record
        return None

    def _forget(self, done: Doc) -> None:
        """Remove reconciled entries, unless a newer change was recorded since."""
        if not (done["e"] or done["c"]):
            return

        def prune(doc: Doc) -> None:
            for key, entry in done["e"].items():
                if doc["e"].get(key) == entry:
                    del doc["e"][key]
            doc["c"] = [p for p in doc["c"] if p not in done["c"]]

        with self._lock:
            prune(self._memory)
        if self.keeper is not None:

            def change(data: bytes | None) -> bytes | None:
                doc = self._row(data)
                prune(doc)
                return dump(doc)

            # If L3 does not answer, the entries are replayed again later.
            with contextlib.suppress(TierUnavailable):
                self.keeper.call("update_journal", self.name, change)


def _entry(op: str, stamp: int, rest: list[Any]) -> list[Any]:
    """Return the journal entry of a change (``journal_rows``)."""
    if op == SET:
        return [op, stamp, *(json_expiry(e) for e in rest[:1])]
    if op == INCR:
        delta, value, expires_at = rest
        return [op, stamp, delta, value, json_expiry(expires_at)]
    return [op, stamp]


def _merged(one: list[Any], other: list[Any]) -> list[Any]:
    """Return the one entry for two changes of a key, recorded in either order.

    Counts add up whatever their order (two processes record them as they
    come); otherwise the newer change wins, and a count over a set or a
    delete makes a delete (the set's local copy, which the replay would read,
    now holds the count).
    """
    older, newer = (one, other) if other[1] >= one[1] else (other, one)
    if newer[0] != INCR:
        return newer
    if older[0] == INCR:
        return [INCR, newer[1], older[2] + newer[2], newer[3], newer[4]]
    return [DELETE, newer[1]]
