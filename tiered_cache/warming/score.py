"""Rank sampled keys by predicted reuse: exponentially decayed frequency.

A key's score is the sum over its recorded reads of ``2 ** (-age / half_life)``
(``age``: seconds between the read and the newest read in the history), each
read weighted by how many reads its record stands for (``History.weight``:
1 for a key of the spatial sample, ``READ_EVERY`` for one read in N). It
blends frequency (each read adds up to 1) and recency (a read one half-life
old counts half): a key read 10 times an hour ago scores like one read 5
times now, with the default one-hour half-life. Keys the history has no
name for (their name was trimmed from the side table) cannot be warmed and
are left out.

This is the seam for a learned model (issue 9, item 5): a scorer is any
callable ``score(history) -> [(key, score), ...]`` named by
``WARMING["SCORER"]``, best first; ``warm_cache`` takes the first ``--limit``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from ..history.store import History

__all__ = ["Scorer", "decayed_frequency"]

#: What ``WARMING["SCORER"]`` names.
Scorer = Callable[[History], list[tuple[str, float]]]


def decayed_frequency(
    history: History, *, half_life: float = 3600.0, now: float | None = None
) -> list[tuple[str, float]]:
    """Return ``[(key, score)]`` by decayed read frequency, best first.

    :param history: the sampled accesses and names (``History``).
    :param half_life: seconds after which a read counts half.
    :param now: the time ages are measured from (the newest read if None).
    """
    accesses = history.accesses
    if not accesses:
        return []
    if now is None:
        now = max(access[1] for access in accesses)
    rate = math.log(2) / half_life
    weight = history.weight
    scores: dict[int, float] = {}
    for hashed, at, _size, _hit, _tier in accesses:
        read = weight(hashed) * math.exp(-rate * max(0.0, now - at))
        scores[hashed] = scores.get(hashed, 0.0) + read
    names = history.names
    ranked = [(names[h], s) for h, s in scores.items() if h in names]
    ranked.sort(key=lambda pair: (-pair[1], pair[0]))
    return ranked
