"""Tier adapters and ``load_tier``, which builds one from a CACHES-shaped spec.

A tier spec names a Django cache backend the way users already know it
(``django_redis.cache.RedisCache``, ``diskcache.DjangoCache``) or one of ours;
the matching adapter wraps the library. Adapters are imported lazily so that
``redis`` or ``diskcache`` load only when configured.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

from ..serializers import PICKLE, Serializer
from .base import BaseTier, Scope

__all__ = [
    "ADAPTERS",
    "BaseTier",
    "Scope",
    "DiskTier",
    "MemoryTier",
    "RedisClusterTier",
    "RedisTier",
    "load_tier",
]

#: BACKEND path in a tier spec -> the adapter class that serves it.
ADAPTERS: dict[str, str] = {
    "tiered_cache.tiers.MemoryTier": "tiered_cache.tiers.memory.MemoryTier",
    "tiered_cache.tiers.memory.MemoryTier": "tiered_cache.tiers.memory.MemoryTier",
    "django_redis.cache.RedisCache": "tiered_cache.tiers.redis.RedisTier",
    "tiered_cache.tiers.RedisTier": "tiered_cache.tiers.redis.RedisTier",
    "tiered_cache.tiers.RedisClusterTier": "tiered_cache.tiers.redis.RedisClusterTier",
    "diskcache.DjangoCache": "tiered_cache.tiers.disk.DiskTier",
    "diskcache.djangocache.DjangoCache": "tiered_cache.tiers.disk.DiskTier",
    "tiered_cache.tiers.DiskTier": "tiered_cache.tiers.disk.DiskTier",
}

_LAZY = {
    "MemoryTier": "tiered_cache.tiers.memory.MemoryTier",
    "RedisTier": "tiered_cache.tiers.redis.RedisTier",
    "RedisClusterTier": "tiered_cache.tiers.redis.RedisClusterTier",
    "DiskTier": "tiered_cache.tiers.disk.DiskTier",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return import_string(_LAZY[name])
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def tier_class(backend: str) -> type[BaseTier]:
    """Return the adapter class for a spec's BACKEND path.

    Raises ImproperlyConfigured when the path does not import or names
    something that is neither a known cache backend nor a ``BaseTier``.
    """
    path = ADAPTERS.get(backend, backend)
    try:
        cls = import_string(path)
    except ImportError as exc:
        raise ImproperlyConfigured(
            f"tier BACKEND {backend!r} could not be imported: {exc}"
        ) from exc
    if not (isinstance(cls, type) and issubclass(cls, BaseTier)):
        raise ImproperlyConfigured(
            f"tier BACKEND {backend!r} is not a tier: use one of {sorted(ADAPTERS)} "
            "or a subclass of tiered_cache.tiers.BaseTier"
        )
    return cls


def load_tier(
    spec: Mapping[str, Any],
    *,
    name: str,
    clock: Callable[[], float],
    serializer: Serializer | None = None,
) -> BaseTier:
    """Build the tier described by ``spec`` (a dict shaped like a CACHES entry).

    ``serializer``: the cache's SERIALIZER (``None``: pickle, the default).
    """
    cls = tier_class(spec["BACKEND"])
    return cls(
        spec.get("LOCATION", ""),
        spec,
        name=name,
        clock=clock,
        serializer=serializer or PICKLE,
    )
