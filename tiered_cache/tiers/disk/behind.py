"""Copies written to disk after the caller returns (write-behind).

Below an L2, L3 holds *copies*: the value is already stored at the authority,
and losing a local copy loses nothing (the next read fetches it again). Writing
the copy costs a SQLite transaction with its commit, more than the Redis write
it follows; here it leaves the request thread. ``WriteBehind`` keeps the newest
pending record per key and one thread per tier writes them in batches, one
transaction per shard and batch (``batches.set_many``), so a burst of writes
costs fewer commits than the same writes made one by one.

What keeps it correct:

* **Newest wins, per key.** A key set again before its copy is written keeps
  only the newer record; the thread writes one batch at a time, so a record
  taken for writing lands before any later one.
* **Nothing lands after what replaced it.** Every call of the tier that
  decides a key's row itself (``delete``, ``invalidate``, a synchronous
  ``set``, ``add``, ``incr``, ``touch``...) first takes the key out of the
  queue (``take``) and waits while the thread is writing it.
* **Reads see the queue.** ``peek`` returns a pending record, so this process
  never reads an older row than the copy it just queued. Other processes of
  the machine see it when it is written (milliseconds).
* **Bounded.** Past ``max_bytes`` of pending payloads, ``put`` refuses and the
  caller writes synchronously: back-pressure, never a silent drop, because a
  dropped copy would leave the *older* row in place.
* **Failures.** A batch the disk refuses (lock timeout, disk full) is retried
  twice; then its keys are deleted (best effort) so no older copy stays
  served, counted in ``failed`` and logged once per 10 s.
* **fork() and exit.** A forked child starts with an empty queue (the parent
  writes what it had queued); interpreter exit waits for the queue to drain,
  up to ``drain_timeout`` (``DiskTier.drain`` does the same on demand).
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from ...envelope import Record
from ...exceptions import TierUnavailable
from ...forksafe import after_fork_in_child
from ...resilience import LogThrottle

__all__ = ["BehindStats", "WriteBehind"]

logger = logging.getLogger("tiered_cache")

#: Writes of a batch the disk refused, before its keys are given up.
ATTEMPTS = 3
#: Seconds between two attempts of a refused batch.
RETRY_PAUSE = 0.02
#: Seconds copies gather before the thread writes them, unless ``BATCH`` are
#: waiting or a caller drains. Waking the thread on every write made it take
#: the GIL while the request thread waited for Redis, and hand it back only at
#: its next I/O: a ``set`` then waited for the thread's Python work (a
#: convoy), and cost more wall time than writing the copy itself.
INTERVAL = 0.05
#: Copies waiting that wake the thread before ``INTERVAL`` is over.
BATCH = 256
#: What a record whose payload is not bytes counts against ``max_bytes``.
_MIN_BYTES = 64

#: (record, time it was queued, rising): the time is when the copy was made;
#: ``rising`` is None for a copy, else the direction of a kept count
#: (``DiskTier.keep_count``).
Pending = tuple[Record, float, "bool | None"]


@dataclass
class BehindStats:
    """What the queue did in this process (``DiskTier.describe``)."""

    queued: int = 0
    written: int = 0
    batches: int = 0
    failed: int = 0
    synchronous: int = 0  # refused by a full queue: written by the caller

    def snapshot(self, pending: int) -> dict[str, int]:
        return {**self.__dict__, "pending": pending}


class WriteBehind:
    """The pending copies of one disk tier and the thread that writes them.

    ``write(batch)`` writes ``{key: (record, queued_at)}`` or raises
    ``TierUnavailable``; ``forget(keys)`` deletes rows (best effort).
    """

    def __init__(
        self,
        name: str,
        write: Callable[[Mapping[str, Pending]], None],
        forget: Callable[[Iterable[str]], None],
        *,
        max_bytes: int,
        clock: Callable[[], float] = time.time,
        drain_timeout: float = 2.0,
    ) -> None:
        self.name = name
        self._write = write
        self._forget = forget
        self.max_bytes = max_bytes
        self._clock = clock
        self.drain_timeout = drain_timeout
        self.stats = BehindStats()
        self._log = LogThrottle()
        self._reset()
        _queues.add(self)

    def _reset(self) -> None:
        """Start empty, with new locks and no thread (also in a forked child)."""
        self._cond = threading.Condition(threading.Lock())
        self._pending: dict[str, Pending] = {}
        self._in_flight: dict[str, Pending] = {}
        self._bytes = 0
        self._thread: threading.Thread | None = None
        self._closed = False
        self._urgent = False  # a caller drains: write without waiting

    # -- the caller's side ---------------------------------------------------------

    def put(self, key: str, record: Record, rising: bool | None = None) -> bool:
        """Queue ``record`` as the newest copy of ``key`` (a count to keep,
        moving up or down, when ``rising`` is given); False if the queue is
        full (the caller then writes it itself, after ``take``)."""
        size = _size(record)
        with self._cond:
            if self._closed or self._bytes + size > self.max_bytes:
                self.stats.synchronous += 1
                return False
            older = self._pending.pop(key, None)
            if older is not None:
                self._bytes -= _size(older[0])
                if rising is not None and older[2] is rising:
                    record = _kept(older[0], record, rising)
            self._pending[key] = (record, self._clock(), rising)
            self._bytes += size
            self.stats.queued += 1
            if self._thread is None:
                self._start()
            elif older is None and len(self._pending) in (1, BATCH):
                self._cond.notify()  # start the interval; end it early
        return True

    def peek(self, key: str) -> Pending | None:
        """Return the pending (or being written) copy of ``key``, or None.

        Takes no lock: a dict lookup is atomic, and a record taken by the
        thread meanwhile is in ``_in_flight`` until it is on disk.
        """
        return self._pending.get(key) or self._in_flight.get(key)

    def take(self, key: str, older_than: int | None = None) -> Pending | None:
        """Remove ``key``'s pending copy (only one stamped before ``older_than``,
        when given) and return it, once nothing of it is being written: the
        caller then decides the row itself. Takes no lock when nothing of
        ``key`` is queued, the common case."""
        if self.peek(key) is None:
            return None
        with self._cond:
            pending = self._pending.get(key)
            if pending is not None and (
                older_than is None or pending[0].stamp < older_than
            ):
                del self._pending[key]
                self._bytes -= _size(pending[0])
            else:
                pending = None
            self._wait_for(lambda: key not in self._in_flight)
        return pending

    def cancel_where(self, test: Callable[[str, Pending], bool]) -> None:
        """Drop every pending copy ``test`` selects; wait for the batch being
        written (``clear``, ``invalidate_all``)."""
        with self._cond:
            for key in [k for k, p in self._pending.items() if test(k, p)]:
                self._bytes -= _size(self._pending.pop(key)[0])
            self._wait_for(lambda: not self._in_flight)

    def drain(self, timeout: float | None = None) -> bool:
        """Wait until every queued copy is written; return whether it was."""
        with self._cond:
            self._urgent = True
            self._cond.notify_all()
            return self._wait_for(
                lambda: not self._pending and not self._in_flight,
                self.drain_timeout if timeout is None else timeout,
            )

    def stop(self) -> None:
        """Write what is queued (up to ``drain_timeout``), then stop the thread.

        At exit only: Django closes caches after every request, and a drain
        there would put the writes back on the request's time.
        """
        self.drain()
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def pending_count(self) -> int:
        return len(self._pending) + len(self._in_flight)

    def _wait_for(self, done: Callable[[], bool], timeout: float | None = None) -> bool:
        """Wait (holding ``_cond``) until ``done()``; bounded by ``drain_timeout``.

        A thread stuck on a disk that does not answer must not hang the
        caller: after the timeout it goes on, and the row may then be
        written by the thread after the caller's own change.
        """
        if self._thread is threading.current_thread():
            return done()
        return self._cond.wait_for(
            done, self.drain_timeout if timeout is None else timeout
        )

    # -- the thread's side ---------------------------------------------------------

    def _start(self) -> None:
        self._thread = threading.Thread(
            target=self._run, name=f"tiered_cache-write-behind-{self.name}", daemon=True
        )
        self._thread.start()

    def _run(self) -> None:
        cond = self._cond
        while True:
            with cond:
                cond.wait_for(lambda: self._pending or self._closed)
                cond.wait_for(
                    lambda: self._closed or self._urgent or len(self._pending) >= BATCH,
                    INTERVAL,
                )
                if not self._pending:
                    if self._closed:
                        return  # closed and drained
                    continue  # what gathered was cancelled meanwhile
                # In this order: ``peek`` takes no lock and must find the
                # key in one dict or the other at every instant.
                batch = self._in_flight = self._pending
                self._pending = {}
                self._bytes = 0
            try:
                self._write_batch(batch)
            finally:
                with cond:
                    self._in_flight = {}
                    if not self._pending:
                        self._urgent = False
                    cond.notify_all()

    def _write_batch(self, batch: Mapping[str, Pending]) -> None:
        for attempt in range(ATTEMPTS):
            try:
                self._write(batch)
            except TierUnavailable as exc:
                error: BaseException = exc
                if attempt + 1 < ATTEMPTS:
                    time.sleep(RETRY_PAUSE)
                    continue
            except Exception as exc:  # never kill the thread: the queue would stall
                error = exc
            else:
                self.stats.batches += 1
                self.stats.written += len(batch)
                return
            break
        self.stats.failed += len(batch)
        # The disk may be gone: then the copies' trust bounds what stays.
        with contextlib.suppress(Exception):
            self._forget(batch.keys())
        if self._log.allow("failed"):
            logger.warning(
                "tiered_cache: tier %r could not write %d local copies behind "
                "the request (%s: %s); dropped them and their older rows",
                self.name,
                len(batch),
                type(error).__name__,
                error,
            )


def _kept(older: Record, newer: Record, rising: bool) -> Record:
    """Merge two counts queued for ``keep_count`` as it merges them on disk:
    the count only moves the way the counter moves, the newest stamp stays."""
    if (older.value > newer.value) is rising and older.value != newer.value:
        stamp = max(older.stamp, newer.stamp)
        return Record(older.value, None, newer.expires_at, stamp)
    if older.stamp > newer.stamp:
        return Record(newer.value, None, newer.expires_at, older.stamp)
    return newer


def _size(record: Record) -> int:
    payload = record._payload
    return len(payload) if type(payload) is bytes else _MIN_BYTES


_queues: weakref.WeakSet[WriteBehind] = weakref.WeakSet()


def _reset_in_child() -> None:
    for queue in list(_queues):
        queue._reset()


def _drain_at_exit() -> None:
    for queue in list(_queues):
        if queue._thread is not None and not queue._closed:
            queue.stop()


after_fork_in_child(_reset_in_child)
atexit.register(_drain_at_exit)
