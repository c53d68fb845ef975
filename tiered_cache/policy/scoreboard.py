"""Duels: a cheap proxy comparison of the model against its base heuristic.

The learned policy's main judge is the shadow A/B (``chooser.py``); duels
decide before its first verdict and when there are no shadows.

Each time the model disagrees with the heuristic (the heuristic's victim
``v``, the model's choice ``c``), the pair is one duel, whichever of the two
was actually evicted: if ``v`` is accessed before ``c``, keeping ``v`` was
right and the model wins; if ``c`` comes first, the model loses. A duel
undecided after ``window`` accesses is dropped (a draw). LeCaR scores its
experts by the same regret idea (Vietri et al., HotStorage 2018).

While the model is in charge every disagreement is a duel; while the policy
has fallen back to the heuristic, the model is still asked on a sample of
evictions, so it can win its place back. The verdict is the sum of the last
``memory`` decided duels (+1 a win, -1 a loss): the model leads while it is
not negative. Memory is bounded by ``max_open`` undecided duels.
"""

from __future__ import annotations

from collections import OrderedDict, deque

__all__ = ["Scoreboard"]


class Scoreboard:
    """Undecided duels by key, and the results of the last decided ones."""

    def __init__(self, memory: int = 200, max_open: int = 4096) -> None:
        self.max_open = max_open
        self.results: deque[int] = deque(maxlen=memory)
        self.wins = self.losses = 0  # ever, for stats
        self.total = 0  # sum of results
        # duel id -> (heuristic's victim, model's victim, time)
        self._duels: OrderedDict[int, tuple[str, str, int]] = OrderedDict()
        #: key -> its undecided duels (read-only outside).
        self.by_key: dict[str, list[int]] = {}
        self._next = 0

    def duel(self, heuristic: str, model: str, now: int) -> None:
        """Record a disagreement: the heuristic would evict one, the model the other.

        A key may be in several duels (the heuristic's victim stays first in
        line while the model keeps overriding it); its next access decides
        them all (``accessed``).
        """
        if len(self._duels) >= self.max_open:
            self._drop(next(iter(self._duels)))
        self._next += 1
        self._duels[self._next] = (heuristic, model, now)
        by_key = self.by_key
        by_key.setdefault(heuristic, []).append(self._next)
        by_key.setdefault(model, []).append(self._next)

    def accessed(self, key: str) -> None:
        """``key`` was accessed: decide the duels it is in, if any.

        A key kept in several duels scores one win: its access is one hit
        saved, whereas each key the model evicted for it is a miss of its own
        (counting a win per duel had the model "winning" 3 to 1 on OLTP at
        10% while it cost 0.45 point of hit ratio).
        """
        duels = self.by_key.get(key)
        if duels is None:
            return
        kept = False
        for duel in list(duels):
            kept_key = self._duels[duel][0]
            self._drop(duel)
            if key == kept_key:
                kept = True
            else:
                self.losses += 1
                self._result(-1)
        if kept:
            self.wins += 1
            self._result(1)

    def _result(self, value: int) -> None:
        results = self.results
        if len(results) == results.maxlen:
            self.total -= results[0]
        results.append(value)
        self.total += value

    def expire(self, now: int, window: float) -> None:
        """Drop the duels older than ``window`` accesses (draws)."""
        duels = self._duels
        while duels:
            duel = next(iter(duels))
            if now - duels[duel][2] <= window:
                return
            self._drop(duel)

    def _drop(self, duel: int) -> None:
        by_key = self.by_key
        for key in self._duels.pop(duel)[:2]:
            duels = by_key[key]
            duels.remove(duel)
            if not duels:
                del by_key[key]

    def leading(self, min_results: int) -> bool:
        """Whether the model may decide: too few results yet, or not behind."""
        return len(self.results) < min_results or self.total >= 0

    def __len__(self) -> int:
        return len(self._duels)

    def clear(self) -> None:
        self._duels.clear()
        self.by_key.clear()
        self.results.clear()
        self.total = 0
