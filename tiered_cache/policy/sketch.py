"""A count-min sketch of 4-bit counters with periodic halving (TinyLFU).

Einziger, Friedman and Manes, "TinyLFU: A Highly Efficient Cache Admission
Policy", ACM ToS 2017; Cormode and Muthukrishnan, "An improved data stream
summary: the count-min sketch", J. Algorithms 2005. The shape is Caffeine's
``FrequencySketch``:

* depth 4: a key's estimate is the minimum of its 4 counters, one per row, so
  it can only over-count (collisions), never under-count; with rows 4 times as
  wide as the number of keys tracked the over-count is small;
* counters saturate at 15 (4 bits): TinyLFU only compares "how often lately",
  and a popular key needs no exact count;
* aging: after ``sample`` increments (10 x the keys tracked) every counter is halved,
  so old popularity fades and a formerly hot key can be displaced.

Counters are held one per byte (a ``bytearray`` of 4 rows): the 4-bit limit is
enforced, the packing into nibbles is not done (it would cost Python work on
every increment for half the memory). The halving is one C call
(``bytes.translate``). The row indexes come from ``hash(key)`` and a
multiplicative remix of it, so ``str`` keys cost no extra hashing (CPython
caches a string's hash); the hash is per process (``PYTHONHASHSEED``), so
collisions, and therefore hit ratios, vary slightly between runs.
"""

from __future__ import annotations

__all__ = ["CountMinSketch"]

_HALVE = bytes(i >> 1 for i in range(256))
_MIX = 0x9E3779B97F4A7C15  # 2**64 / golden ratio
_MAX = 15


class CountMinSketch:
    """Four rows of saturating counters; ``increment`` and ``estimate`` by key."""

    def __init__(self, keys: int = 16, sample_factor: int = 10) -> None:
        self.sample_factor = sample_factor
        self.resize(keys)

    def resize(self, keys: int) -> None:
        """Size the rows for about ``keys`` keys; counts restart from zero.

        As in Caffeine, a row has 4 counters per key (rounded up to a power of
        two) and the counters are halved after ``sample_factor`` x ``keys``
        increments.
        """
        self.keys = max(16, keys)
        size = 16
        while size < self.keys:
            size <<= 1
        size *= 4
        self.width = size
        self._mask = size - 1
        self._table = bytearray(4 * size)
        self.sample = self.sample_factor * self.keys
        self.additions = 0
        self.resets = 0

    def _indexes(self, key: object) -> tuple[int, int, int, int]:
        h = hash(key)
        g = (h * _MIX) >> 29
        m, w = self._mask, self.width
        return (h & m, w + ((h >> 32) & m), 2 * w + (g & m), 3 * w + ((g >> 21) & m))

    def increment(self, key: object) -> None:
        """Count one access of ``key`` (halving every counter every ``sample``)."""
        t = self._table
        for i in self._indexes(key):
            if t[i] < _MAX:
                t[i] += 1
        self.additions += 1
        if self.additions >= self.sample:
            self.halve()

    def increment_all(self, keys: list) -> None:
        """Count one access of each key: ``increment`` unrolled for a batch.

        The read buffer's drain calls this for every buffered hit, so the
        index arithmetic is inlined (no call and no tuple per key): about
        half the cost of calling ``increment`` in a loop.
        """
        t, m, w = self._table, self._mask, self.width
        w2, w3 = 2 * w, 3 * w
        for key in keys:
            h = hash(key)
            g = (h * _MIX) >> 29
            i = h & m
            if t[i] < _MAX:
                t[i] += 1
            i = w + ((h >> 32) & m)
            if t[i] < _MAX:
                t[i] += 1
            i = w2 + (g & m)
            if t[i] < _MAX:
                t[i] += 1
            i = w3 + ((g >> 21) & m)
            if t[i] < _MAX:
                t[i] += 1
        self.additions += len(keys)
        if self.additions >= self.sample:
            self.halve()

    def estimate(self, key: object) -> int:
        """Return the (over-)estimated recent count of ``key``, 0 to 15."""
        t = self._table
        a, b, c, d = self._indexes(key)
        return min(t[a], t[b], t[c], t[d])

    def halve(self) -> None:
        """Age every count by half (Caffeine's ``reset``)."""
        self._table = bytearray(self._table.translate(_HALVE))
        self.additions //= 2
        self.resets += 1
