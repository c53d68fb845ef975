"""What the dashboard's buttons do, through the cache's public API only.

Keys are removed with ``delete``/``delete_many``, so the invalidation bus
announces every removal and other processes drop their local copies, exactly
as when application code deletes a key.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

from django.core.cache import CacheKeyWarning

from tiered_cache.backend import TieredCache
from tiered_cache.exceptions import TierUnavailable

__all__ = [
    "ALL_TIERS",
    "GROUP_LIMIT",
    "GroupNotListable",
    "GroupResult",
    "clear_tier",
    "invalidate_group",
    "invalidate_key",
]

#: ``clear_tier`` of every tier: ``cache.clear()``, announced on the bus.
ALL_TIERS = "*"
#: Most keys one group invalidation deletes. A group larger than this takes
#: several clicks; the page says when keys may remain.
GROUP_LIMIT = 10_000
#: Keys per ``delete_many`` (and per bus announcement).
_BATCH = 500


class GroupNotListable(ValueError):
    """The cache's keys of a group cannot be found by their stored prefix."""


@dataclass
class GroupResult:
    """What ``invalidate_group`` did."""

    deleted: int = 0
    #: The limit was reached: more keys of the group may remain.
    truncated: bool = False
    #: Tiers that could not be listed (no ``keys``, or unavailable).
    unlisted: list[str] = field(default_factory=list)


def clear_tier(cache: TieredCache, name: str) -> None:
    """Remove this cache's keys from tier ``name`` (``ALL_TIERS``: every tier).

    A single tier is cleared where this process sees it: L1 is this process's
    memory, L3 this machine's folder; ``ALL_TIERS`` is ``cache.clear()``,
    which the bus announces to every process. Raise ``KeyError`` for an
    unknown tier, ``TierUnavailable`` when the tier does not answer.
    """
    if name == ALL_TIERS:
        cache.clear()
        return
    tier = cache.tier(name)
    namespace = cache.namespace
    if not namespace:
        raise GroupNotListable(
            "KEY_FUNCTION builds keys with no fixed start: this cache's keys "
            "cannot be told apart from others' in the tier"
        )
    tier.clear(namespace)


def invalidate_key(cache: TieredCache, key: str) -> bool:
    """Delete ``key`` from every tier; return whether a tier held it."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CacheKeyWarning)
        return cache.delete(key)


def invalidate_group(
    cache: TieredCache, group: str, *, limit: int = GROUP_LIMIT
) -> GroupResult:
    """Delete the keys whose user key starts with ``"<group>:"``, at most ``limit``.

    The keys are listed from every tier that can list its keys (a Redis tier
    with SCAN, never KEYS, itself capped at 10 000 keys per call), mapped back
    to user keys and deleted with ``delete_many`` in batches. Raise
    ``GroupNotListable`` when the cache's key function does not keep the
    group as a literal prefix of the stored keys.
    """
    start = f"{group}:"
    stored = _stored_prefix(cache, start)
    result = GroupResult()
    found: dict[str, None] = {}
    for tier in cache.tiers:
        try:
            keys = tier.keys(stored)
        except (NotImplementedError, TierUnavailable):
            result.unlisted.append(tier.name)
            continue
        for key in keys:
            found[start + key[len(stored) :]] = None
            if len(found) >= limit:
                result.truncated = True
                break
        if result.truncated:
            break
    user_keys = list(found)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CacheKeyWarning)
        for i in range(0, len(user_keys), _BATCH):
            cache.delete_many(user_keys[i : i + _BATCH])
    result.deleted = len(user_keys)
    return result


def _stored_prefix(cache: TieredCache, start: str) -> str:
    """Return the stored-key prefix of user keys starting with ``start``.

    Checked with a probe: a key function that does not keep the user key at
    the end of the stored key, or a group that makes keys too long or
    non-ASCII (stored as a digest), cannot be found by prefix.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CacheKeyWarning)
        prefix = cache.stored_key(start)
        probe = cache.stored_key(start + "probe")
    if not prefix or probe != prefix + "probe" or not cache.namespace:
        raise GroupNotListable(
            f"keys of group {start!r} cannot be found by prefix with this "
            f"cache's KEY_FUNCTION"
        )
    return prefix
