"""The free connections of a blocking pool: a stack that costs nothing uncontended.

redis-py's ``BlockingConnectionPool`` keeps its free connections in a
``queue.LifoQueue`` (its ``queue_class`` argument). That queue takes a
``Condition`` and runs seven Python-level calls on every ``get`` and again on
every ``put``, waiter or not: on an L2 hit that was a measurable share of the
client's CPU time (see ``bench/latency.py --breakdown``). ``ConnectionStack``
is a drop-in ``queue_class``: the same LIFO order (so connections are made only
on demand, as redis-py's docstring explains), the same ``queue`` attribute
(redis-py reads it to count idle connections), ``queue.Empty`` after the
timeout, and a condition variable that is touched only when a thread actually
has to wait.

Why no wakeup is lost: a waiter registers (``_waiters``) under the lock and
then tries the stack again before it waits; ``put_nowait`` pushes first and
then reads ``_waiters``. Either the pusher sees the waiter and notifies it
(under the lock, so not before the waiter waits), or the waiter registered
after the push and finds the connection on its second try.
"""

from __future__ import annotations

import collections
import queue
import threading
import time
from typing import Any


class ConnectionStack:
    """A LIFO with ``LifoQueue``'s ``get``/``put_nowait``/``queue`` (see above)."""

    __slots__ = ("queue", "maxsize", "_waiters", "_ready")

    def __init__(self, maxsize: int = 0) -> None:
        self.queue: collections.deque[Any] = collections.deque()
        self.maxsize = maxsize
        self._waiters = 0
        self._ready = threading.Condition(threading.Lock())

    def qsize(self) -> int:
        return len(self.queue)

    def put_nowait(self, item: Any) -> None:
        if self.maxsize > 0 and len(self.queue) >= self.maxsize:
            raise queue.Full
        self.queue.append(item)
        if self._waiters:
            with self._ready:
                self._ready.notify()

    put = put_nowait  # never blocks: the pool never holds more than it made

    def get(self, block: bool = True, timeout: float | None = None) -> Any:
        try:
            return self.queue.pop()  # atomic under the GIL
        except IndexError:
            if not block:
                raise queue.Empty from None
        return self._wait(timeout)

    def get_nowait(self) -> Any:
        return self.get(block=False)

    def _wait(self, timeout: float | None) -> Any:
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._ready:
            self._waiters += 1
            try:
                while True:
                    try:
                        return self.queue.pop()
                    except IndexError:
                        pass
                    if deadline is None:
                        self._ready.wait()
                        continue
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise queue.Empty
                    self._ready.wait(remaining)
            finally:
                self._waiters -= 1
