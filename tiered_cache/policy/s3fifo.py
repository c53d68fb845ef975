"""S3-FIFO: three static FIFO queues, quick demotion of one-hit wonders.

Yang et al., "FIFO queues are all you need for cache eviction", SOSP 2023.
A new key enters the *small* FIFO (10% of the store). When the store is full
the small FIFO's oldest key leaves it: to the *main* FIFO if it was hit at
least ``promote_at`` times meanwhile, else out of the store, and its key (not
its value) into the *ghost* FIFO. A key inserted while in the ghost goes
straight to main. Main is a FIFO with reinsertion (a 2-bit frequency, capped
at 3, decremented each time the key goes round). Most keys of web traces are
never read twice; S3-FIFO evicts them after a short stay in the small queue
instead of letting them push a whole LRU list.

Sizes: the 10% is measured in the bytes the tier reports (``size``), so the
same code runs a byte budget (the L1) and a count budget (the simulator, where
every size is 1). The ghost holds at most ``ghost_ratio`` x the resident
count of keys. Hits go through the read buffer (``hits.py``).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator
from itertools import islice

from .base import BasePolicy
from .hits import HIT_BUFFER, HitBuffer

__all__ = ["S3FIFOPolicy"]


class S3FIFOPolicy(HitBuffer, BasePolicy):
    """S3-FIFO (small 10%, main with 2-bit frequency, ghost of evicted keys)."""

    name = "s3fifo"
    entry_bytes = 130  # bench/memory.py, 1 000 000 entries

    def __init__(
        self,
        small_ratio: float = 0.1,
        ghost_ratio: float = 0.9,
        promote_at: int = 1,
        hit_buffer: int = HIT_BUFFER,
    ) -> None:
        if not 0.0 < small_ratio < 1.0:
            raise ValueError(f"small_ratio must be in (0, 1), not {small_ratio!r}")
        if not 0.0 <= ghost_ratio <= 10.0:
            raise ValueError(f"ghost_ratio must be in [0, 10], not {ghost_ratio!r}")
        if promote_at not in (1, 2, 3):
            raise ValueError(f"promote_at must be 1, 2 or 3, not {promote_at!r}")
        self.small_ratio = small_ratio
        self.ghost_ratio = ghost_ratio
        self.promote_at = promote_at
        self._small: OrderedDict[str, int] = OrderedDict()  # key -> size
        self._main: OrderedDict[str, int] = OrderedDict()
        self._freq: dict[str, int] = {}
        self._ghost: OrderedDict[str, None] = OrderedDict()
        self._small_bytes = 0
        self._main_bytes = 0
        self._init_hits(hit_buffer)

    def _drain(self) -> None:
        freq = self._freq
        for key in self._take_hits():
            count = freq.get(key)
            if count is not None and count < 3:
                freq[key] = count + 1

    def on_insert(self, key: str, size: int, expires_at: float | None) -> None:
        if self._hits:
            self._drain()
        if key in self._freq:  # replaced without on_remove: start afresh
            self.on_remove(key)
        self._freq[key] = 0
        if key in self._ghost:
            del self._ghost[key]
            self._main[key] = size
            self._main_bytes += size
        else:
            self._small[key] = size
            self._small_bytes += size

    def victim(self) -> str | None:
        self._drain()
        small, main, freq = self._small, self._main, self._freq
        while True:
            if self._small_first():
                key = next(iter(small))
                if freq[key] < self.promote_at:
                    return key
                size = small.pop(key)
                self._small_bytes -= size
                main[key] = size
                self._main_bytes += size
                freq[key] = 0
            elif main:
                key = next(iter(main))
                count = freq[key]
                if not count:
                    return key
                freq[key] = count - 1
                main.move_to_end(key)
            else:
                return None

    def _small_first(self) -> bool:
        """Return whether the small FIFO pays for the next eviction."""
        return bool(self._small) and (
            not self._main
            or self._small_bytes
            >= self.small_ratio * (self._small_bytes + self._main_bytes)
        )

    def on_evict(self, key: str) -> None:
        if key in self._small:
            ghost = self._ghost
            ghost[key] = None
            limit = int(self.ghost_ratio * (len(self._small) + len(self._main)))
            while len(ghost) > limit:
                ghost.popitem(last=False)
        self.on_remove(key)

    def on_remove(self, key: str) -> None:
        if self._freq.pop(key, None) is None:
            return
        size = self._small.pop(key, None)
        if size is not None:
            self._small_bytes -= size
        else:
            self._main_bytes -= self._main.pop(key)

    def tail(self, n: int) -> list[str]:
        # victim() left the queue it evicts from with its victim in front.
        small, main = self._small, self._main
        first, second = (small, main) if self._small_first() else (main, small)
        keys = list(islice(first, n))
        if len(keys) < n:
            keys += islice(second, n - len(keys))
        return keys

    def where(self, key: str) -> str | None:
        """Return ``"small"``, ``"main"``, ``"ghost"`` or ``None`` for ``key``."""
        for name, queue in (
            ("small", self._small),
            ("main", self._main),
            ("ghost", self._ghost),
        ):
            if key in queue:
                return name
        return None

    def clear(self) -> None:
        self._small.clear()
        self._main.clear()
        self._freq.clear()
        self._ghost.clear()
        self._hits.clear()  # the same deque: on_hit stays bound to it
        self._small_bytes = self._main_bytes = 0

    def __len__(self) -> int:
        return len(self._freq)

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._small) + list(self._main))
