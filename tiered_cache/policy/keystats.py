"""What the learned policy knows of a key: cheap statistics and their features.

Each resident key has a ``KeyStats`` (``__slots__``, updated once per access
when the read buffer is drained, never on the lock-free hit path), and the
``Ghost`` keeps the statistics of recently evicted keys, so that a key that
comes back is known again (its count and gaps survive) and a label can say
that an evicted key was wanted. The ghost is bounded: at most ``limit`` keys,
the oldest evictions forgotten first.

Time is logical: the number of accesses the policy has seen (``now``), so the
features do not depend on the request rate, and every time feature is divided
by the store's capacity in entries (``scale``) so that a model trained on one
cache size can score keys in another (issue 9). Time to expiry is wall-clock
seconds (``expires_at`` is absolute, as the tier gives it).

The features (``FEATURES``, in this order) are log-compressed, because reuse
distances are heavy-tailed:

* ``age``: accesses since the key's last access, / scale;
* ``count``: accesses seen (ghost history included);
* ``gap1``, ``gap2``: the last two inter-access gaps, / scale (a key seen
  once has none: ``far``, and ``once`` says so);
* ``freq``: an exponentially decayed access count (half-life ``scale``);
* ``ttl``: seconds to expiry (``far`` for a key that does not expire);
* ``once``: 1 for a key accessed once, else 0.

The hashed key group (the key up to its last ``:``, ``/`` or ``.``; for a key
without one, all but its last three characters, which groups neighbouring
numeric ids) indexes a bias table fitted with the model.
"""

from __future__ import annotations

import math
import zlib
from collections import OrderedDict

__all__ = ["FEATURES", "GROUPS", "Ghost", "KeyStats", "group_of"]

FEATURES = ("age", "count", "gap1", "gap2", "freq", "ttl", "once")
#: Buckets of the hashed key-group bias table.
GROUPS = 1024
#: Stand-in for "never" (no gap yet, no expiry), already log-compressed.
_FAR = math.log1p(1e4)
_SEPARATORS = (":", "/", ".")


def group_of(key: str) -> int:
    """Return the hashed group of ``key`` in ``range(GROUPS)`` (stable across runs)."""
    cut = max(key.rfind(sep) for sep in _SEPARATORS)
    prefix = key[:cut] if cut > 0 else key[:-3]
    return zlib.crc32(prefix.encode("utf-8", "surrogatepass")) % GROUPS


class KeyStats:
    """Per-key statistics, updated by the policy's drain (inlined there for speed).

    On an access at ``now``: ``gap2, gap1 = gap1, now - last``; ``freq`` decays
    by ``0.5 ** (gap / half_life)`` and gains 1; ``count`` gains 1; ``last =
    now``. The group is computed when first needed (``group_of`` costs more
    than the rest of an access).
    """

    __slots__ = (
        "count",
        "expires",
        "freq",
        "gap1",
        "gap2",
        "group",
        "hash",
        "last",
        "size",
    )

    def __init__(self, key: str, now: int) -> None:
        self.last = now
        self.count = 0
        self.gap1 = -1  # -1: no gap yet
        self.gap2 = -1
        self.freq = 0.0
        self.expires: float | None = None
        self.size = 1
        self.group = -1  # -1: not computed yet (see ``group_of``)
        #: Stable 32-bit hash of the key, for spatial sampling (``chooser.py``).
        self.hash = zlib.crc32(key.encode("utf-8", "surrogatepass"))

    def features(self, now: int, scale: float, wall: float) -> tuple[float, ...]:
        """Return the ``FEATURES`` of this key at ``now``."""
        log1p = math.log1p
        gap1, gap2, count = self.gap1, self.gap2, self.count
        expires = self.expires
        return (
            log1p((now - self.last) / scale),
            log1p(count),
            log1p(gap1 / scale) if gap1 >= 0 else _FAR,
            log1p(gap2 / scale) if gap2 >= 0 else _FAR,
            log1p(self.freq * 0.5 ** ((now - self.last) / scale)),
            log1p(max(0.0, expires - wall)) if expires is not None else _FAR,
            1.0 if count <= 1 else 0.0,
        )


class Ghost:
    """The statistics of the ``limit`` most recently evicted keys."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._stats: OrderedDict[str, KeyStats] = OrderedDict()
        #: ``pop(key, None)``: return and forget ``key``'s statistics.
        self.pop = self._stats.pop

    def add(self, key: str, stats: KeyStats) -> None:
        """Remember an evicted key; forget the oldest beyond ``limit``."""
        ghost = self._stats
        ghost[key] = stats
        ghost.move_to_end(key)
        while len(ghost) > self.limit:
            ghost.popitem(last=False)

    def __contains__(self, key: str) -> bool:
        return key in self._stats

    def __len__(self) -> int:
        return len(self._stats)

    def clear(self) -> None:
        self._stats.clear()
