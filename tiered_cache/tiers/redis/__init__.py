"""L2: Redis, single node, primary + replicas, Sentinel or Cluster.

A tier spec whose BACKEND is ``django_redis.cache.RedisCache`` (or
``tiered_cache.tiers.RedisTier``) is served by ``RedisTier``, one whose BACKEND
is ``tiered_cache.tiers.RedisClusterTier`` by ``RedisClusterTier``. This
package is the only part of ``tiered_cache`` that imports ``redis``; it loads
only when such a tier is configured. One module per concern:

``tier``
    ``RedisTier``: the tier contract in redis-py commands, and the routing.
``cluster``
    ``RedisClusterTier``: per-slot routing, and the shared cluster client.
``wire``
    What is stored under a key (envelope or raw integer) and how it is judged.
``counters``
    ``incr``: INCRBY in 64 bits, an atomic Python step past them.
``leases``
    Leases for stampede protection: ``SET NX PX``, compare-and-delete.
``connections``
    django-redis glue: OPTIONS defaults, pools keyed by every option.
``errors``
    Which exceptions mean "Redis could not serve this", and their labels.
"""

from __future__ import annotations

from .cluster import RedisClusterTier
from .connections import (
    TieredConnectionFactory,
    TieredSentinelConnectionFactory,
    redact_url,
    redis_options,
)
from .errors import ALIVE_KINDS, TRANSPORT_ERRORS, error_kind
from .tier import RedisTier
from .wire import glob_escape

__all__ = [
    "ALIVE_KINDS",
    "TRANSPORT_ERRORS",
    "RedisClusterTier",
    "RedisTier",
    "TieredConnectionFactory",
    "TieredSentinelConnectionFactory",
    "error_kind",
    "glob_escape",
    "redact_url",
    "redis_options",
]
