"""Labels from the access stream itself: was a sampled key read again in time?

At some evictions the policy samples its candidates' features. A sample of
key ``k`` taken at logical time ``t`` is labelled 1 if ``k`` is accessed again
before ``t + window``, else 0 once ``t + window`` has passed. ``window`` is
tied to the measured eviction age (the policy passes the mean idle time of the
keys it evicts): a key reused within it would have been a hit had it stayed.
Nothing looks ahead: a label exists only once the stream has decided it.

Memory is bounded: at most ``max_pending`` keys wait for their label (new
samples are skipped while full) and the last ``max_samples`` labelled samples
are kept for the next fit.
"""

from __future__ import annotations

from collections import OrderedDict, deque

__all__ = ["Labeler"]


class Labeler:
    """Pending samples by key, and the labelled ones for the trainer."""

    def __init__(self, max_pending: int = 8192, max_samples: int = 50000) -> None:
        self.max_pending = max_pending
        # key -> (time, features, group); oldest sample first.
        self._pending: OrderedDict[str, tuple[int, list[float], int]] = OrderedDict()
        self.samples: deque[tuple[list[float], int, int]] = deque(maxlen=max_samples)
        self.labelled = 0  # ever, so the policy knows when to refit

    def sample(self, key: str, now: int, features: list[float], group: int) -> None:
        """Wait for the label of ``key`` seen with ``features`` at ``now``."""
        if key not in self._pending and len(self._pending) < self.max_pending:
            self._pending[key] = (now, features, group)

    def accessed(self, key: str, now: int, window: float) -> None:
        """``key`` was accessed at ``now``: a pending sample of it is decided."""
        pending = self._pending.pop(key, None)
        if pending is not None:
            self._label(pending, 1 if now - pending[0] <= window else 0)

    def expire(self, now: int, window: float) -> None:
        """Label 0 the samples whose window has passed without an access."""
        pending = self._pending
        while pending:
            key = next(iter(pending))
            if now - pending[key][0] <= window:
                return
            self._label(pending.pop(key), 0)

    def _label(self, pending: tuple[int, list[float], int], label: int) -> None:
        self.samples.append((pending[1], pending[2], label))
        self.labelled += 1

    def snapshot(self) -> tuple[list[list[float]], list[int], list[int]]:
        """Return copies of the labelled samples: rows, groups, labels."""
        samples = list(self.samples)
        return (
            [row for row, _, _ in samples],
            [group for _, group, _ in samples],
            [label for _, _, label in samples],
        )

    def __len__(self) -> int:
        return len(self._pending)

    def clear(self) -> None:
        self._pending.clear()
        self.samples.clear()
