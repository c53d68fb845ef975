"""The L1 miss-ratio curve, estimated online from sampled keys (SHARDS).

Waldspurger, Park, Garthwaite, Ahmad, "Efficient MRC Construction with
SHARDS", FAST 2015. An LRU cache of ``C`` entries hits an access when fewer
than ``C`` other keys were read since the key's previous access (its *reuse
distance*). Measuring that for every key costs a stack of every key; SHARDS
measures it only over keys sampled by hash (``sampling``), where the
distinct keys seen between two accesses are ``rate`` times the true number,
and scales back up: true distance ~ ``sampled distance / rate + 1``.

Here:

* reuse distances come from a Fenwick tree over access slots (Bennett and
  Kruskal's method): each tracked key holds a 1 at the slot of its last
  access, so the keys read since slot ``s`` are a prefix-sum difference,
  ``O(log n)`` per sampled access; slots are renumbered when they run out;
* memory is bounded: at most ``max_keys`` sampled keys are tracked, the one
  read longest ago is forgotten first (its next access counts as a miss at
  every size, which only matters for sizes beyond ``max_keys / rate``);
* distances go into a histogram of 32 bins per doubling, so the curve can be
  read at any size (2% resolution);
* the SHARDS_adj correction: when the number of all requests is known, the
  difference between the expected (``rate x requests``) and the actual
  number of sampled accesses is added to the first bin (hits at size 1),
  which removes most of the error of an unlucky sample of hot keys;
* ``window``: after that many sampled accesses the histogram is halved, so
  an online estimate follows a changing workload.

It estimates LRU. Other policies (S3-FIFO, TinyLFU) usually do better at the
same size; the curve is a guide to "what would more memory buy", not a
prediction of that policy's hit ratio (docs/warming.rst).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Iterable, Sequence

__all__ = ["MissRatioCurve"]

_BINS_PER_DOUBLING = 32


class _Fenwick:
    """Prefix sums over slots 1..size with point updates."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.tree = [0] * (size + 1)

    def add(self, index: int, delta: int) -> None:
        tree, size = self.tree, self.size
        while index <= size:
            tree[index] += delta
            index += index & -index

    def prefix(self, index: int) -> int:
        tree, total = self.tree, 0
        while index > 0:
            total += tree[index]
            index -= index & -index
        return total


class MissRatioCurve:
    """Online SHARDS estimate of LRU hit ratio against cache size (entries)."""

    def __init__(
        self, rate: float, max_keys: int = 8192, window: float = math.inf
    ) -> None:
        if not 0 < rate <= 1:
            raise ValueError(f"rate must be in (0, 1], not {rate!r}")
        self.rate = rate
        self.max_keys = max_keys
        self.window = window
        self._last: OrderedDict[int, int] = OrderedDict()  # hash -> slot
        self._tree = _Fenwick(4 * max_keys)
        self._next = 1
        self._bins: dict[int, float] = {}
        #: Sampled accesses counted (decayed with the histogram).
        self.accesses = 0.0
        self._since_decay = 0

    def access(self, hashed: int) -> None:
        """Record an access of the sampled key whose hash is ``hashed``."""
        last, tree = self._last, self._tree
        slot = last.pop(hashed, None)
        if slot is not None:
            others = tree.prefix(self._next - 1) - tree.prefix(slot)
            tree.add(slot, -1)
            distance = others / self.rate + 1
            index = math.ceil(math.log2(distance) * _BINS_PER_DOUBLING)
            self._bins[index] = self._bins.get(index, 0.0) + 1.0
        if self._next > tree.size:
            self._renumber()
        tree.add(self._next, 1)
        last[hashed] = self._next
        self._next += 1
        if len(last) > self.max_keys:
            _, oldest = last.popitem(last=False)
            tree.add(oldest, -1)
        self.accesses += 1
        self._since_decay += 1
        if self._since_decay >= self.window:
            self._decay()

    def feed(self, hashes: Iterable[int]) -> None:
        """Record the accesses of ``hashes`` in order."""
        for hashed in hashes:
            self.access(hashed)

    def hit_ratios(
        self, sizes: Sequence[float], requests: float | None = None
    ) -> list[float | None]:
        """Return the estimated LRU hit ratio at each of ``sizes`` (entries).

        ``requests``: every request the sample was drawn from (all keys),
        for the SHARDS_adj correction; ``None`` when unknown. ``None`` in the
        result when nothing was sampled yet.
        """
        sampled = self.accesses
        if sampled <= 0:
            return [None for _ in sizes]
        shift = 0.0
        if requests is not None and requests > 0:
            expected = requests * self.rate
            shift, sampled = expected - sampled, expected
        ordered = sorted(self._bins.items())
        ratios: list[float | None] = []
        for size in sizes:
            if size < 1:
                ratios.append(0.0)
                continue
            limit = math.log2(size) * _BINS_PER_DOUBLING
            hits = shift + sum(count for index, count in ordered if index <= limit)
            ratios.append(min(1.0, max(0.0, hits / sampled)))
        return ratios

    def __len__(self) -> int:
        """Return how many sampled keys are tracked."""
        return len(self._last)

    def _renumber(self) -> None:
        """Give the tracked keys slots 1..n again, in the order of their access."""
        tree = self._tree = _Fenwick(self._tree.size)
        for slot, hashed in enumerate(list(self._last), start=1):
            self._last[hashed] = slot
            tree.add(slot, 1)
        self._next = len(self._last) + 1

    def _decay(self) -> None:
        self._bins = {index: count / 2 for index, count in self._bins.items()}
        self.accesses /= 2
        self._since_decay = 0
