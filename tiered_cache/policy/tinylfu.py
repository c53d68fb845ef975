"""W-TinyLFU: an LRU window, a segmented LRU main, a sketch as the doorman.

Einziger, Friedman and Manes, "TinyLFU: A Highly Efficient Cache Admission
Policy", ACM ToS 2017 (W-TinyLFU, section 4), as Caffeine shapes it
(``BoundedLocalCache``) with a fixed window instead of its hill climber:

* a new key enters the *window*, an LRU of ``window_ratio`` (1%) of the store,
  where a burst of accesses can prove itself;
* when the window is full its oldest key is a *candidate* for the *main* part,
  a segmented LRU (``probation`` and ``protected``, at most ``protected_ratio``
  = 80% of main): the candidate is compared with main's victim (probation's
  oldest) by their count in a count-min sketch (``sketch.py``) that has seen
  every access, resident or not. The more frequent one stays, the other is the
  victim. A hit in probation promotes the key to protected; protected's
  overflow goes back to probation.

With ``window_ratio=0`` there is no window and the contest happens in
``admit``: a new key colder than main's victim is refused, the TinyLFU of the
paper's section 3. The policy never knows the tier's budget: ``victim`` runs
only when the store is full, so the bytes it tracks then *are* the budget, and
the window and protected shares are taken of that. The sketch grows (and
restarts) when the store holds more keys than it was sized for, and ages
after ``sample_factor`` (10) x the keys the store holds. Hits go through the
read buffer (``hits.py``); a sketch increment is 4 Python byte updates, kept
off the lock-free hit path that way.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator
from itertools import islice

from .base import BasePolicy
from .hits import HIT_BUFFER, HitBuffer
from .sketch import CountMinSketch

__all__ = ["TinyLFUPolicy"]

_WINDOW, _PROBATION, _PROTECTED = 0, 1, 2
_SEGMENTS = ("window", "probation", "protected")


class TinyLFUPolicy(HitBuffer, BasePolicy):
    """W-TinyLFU: 1% LRU window, SLRU main (80% protected), sketch admission."""

    name = "tinylfu"
    entry_bytes = 165  # bench/memory.py, 1 000 000 entries

    def __init__(
        self,
        window_ratio: float = 0.01,
        protected_ratio: float = 0.8,
        sample_factor: int = 10,
        hit_buffer: int = HIT_BUFFER,
    ) -> None:
        if not 0.0 <= window_ratio < 1.0:
            raise ValueError(f"window_ratio must be in [0, 1), not {window_ratio!r}")
        if not 0.0 <= protected_ratio < 1.0:
            raise ValueError(
                f"protected_ratio must be in [0, 1), not {protected_ratio!r}"
            )
        if not isinstance(sample_factor, int) or sample_factor < 1:
            raise ValueError(
                f"sample_factor must be a positive int, not {sample_factor!r}"
            )
        self.window_ratio = window_ratio
        self.protected_ratio = protected_ratio
        self.sketch = CountMinSketch(16, sample_factor)
        # key -> size, least recent first; _where says which holds a key.
        self._segments: tuple[OrderedDict[str, int], ...] = (
            OrderedDict(),
            OrderedDict(),
            OrderedDict(),
        )
        self._where: dict[str, int] = {}
        self._bytes = [0, 0, 0]
        self._counted: str | None = None  # admit counted this key already
        self._incoming = 0
        self._victim: str | None = None  # what victim() returned last (tail)
        self._init_hits(hit_buffer)

    # -- bookkeeping ------------------------------------------------------------

    def _drain(self) -> None:
        hits = self._take_hits()
        if not hits:
            return
        self.sketch.increment_all(hits)
        where, segments, byts = self._where, self._segments, self._bytes
        probation, protected = segments[_PROBATION], segments[_PROTECTED]
        window_touch = segments[_WINDOW].move_to_end
        protected_touch = protected.move_to_end
        for key in hits:
            segment = where.get(key)
            if segment == _PROTECTED:
                protected_touch(key)
            elif segment == _WINDOW:
                window_touch(key)
            elif segment == _PROBATION:
                size = probation.pop(key)
                protected[key] = size
                where[key] = _PROTECTED
                byts[_PROBATION] -= size
                byts[_PROTECTED] += size
                self._demote_protected()

    def _demote_protected(self) -> None:
        segments, byts, where = self._segments, self._bytes, self._where
        protected, probation = segments[_PROTECTED], segments[_PROBATION]
        limit = self.protected_ratio * (byts[_PROBATION] + byts[_PROTECTED])
        while byts[_PROTECTED] > limit and len(protected) > 1:
            key, size = protected.popitem(last=False)
            probation[key] = size
            where[key] = _PROBATION
            byts[_PROTECTED] -= size
            byts[_PROBATION] += size

    def _move(self, key: str, to: int) -> None:
        size = self._segments[self._where[key]].pop(key)
        self._bytes[self._where[key]] -= size
        self._segments[to][key] = size
        self._bytes[to] += size
        self._where[key] = to

    def _main_victim(self) -> str | None:
        for segment in (_PROBATION, _PROTECTED):
            if self._segments[segment]:
                return next(iter(self._segments[segment]))
        return None

    # -- the contract --------------------------------------------------------------

    def admit(self, key: str, size: int) -> bool:
        if self._hits:
            self._drain()
        self.sketch.increment(key)
        self._counted = key
        self._incoming = size
        if self.window_ratio:
            return True
        victim = self._main_victim()
        return victim is None or self.sketch.estimate(key) > self.sketch.estimate(
            victim
        )

    def on_insert(self, key: str, size: int, expires_at: float | None) -> None:
        if self._hits:
            self._drain()
        if self._counted == key:
            self._counted = None
        else:
            self.sketch.increment(key)
        self._incoming = 0
        if key in self._where:  # replaced without on_remove: start afresh
            self.on_remove(key)
        target = _WINDOW if self.window_ratio else _PROBATION
        self._segments[target][key] = size
        self._bytes[target] += size
        self._where[key] = target
        # Caffeine ages after 10 x the maximum size; ours is the size the
        # store has reached (the maximum once full). Aging after 10 x the
        # sketch's width instead cost 2.7 points on OLTP at 10% (issue 9).
        sketch, resident = self.sketch, len(self._where)
        if resident > sketch.keys:
            sketch.resize(2 * resident)
        sketch.sample = sketch.sample_factor * max(16, resident)

    def victim(self) -> str | None:
        self._victim = victim = self._pick()
        return victim

    def _pick(self) -> str | None:
        self._drain()
        if not self.window_ratio:
            return self._main_victim()
        window = self._segments[_WINDOW]
        byts = self._bytes
        incoming = self._incoming or 1
        limit = self.window_ratio * (byts[0] + byts[1] + byts[2])
        # A window over its share (the store just filled up): its oldest keys
        # move to main, which is under its share by as much.
        while len(window) > 1:
            oldest, size = next(iter(window.items()))
            if byts[_WINDOW] - size + incoming <= limit:
                break
            self._move(oldest, _PROBATION)
        if not window:
            return self._main_victim()
        candidate = next(iter(window))
        if byts[_WINDOW] + incoming <= limit:  # room in the window: main pays
            return self._main_victim() or candidate
        victim = self._main_victim()
        if victim is None:
            return candidate
        estimate = self.sketch.estimate
        if estimate(candidate) > estimate(victim):
            self._move(candidate, _PROBATION)
            return victim
        return candidate

    def on_remove(self, key: str) -> None:
        segment = self._where.pop(key, None)
        if segment is not None:
            self._bytes[segment] -= self._segments[segment].pop(key)

    def tail(self, n: int) -> list[str]:
        # The last victim (when still here), main's next victims (probation,
        # then protected) and the window's oldest.
        segments = self._segments
        first = self._victim
        keys = [first] if first is not None and first in self._where else []
        keys += (key for key in islice(segments[_PROBATION], n + 1) if key != first)
        del keys[n:]
        for segment in (_WINDOW, _PROTECTED):
            if len(keys) < n:
                keys += islice(segments[segment], n - len(keys))
        return keys

    def where(self, key: str) -> str | None:
        """Return ``"window"``, ``"probation"``, ``"protected"`` or ``None``."""
        segment = self._where.get(key)
        return None if segment is None else _SEGMENTS[segment]

    def clear(self) -> None:
        for segment in self._segments:
            segment.clear()
        self._where.clear()
        self._hits.clear()  # the same deque: on_hit stays bound to it
        self._bytes[:] = [0, 0, 0]
        self.sketch.resize(16)
        self._counted = None

    def __len__(self) -> int:
        return len(self._where)

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._where))
