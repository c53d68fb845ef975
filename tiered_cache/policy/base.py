"""The eviction-policy contract: the policy decides, the tier acts.

A policy never touches stored values. The tier tells it what happened
(``on_insert``, ``on_hit``, ``on_remove``) and, under memory pressure, asks for
victims one at a time (``victim``) and removes them itself, as ristretto's
``Add`` returns victims for its caller to delete.

Costs matter: ``on_hit`` runs on every L1 hit, *without* the tier's lock, so it
must be cheap (it may even be a bound C method) and may lose updates
under contention (lossy recording is an
accepted error of an eviction heuristic). Every other method runs under the
tier's lock. The hot-path hooks take plain arguments instead of event objects
because allocating an object per hit would cost more than the hit itself;
``events.AccessEvent`` is the unit of offline replay and training.

Policies know nothing of Django or of tiers: pure Python (plus numpy for the
learned policy), so they can be replayed on traces in ``bench/``.
"""

from __future__ import annotations

from collections.abc import Iterator

__all__ = ["BasePolicy"]


class BasePolicy:
    """Base class of eviction policies; subclasses are built as ``cls(**options)``."""

    #: Short name used in ``OPTIONS["POLICY"]`` and metric labels.
    name = "base"

    def on_insert(self, key: str, size: int, expires_at: float | None) -> None:
        """Record that ``key`` entered the store (or was replaced)."""
        raise NotImplementedError

    def on_hit(self, key: str) -> None:
        """Record a read hit. Lock-free and may be lossy.

        May raise ``KeyError`` for a key removed by another thread since the
        tier's lookup (the tier ignores it); must raise nothing else.
        """
        raise NotImplementedError

    def on_remove(self, key: str) -> None:
        """Forget ``key`` (deleted, expired or evicted). Absent keys are ignored."""
        raise NotImplementedError

    def admit(self, key: str, size: int) -> bool:
        """Return whether a new ``key`` of ``size`` bytes may enter a full store."""
        return True

    def victim(self) -> str | None:
        """Return the key to evict next, or ``None`` when nothing is tracked."""
        raise NotImplementedError

    def clear(self) -> None:
        """Forget every key."""
        raise NotImplementedError

    def __len__(self) -> int:
        """Return how many keys the policy tracks (invariant checks use it)."""
        raise NotImplementedError

    def __iter__(self) -> Iterator[str]:
        """Iterate over the tracked keys (invariant checks use it)."""
        raise NotImplementedError
