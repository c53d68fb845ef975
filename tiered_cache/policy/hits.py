"""The read buffer: how a policy with real hit work stays off the hit path.

LRU's hit is one C call (``OrderedDict.move_to_end``). S3-FIFO, SIEVE and
TinyLFU need a few Python statements per hit (a capped counter, a bit, a
count-min sketch), which would cost the lock-free L1 hit 0.2-1 us. Caffeine's
answer is a read buffer: the hit appends the key to a bounded buffer and the
work is replayed later, under the lock the writer already holds. Here the
buffer is a ``collections.deque`` with ``maxlen``: ``append`` is one C call,
atomic under the GIL, and a full buffer drops its oldest records, a lossy
record that the contract allows (``base.py``). Policies drain it at the start
of every locked method that reads what hits decide (``victim``, ``on_insert``).
"""

from __future__ import annotations

from collections import deque

__all__ = ["HIT_BUFFER", "HitBuffer"]

#: Hits remembered between two drains; older ones are dropped (lossy).
HIT_BUFFER = 4096


class HitBuffer:
    """Mixin giving ``on_hit`` as a bound ``deque.append`` and ``_take_hits``."""

    def _init_hits(self, maxlen: int) -> None:
        if not isinstance(maxlen, int) or isinstance(maxlen, bool) or maxlen < 1:
            raise ValueError(f"hit_buffer must be a positive int, not {maxlen!r}")
        self._hits: deque[str] = deque(maxlen=maxlen)
        # The bound C method itself: no Python frame on the hit path.
        self.on_hit = self._hits.append  # type: ignore[method-assign]

    def _take_hits(self) -> list[str]:
        """Return and forget the buffered hits, oldest first (under the lock).

        Pops ``len`` items rather than looping ``while hits``: other threads
        keep appending and must not keep the drain running forever.
        """
        hits = self._hits
        if not hits:
            return []
        pop = hits.popleft
        return [pop() for _ in range(len(hits))]
