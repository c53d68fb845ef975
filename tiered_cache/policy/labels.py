"""Labels from the access stream itself: was a sampled key read again in time?

At some evictions the policy samples its candidates' features. A sample of
key ``k`` taken at logical time ``t`` is labelled 1 if ``k`` is accessed again
before ``t + window``, else 0 once ``t + window`` has passed. ``window`` is
tied to the measured eviction age (the policy passes the mean idle time of the
keys it evicts): a key reused within it would have been a hit had it stayed.
Nothing looks ahead: a label exists only once the stream has decided it.

Memory is bounded: at most ``max_pending`` keys wait for their label (new
samples are skipped while full) and the last ``max_samples`` labelled samples
are kept for the next fit, in flat ``array`` ring buffers: tens of thousands
of small Python objects would make every full garbage collection walk them
(measured: a labelled sample kept as a tuple and a list cost ~25 us of
collector time on the eviction path; in arrays it costs nothing to keep).
"""

from __future__ import annotations

from array import array
from collections import OrderedDict
from collections.abc import Sequence

__all__ = ["Labeler"]


class Labeler:
    """Pending samples by key, and the labelled ones for the trainer."""

    def __init__(self, max_pending: int = 8192, max_samples: int = 50000) -> None:
        self.max_pending = max_pending
        self.max_samples = max_samples
        #: key -> (time, features, group), oldest sample first (read-only outside).
        self.pending: OrderedDict[str, tuple[int, Sequence[float], int]] = OrderedDict()
        self._rows = array("d")  # ring buffers: sample i at i % max_samples
        self._groups = array("l")
        self._labels = array("b")
        self.labelled = 0  # ever, so the policy knows when to refit

    def sample(self, key: str, now: int, features: Sequence[float], group: int) -> None:
        """Wait for the label of ``key`` seen with ``features`` at ``now``."""
        if key not in self.pending and len(self.pending) < self.max_pending:
            self.pending[key] = (now, features, group)

    def accessed(self, key: str, now: int, window: float) -> None:
        """``key`` was accessed at ``now``: a pending sample of it is decided."""
        pending = self.pending.pop(key, None)
        if pending is not None:
            self._label(pending, 1 if now - pending[0] <= window else 0)

    def expire(self, now: int, window: float) -> None:
        """Label 0 the samples whose window has passed without an access."""
        pending = self.pending
        while pending:
            key = next(iter(pending))
            if now - pending[key][0] <= window:
                return
            self._label(pending.pop(key), 0)

    def _label(self, pending: tuple[int, Sequence[float], int], label: int) -> None:
        _, features, group = pending
        slot = self.labelled % self.max_samples
        if len(self._labels) < self.max_samples:
            self._rows.extend(features)
            self._groups.append(group)
            self._labels.append(label)
        else:
            width = len(features)
            self._rows[slot * width : (slot + 1) * width] = array("d", features)
            self._groups[slot] = group
            self._labels[slot] = label
        self.labelled += 1

    @property
    def kept(self) -> int:
        """How many labelled samples are kept for the next fit."""
        return len(self._labels)

    def snapshot(self) -> tuple[list[list[float]], list[int], list[int]]:
        """Return copies of the kept labelled samples: rows, groups, labels."""
        count = len(self._labels)
        width = len(self._rows) // count if count else 0
        rows = self._rows.tolist()
        return (
            [rows[i * width : (i + 1) * width] for i in range(count)],
            self._groups.tolist(),
            self._labels.tolist(),
        )

    def __len__(self) -> int:
        return len(self.pending)

    def clear(self) -> None:
        self.pending.clear()
        del self._rows[:], self._groups[:], self._labels[:]
