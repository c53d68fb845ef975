"""Which heuristic should the learned policy stand on? Ask sampled shadows.

SHARDS (Waldspurger et al., "Efficient MRC Construction with SHARDS", FAST
2015) estimates a cache's behaviour from a spatially sampled stream: keep the
keys whose hash falls under ``rate`` and replay them into a cache scaled by
``rate``. The chooser does this for each candidate heuristic (``lru``,
``s3fifo``, ``tinylfu`` by default): every sampled access is replayed into one
mini cache per heuristic (the same policy objects as the L1, driven as the
tier drives them) and their hits are counted. At the end of every epoch
(``epoch`` sampled accesses) the counts are halved (an exponential memory) and
the policy is told to change heuristic when another one leads the current by
``margin`` of the epoch's accesses, so it does not flap on noise.

The same stream feeds the learned policy's A/B judge when it has a model
(``set_judge``): one more mini cache run by the current heuristic with the
model; ``model_lead`` is its hits minus the plain shadow's at each verdict.

``rate`` is ``shadow / capacity`` (at most 1): the mini caches hold about
``shadow`` entries whatever the L1's size, which bounds the memory and the
work (a sampled access costs one replay per heuristic; an unsampled one, a
comparison). Small caches are replayed whole (rate 1).
"""

from __future__ import annotations

from .base import BasePolicy
from .store import CountStore

__all__ = ["Chooser"]

#: Hashes are 32-bit (``zlib.crc32``, stable across processes).
_SPACE = 2**32


class Chooser:
    """Mini caches of each candidate heuristic on a hash-sampled stream."""

    def __init__(
        self,
        policies: dict[str, BasePolicy],
        capacity: int,
        current: str,
        *,
        shadow: int = 512,
        epoch: int = 2000,
        margin: float = 0.01,
    ) -> None:
        rate = min(1.0, shadow / max(1, capacity))
        self.threshold = int(rate * _SPACE)
        self.current = current
        self.epoch = epoch
        self.margin = margin
        self.sampled = 0
        self.mini = mini = max(1, round(capacity * rate))
        self.shadows = [CountStore(p, mini, n) for n, p in policies.items()]
        #: An optional extra shadow run by the current heuristic *with* the
        #: model (``set_judge``): its lead over the plain shadow of the same
        #: heuristic, in hits per 2 epochs, after each verdict (None: no
        #: verdict yet since it was set).
        self.judge: CountStore | None = None
        self.model_lead: float | None = None

    def access(self, key: str) -> str | None:
        """Replay a sampled access; return a heuristic to switch to, or ``None``.

        Only keys whose 32-bit hash is below ``threshold`` are sampled; the
        caller checks, to save a call per unsampled access.
        """
        for shadow in self.shadows:
            shadow.access(key)
        if self.judge is not None:
            self.judge.access(key)
        self.sampled += 1
        if self.sampled % self.epoch:
            return None
        return self._verdict()

    def _verdict(self) -> str | None:
        shadows = self.shadows
        best = max(shadows, key=lambda s: s.hits)
        mine = next(s for s in shadows if s.name == self.current)
        # The halved counts weigh about 2 epochs of accesses.
        switch = best.hits - mine.hits > self.margin * 2 * self.epoch
        judge = self.judge
        if judge is not None:
            self.model_lead = judge.hits - mine.hits
            judge.hits /= 2
        for shadow in shadows:
            shadow.hits /= 2
        if switch:
            self.current = best.name
            return best.name
        return None

    def set_judge(self, store: CountStore | None) -> None:
        """Replay the sampled stream into ``store`` too (``None``: stop).

        Its hits restart from those of the current heuristic's shadow, so
        its lead counts from now on.
        """
        self.judge = store
        self.model_lead = None
        if store is not None:
            mine = next(s for s in self.shadows if s.name == self.current)
            store.hits = mine.hits

    def hit_ratios(self) -> dict[str, float]:
        """The shadows' recent hit counts per sampled access (for stats)."""
        weight = 2 * self.epoch
        return {s.name: round(s.hits / weight, 4) for s in self.shadows}
