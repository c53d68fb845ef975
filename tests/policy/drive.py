"""Drive a policy as ``MemoryTier`` does, with a count budget, for tiny traces."""

from __future__ import annotations

from tiered_cache.policy import BasePolicy


class Store:
    """A set of keys of size 1 holding at most ``capacity``; ``policy`` decides."""

    def __init__(self, policy: BasePolicy, capacity: int) -> None:
        self.policy = policy
        self.capacity = capacity
        self.keys: set[str] = set()
        self.evicted: list[str] = []
        self.refused: list[str] = []

    def access(self, key: str) -> bool:
        """Read ``key``, inserting it on a miss; return whether it was a hit."""
        if key in self.keys:
            self.policy.on_hit(key)
            return True
        if len(self.keys) >= self.capacity:
            if not self.policy.admit(key, 1):
                self.refused.append(key)
                return False
            while len(self.keys) >= self.capacity:
                victim = self.policy.victim()
                assert victim in self.keys, victim
                self.keys.discard(victim)
                self.policy.on_evict(victim)
                self.evicted.append(victim)
        self.keys.add(key)
        self.policy.on_insert(key, 1, None)
        return False

    def run(self, trace: str | list[str]) -> int:
        """Access every key of ``trace`` (a string of 1-char keys or a list)."""
        hits = sum(self.access(key) for key in trace)
        assert set(self.policy) == self.keys
        assert len(self.policy) == len(self.keys)
        return hits
