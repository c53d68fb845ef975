"""The eviction-policy contract: the policy decides, the tier acts.

A policy never touches stored values. The tier tells it what happened
(``on_insert``, ``on_hit``, ``on_remove``, ``on_evict``) and, under memory
pressure, asks for victims one at a time (``victim``) and removes them itself,
as ristretto's ``Add`` returns victims for its caller to delete.

The order of calls when a new key meets a full store is fixed, and replays
(``tiered_cache.simulate``) follow it exactly: ``admit(key, size)`` once (a
``False`` refuses the key: nothing is evicted and the key is not stored), then
``victim()`` / ``on_evict(victim)`` until the key fits, then ``on_insert``.
``on_evict`` is separate from ``on_remove`` because a deletion or an expiry
says nothing about the key's worth while an eviction does: S3-FIFO remembers
evicted keys in a ghost list, a deleted key must not be remembered (issue 9).
``victim()`` may reorganise the policy's own queues (S3-FIFO and SIEVE move
keys while they look), but the key it returns stays tracked until the tier
calls ``on_evict`` or ``on_remove`` for it.

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
from itertools import islice

__all__ = ["BasePolicy"]


class BasePolicy:
    """Base class of eviction policies; subclasses are built as ``cls(**options)``."""

    #: Short name used in ``OPTIONS["POLICY"]`` and metric labels.
    name = "base"

    #: Bytes this policy keeps per resident key (its queues, bits, sketch
    #: share), counted against the tier's ``MAX_BYTES``. Measured as RSS
    #: growth over 1 000 000 entries (``bench/memory.py``); a policy that
    #: keeps more should say so.
    entry_bytes = 100

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
        """Forget ``key`` (deleted, expired or replaced). Absent keys are ignored.

        Evictions come through ``on_evict``, which defaults to this.
        """
        raise NotImplementedError

    def on_evict(self, key: str) -> None:
        """Forget ``key`` because the tier evicted it on this policy's advice.

        Defaults to ``on_remove``; policies with a memory of evicted keys (a
        ghost list) override it.
        """
        self.on_remove(key)

    def admit(self, key: str, size: int) -> bool:
        """Return whether a new ``key`` of ``size`` bytes may enter a full store.

        Called once per insertion into a full store, right before the
        ``victim()`` calls that make room; a ``False`` refuses the key (the
        tier counts it in ``stats.refused``). It counts as an access of
        ``key`` for policies that keep frequencies (TinyLFU).
        """
        return True

    def victim(self) -> str | None:
        """Return the key to evict next, or ``None`` when nothing is tracked."""
        raise NotImplementedError

    def tail(self, n: int) -> list[str]:
        """Return up to ``n`` tracked keys, next to be evicted first.

        The learned policy asks for its candidates here (issue 9): the keys
        this heuristic would evict soon. Call it right after ``victim()``,
        whose reorganising it relies on. The default walks ``__iter__``;
        policies override it with a walk of their queue that stops after ``n``.
        """
        return list(islice(iter(self), n))

    def clear(self) -> None:
        """Forget every key."""
        raise NotImplementedError

    def __len__(self) -> int:
        """Return how many keys the policy tracks (invariant checks use it)."""
        raise NotImplementedError

    def __iter__(self) -> Iterator[str]:
        """Iterate over the tracked keys (invariant checks use it)."""
        raise NotImplementedError
