"""SIEVE: a FIFO queue with a visited bit and a hand that sweeps it.

Zhang et al., "SIEVE is Simpler than LRU: an Efficient Turn-Key Eviction
Algorithm for Web Caches", NSDI 2024. New keys enter at the head and never
move. A hit only sets the key's visited bit. To evict, a hand walks from where
it stopped last time towards the head (wrapping to the tail), clearing the
visited bits it passes, and stops at the first key not visited: that is the
victim, and the hand stays there for next time. Old keys that are still read
stay put while new keys that are not read leave early ("lazy promotion, quick
demotion"), with no list reordering on a hit.

The queue is a doubly linked list kept in two dicts (``_newer``, ``_older``)
so that a deletion in the middle is O(1); the visited bits are a set, set by
draining the read buffer (``hits.py``) so that a hit on a key evicted
meanwhile cannot leave a bit behind.
"""

from __future__ import annotations

from collections.abc import Iterator

from .base import BasePolicy
from .hits import HIT_BUFFER, HitBuffer

__all__ = ["SievePolicy"]


class SievePolicy(HitBuffer, BasePolicy):
    """SIEVE: FIFO insertion, visited bits, a hand that remembers its place."""

    name = "sieve"
    entry_bytes = 85  # bench/memory.py, 1 000 000 entries

    def __init__(self, hit_buffer: int = HIT_BUFFER) -> None:
        self._newer: dict[str, str | None] = {}  # towards the head
        self._older: dict[str, str | None] = {}  # towards the tail
        self._head: str | None = None  # newest
        self._tail: str | None = None  # oldest
        self._hand: str | None = None  # None: start at the tail
        self._visited: set[str] = set()
        self._init_hits(hit_buffer)

    def _drain(self) -> None:
        older, visited = self._older, self._visited
        for key in self._take_hits():
            if key in older:
                visited.add(key)

    def on_insert(self, key: str, size: int, expires_at: float | None) -> None:
        if self._hits:
            self._drain()
        if key in self._older:  # replaced without on_remove: start afresh
            self.on_remove(key)
        head = self._head
        self._older[key] = head
        self._newer[key] = None
        if head is None:
            self._tail = key
        else:
            self._newer[head] = key
        self._head = key

    def victim(self) -> str | None:
        self._drain()
        visited, newer = self._visited, self._newer
        hand = self._hand if self._hand is not None else self._tail
        while hand is not None and hand in visited:
            visited.discard(hand)
            hand = newer[hand]
            if hand is None:
                hand = self._tail
        self._hand = hand
        return hand

    def tail(self, n: int) -> list[str]:
        # From the hand towards the head: the keys the hand reaches next.
        keys: list[str] = []
        newer = self._newer
        key = self._hand if self._hand is not None else self._tail
        while key is not None and len(keys) < n:
            keys.append(key)
            key = newer[key]
        return keys

    def on_remove(self, key: str) -> None:
        if key not in self._older:
            return
        older = self._older.pop(key)
        newer = self._newer.pop(key)
        self._visited.discard(key)
        if older is None:
            self._tail = newer
        else:
            self._newer[older] = newer
        if newer is None:
            self._head = older
        else:
            self._older[newer] = older
        if self._hand == key:  # the hand moves on towards the head
            self._hand = newer

    def clear(self) -> None:
        self._newer.clear()
        self._older.clear()
        self._visited.clear()
        self._hits.clear()  # the same deque: on_hit stays bound to it
        self._head = self._tail = self._hand = None

    def __len__(self) -> int:
        return len(self._older)

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._older))
