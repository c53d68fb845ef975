"""The invalidation bus: other processes drop their copies when a value changes.

Every process keeps copies in tiers narrower than the authority (L1 always;
L3 below an L2). After a change at the authority the chain *announces* it on a
stream carried by the authority's tier (a Redis Stream: ``tiers/redis/stream``),
and every other process's *listener* thread drops its superseded copies.

Messages (their fields: ``tiered_cache.messages``) carry the changed keys
with the stamps of their new values, the keys to drop whatever their stamp
(``touch``, ``incr``), or a cleared namespace, and the writer's origin. A
copy older than the stamp is dropped, a newer one stays (a late message never
drops a newer value), and the tier remembers the stamp for a while, so that a
promotion which read the old value before the message arrived cannot install
it after (``BaseTier.invalidate``). A listener skips messages of its own
origin (per chain): a process's own writes are not evicted by their echo.

Stamps. A stamp is a hybrid logical clock (``envelope.new_stamp``): wall-clock
nanoseconds, moved past every stamp the process has seen on the bus. A write
that follows a remote write it heard of therefore gets a larger stamp even
when its machine's clock runs behind; writes that are concurrent across
machines are ordered by their stamps, ties impossible within a process. Copies
compare stamps; the authority keeps what was written last.

Announcements are not lost either: on one server a write and its message are
one ``MULTI``/``EXEC``; any other message that cannot be appended waits in a
bounded ``Outbox`` (``tiered_cache.outbox``) that the listener sends when the
tier answers, coarsened or replaced by a new generation past its bounds.

Losing nothing, or knowing it. A listener reads the stream from the last id it
saw, so a dropped or killed connection misses nothing that the stream still
holds. It *knows* it may have missed something when the oldest entry kept is
newer than its last id (trimmed past it: it lagged by ``MAXLEN`` entries), the
stream was emptied or made again (``StreamState.lost_after``), or the
authority's *generation* changed (restarted empty, flushed): then it drops
every copy (an epoch bump), since it cannot know which changed. A message that
does not parse (``tiered_cache.messages``) is skipped, never read again, and
taken as such a gap. A listener that cannot read for longer than one heartbeat
drops every copy too and, until it reads again, keeps new copies for at most
``2 × HEARTBEAT + 1`` seconds (``L1_MAX_STALENESS`` otherwise): staleness stays
bounded while the bus is down (docs/faults.rst I3, #21-#26).

Copies that outlive the process (L3). A listener of a machine with L3 leaves
its position in L3 once a heartbeat; a process that starts trusts no L3 copy
until it has replayed what the machine missed since, or dropped them all when
that cannot be replayed (``tiered_cache.copies``).

The listener never adds work to a read: it runs in its own daemon thread,
started with the chain and again in every forked child.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from .envelope import observe_stamp
from .exceptions import TierUnavailable
from .forksafe import after_fork_in_child
from .messages import parse
from .outbox import Outbox
from .resilience import LogThrottle
from .stats import CounterSet
from .tiers.base import Stream, StreamState
from .tiers.optional import stream_id

__all__ = ["BusStats", "InvalidationBus"]

logger = logging.getLogger(__name__)

#: Messages read per call.
_BATCH = 1000
#: Seconds the listener lets messages gather after a read that found some.
#: Woken by every write (its own process's included: each ``set`` appends a
#: message), it took the GIL from the request thread while that waited for
#: Redis: with the bus on, a ``set`` cost 3 times its wall time without it
#: (419 against 135 us). Gathered, the listener wakes at most 100 times a
#: second under any write load; copies elsewhere go at most this much later.
GATHER = 0.01


@dataclass
class BusStats(CounterSet):
    """Counters of one bus in this process."""

    announced: int = 0
    announce_errors: int = 0
    resent: int = 0
    generation_bumps: int = 0
    received: int = 0
    dropped: int = 0
    gaps: int = 0
    outages: int = 0
    malformed: int = 0  # skipped, not parsed (``messages``): every copy dropped
    stamps_ignored: int = 0  # too far ahead to move the clock (``observe_stamp``)


class Anchoring(Protocol):
    """Where persisted copies stand on the stream (``tiered_cache.copies.Anchor``)."""

    def resume(self, state: StreamState | None, *, early: bool) -> str | None: ...
    def caught_up(self) -> None: ...
    def persist(self, generation: str, last_id: str) -> None: ...


class InvalidationBus:
    """Announce changes on a stream; apply other processes' announcements."""

    def __init__(
        self,
        stream: Stream,
        *,
        invalidate: Callable[[str, int], Any],
        drop: Callable[[str], Any],
        clear: Callable[[str], Any],
        drop_all: Callable[[], Any],
        bound_staleness: Callable[[float | None], Any],
        staleness: float | None,
        heartbeat: float,
        name: str,
        tick: Callable[[], Any] | None = None,
        anchor: Anchoring | None = None,
    ) -> None:
        self.stream = stream
        #: Called once a heartbeat after a successful read of the stream's
        #: state, off every request thread (the outage journal reconciles).
        self._tick = tick
        self._tick_log = LogThrottle()
        self.name = name
        self.heartbeat = heartbeat
        self.stats = BusStats()
        self._invalidate = invalidate
        self._drop = drop
        self._clear = clear
        self._drop_all = drop_all
        self._bound_staleness = bound_staleness
        self._staleness = staleness
        self._log = LogThrottle()
        self.healthy = True
        self.last_id: str | None = None
        self.generation: str | None = None
        #: Announcements not sent yet; the listener thread sends them.
        self.outbox = Outbox()
        self.anchor = anchor
        #: The persisted copies' place on the stream is settled (``_settle``).
        self.anchored = anchor is None
        self._catch_up: str | None = None
        # Find the place in the stream before the first read of this process
        # can copy anything: a change announced before that is already in the
        # authority. One bounded call; the listener retries if it fails.
        with contextlib.suppress(TierUnavailable):
            self._check_position()
        self._early = self.last_id is not None
        self._start()
        _buses.add(self)

    def _start(self) -> None:
        self.origin = uuid.uuid4().hex
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"tiered_cache-bus-{self.name}", daemon=True
        )
        self._thread.start()

    @property
    def settled(self) -> bool:
        """Whether the copies that outlive the process are judged (``_settle``):
        trusted again after a replay, or dropped.
        """
        return self.anchored and self._catch_up is None

    # -- announcing (the write path) ----------------------------------------------

    def writes_message(self, stamps: Iterable[tuple[str, int]]) -> dict[str, str]:
        """Return the message saying these keys changed at these stamps.

        For a tier that appends it with the write itself (``Chain.write``);
        the chain counts it in ``stats.announced`` when it was appended.
        """
        writes = [[key, stamp] for key, stamp in stamps]
        return {"w": json.dumps(writes), "o": self.origin} if writes else {}

    def announce_writes(self, stamps: Iterable[tuple[str, int]]) -> None:
        """Say that these keys changed at these stamps (set, delete)."""
        fields = self.writes_message(stamps)
        if fields:
            self._announce(fields)

    def queue_writes(self, stamps: Iterable[tuple[str, int]]) -> None:
        """Announce these writes from the listener thread (see ``Outbox``)."""
        fields = self.writes_message(stamps)
        if fields:
            self.outbox.add(fields)

    def announce_drops(self, keys: Sequence[str]) -> None:
        """Say that copies of these keys must go whatever their stamp."""
        if keys:
            self._announce({"x": json.dumps(list(keys))})

    def announce_clear(self, namespace: str) -> None:
        self._announce({"c": namespace})

    def _announce(self, fields: dict[str, str]) -> None:
        fields["o"] = self.origin
        try:
            self.stream.append(fields)
        except TierUnavailable as exc:
            # The change may well be made: the message waits in the outbox,
            # which the listener sends as soon as the tier answers again.
            self.stats.announce_errors += 1
            self.outbox.add(fields)
            if self._log.allow("announce"):
                logger.warning(
                    "invalidation bus %s: cannot announce (%s); sending it again "
                    "once the server answers",
                    self.name,
                    exc,
                )
            return
        self.stats.announced += 1

    def _send_outbox(self) -> None:
        """Send the queued announcements; past a heartbeat, make readers drop all.

        Runs on the listener thread. Never raises ``TierUnavailable``: a
        failure here is the writer's, not the reader's, and must not count
        as an outage of the listener.
        """
        messages, since = self.outbox.take()
        if since is None:
            return
        try:
            for fields in messages:
                self.stream.append({**fields, "o": self.origin})
                self.stats.resent += 1
            return
        except TierUnavailable:
            self.outbox.put_back(messages, since)
        if time.monotonic() - since < self.heartbeat:
            return
        # Not sent within the bound: a new generation makes every reader drop
        # every copy at its next position check (one heartbeat at most).
        with contextlib.suppress(TierUnavailable, NotImplementedError):
            self.stream.new_generation()
            self.outbox.clear()
            self.stats.generation_bumps += 1
            logger.warning(
                "invalidation bus %s: announcements not sent for %.1fs; new "
                "generation, every process drops its copies",
                self.name,
                time.monotonic() - since,
            )

    # -- listening -----------------------------------------------------------------

    def stop(self, *, wait: bool = True) -> None:
        """Stop listening; ``wait``: until the thread ended (at most 5 s)."""
        self._stop.set()
        if wait:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        failing_since: float | None = None
        next_check = next_persist = 0.0
        while not self._stop.is_set():
            try:
                if self.outbox:
                    self._send_outbox()
                if self.last_id is None or time.monotonic() >= next_check:
                    self._check_position()
                    next_check = time.monotonic() + self.heartbeat
                    if self._tick is not None:
                        self._run_tick()
                if not self.anchored:
                    self._settle()
                entries, held = self.stream.read(
                    self.last_id or "0-0", self.heartbeat, _BATCH
                )
                # Recovered only once a read answered: a hung server whose
                # reads keep failing is an outage after one heartbeat.
                if failing_since is not None:
                    self._recovered(failing_since)
                    failing_since = None
                    # Check for a gap and reconcile the journal at once, not
                    # a heartbeat later: until then, other processes read what
                    # L2 held before the outage.
                    next_check = 0.0
                # Entries after an id the stream no longer held may follow a
                # hole (emptied, trimmed): checked before they are taken.
                if entries and not held and self._check_position():
                    entries = []  # every copy dropped; read on from the end
                self._apply_all(entries)
                if entries:
                    self._stop.wait(GATHER)
                if self._catch_up is not None and (
                    not entries
                    or stream_id(self._catch_up) <= stream_id(self.last_id or "0-0")
                ):
                    self._catch_up = None
                    self.anchor.caught_up()  # type: ignore[union-attr]
                if self.anchor is not None and time.monotonic() >= next_persist:
                    self.anchor.persist(self.generation, self.last_id)  # type: ignore[arg-type]
                    next_persist = time.monotonic() + self.heartbeat
            except TierUnavailable as exc:
                # The first failed read is retried at once from the same id:
                # nothing is lost, and a killed connection is replaced without
                # a pause. Only a failure lasting a heartbeat is an outage,
                # logged and acted on (noticed within two heartbeats).
                now = time.monotonic()
                if failing_since is None:
                    failing_since = now
                    continue
                if self.healthy and now - failing_since >= self.heartbeat:
                    self._outage(exc)
                self._stop.wait(min(self.heartbeat / 10, 0.1))
            except Exception:  # a bug must not kill the listener silently
                logger.exception("invalidation bus %s: listener error", self.name)
                self._stop.wait(self.heartbeat)

    def _run_tick(self) -> None:
        """Run ``tick``; its failure never keeps the listener from reading."""
        try:
            self._tick()  # type: ignore[misc]
        except TierUnavailable:
            raise  # L2 did not answer: the read below would not either
        except Exception:
            if self._tick_log.allow("tick"):
                logger.exception("invalidation bus %s: tick failed", self.name)

    def _check_position(self) -> bool:
        """Find out whether anything was missed since ``last_id`` (a gap)."""
        state = self.stream.state()
        if self.last_id is None:  # first start: nothing copied yet to miss
            self.last_id, self.generation = state.last_id, state.generation
            return False
        trimmed = state.lost_after(self.last_id)
        if state.generation != self.generation or trimmed:
            self.stats.gaps += 1
            logger.warning(
                "invalidation bus %s: messages were lost (%s); dropping every "
                "local copy",
                self.name,
                "the server lost its data"
                if state.generation != self.generation
                else "the stream was trimmed, emptied or made again",
            )
            self._drop_all()
            self.last_id, self.generation = state.last_id, state.generation
            return True
        return False

    def _settle(self) -> None:
        """Replay what the persisted copies missed, or drop them (once).

        Runs before the first read: the listener then reads from the oldest
        position the copies' mark vouches for, and they are trusted again once
        it reaches where the stream stood when this process started.
        """
        state = self.stream.state()
        same = state.generation == self.generation
        start = self.anchor.resume(  # type: ignore[union-attr]
            state if same else None, early=self._early
        )
        target = self.last_id or "0-0"
        if start is not None and stream_id(target) > stream_id(start):
            self.last_id, self._catch_up = start, target
        else:
            self.anchor.caught_up()  # type: ignore[union-attr]
        self.anchored = True

    def _outage(self, exc: TierUnavailable) -> None:
        logger.warning(
            "invalidation bus %s: cannot read for %ss (%s); dropping local copies "
            "and keeping new ones at most %ss until it reads again",
            self.name,
            self.heartbeat,
            exc,
            2 * self.heartbeat + 1,
        )
        self.healthy = False
        self.stats.outages += 1
        self._drop_all()
        self._bound_staleness(2 * self.heartbeat + 1)

    def _recovered(self, since: float) -> None:
        if not self.healthy:
            self.healthy = True
            self._bound_staleness(self._staleness)
            logger.warning(
                "invalidation bus %s: reading again after %.1fs",
                self.name,
                time.monotonic() - since,
            )

    def _apply_all(self, entries: list[tuple[str, dict]]) -> None:
        """Apply ``entries``; one that cannot be applied is skipped (read again,
        it would fail again) and, its content unknown, drops every copy before
        the mark can vouch for anything after it.
        """
        bad: tuple[str, Exception] | None = None
        for entry_id, fields in entries:
            try:
                self._apply(fields)
            except TierUnavailable:
                raise
            except Exception as exc:  # MalformedMessage; a bug applying one
                self.stats.malformed += 1
                bad = bad or (entry_id, exc)
            self.last_id = entry_id
        if bad is not None:
            if self._log.allow("malformed"):
                logger.warning(
                    "invalidation bus %s: skipped message %s that cannot be "
                    "applied (%s); dropping every local copy",
                    self.name,
                    *bad,
                )
            self._drop_all()

    def _apply(self, fields: dict[str, str]) -> None:
        if fields.get("o") == self.origin:
            return
        message = parse(fields)  # all of it, before any of it is applied
        self.stats.received += 1
        for key, stamp in message.writes:
            self.stats.stamps_ignored += not observe_stamp(stamp)
            self.stats.dropped += bool(self._invalidate(key, stamp))
        for key in message.drops:
            self.stats.dropped += bool(self._drop(key))
        if message.clear is not None:
            self._clear(message.clear)
        if message.drop_all:  # a writer's outbox overflowed: anything may have changed
            self.stats.gaps += 1
            self._drop_all()


_buses: weakref.WeakSet[InvalidationBus] = weakref.WeakSet()


def _restart_in_child() -> None:
    # Threads do not survive fork(): each child listens on its own from where
    # the parent was (the copies it inherited are that fresh), with an origin
    # of its own (its writes are not its parent's).
    for bus in list(_buses):
        bus.outbox.after_fork()
        bus._start()


after_fork_in_child(_restart_in_child)


@atexit.register
def _stop_listening() -> None:
    # Servers are often gone before the interpreter is: no outage lines then.
    for bus in list(_buses):
        bus._stop.set()
