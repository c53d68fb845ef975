"""A count-bounded store of unit-size keys, driven as ``MemoryTier`` drives a policy.

The learned policy's shadow caches (``chooser.py``) and the offline training
replays (``tiered_cache.learning``) need the tier's call order without a tier:
a hit calls ``on_hit``; a miss into a full store calls ``admit`` once, then
``victim`` / ``on_evict`` until there is room, then ``on_insert``.
"""

from __future__ import annotations

from .base import BasePolicy

__all__ = ["CountStore"]


class CountStore:
    """At most ``capacity`` keys of size 1; ``policy`` decides; hits counted."""

    __slots__ = ("capacity", "hits", "keys", "name", "policy")

    def __init__(self, policy: BasePolicy, capacity: int, name: str = "") -> None:
        self.name = name or policy.name
        self.policy = policy
        self.capacity = capacity
        self.keys: set[str] = set()
        self.hits = 0.0

    def access(self, key: str) -> bool:
        """Read ``key``, inserting it on a miss; return whether it was a hit."""
        keys, policy = self.keys, self.policy
        if key in keys:
            self.hits += 1
            policy.on_hit(key)
            return True
        if len(keys) >= self.capacity:
            if not policy.admit(key, 1):
                return False
            while len(keys) >= self.capacity:
                out = policy.victim()
                if out is None:
                    break
                keys.discard(out)
                policy.on_evict(out)
        keys.add(key)
        policy.on_insert(key, 1, None)
        return False
