"""The configuration matrix every conformance test runs over.

Each cell is a list of tier specs: every tier alone, L1 + L3, L1 + L2 on
fakeredis, L1 + L2 + L3 on a real redis-server started by the tests, and L1
over a third-party tier written against ``BaseTier`` alone (the contract).
"""

from __future__ import annotations

from typing import Any

import pytest

L1 = {"NAME": "l1", "BACKEND": "tiered_cache.tiers.MemoryTier"}


def _fake_connection() -> type:
    import fakeredis

    # FakeRedisConnection replaced FakeConnection (deprecated in 2.40).
    return getattr(fakeredis, "FakeRedisConnection", None) or fakeredis.FakeConnection


def fake_l2() -> dict[str, Any]:
    return {
        "NAME": "l2",
        "BACKEND": "django_redis.cache.RedisCache",
        "LOCATION": "redis://127.0.0.1:6399/0",
        "OPTIONS": {"CONNECTION_POOL_KWARGS": {"connection_class": _fake_connection()}},
    }


def real_l2(url: str) -> dict[str, Any]:
    return {"NAME": "l2", "BACKEND": "django_redis.cache.RedisCache", "LOCATION": url}


def l3(directory: str) -> dict[str, Any]:
    # A loaded 2-core machine can take over the default 0.5 s to open a fresh
    # folder; the tests that time the open set OPEN_TIMEOUT themselves.
    return {
        "NAME": "l3",
        "BACKEND": "diskcache.DjangoCache",
        "LOCATION": directory,
        "OPTIONS": {"OPEN_TIMEOUT": 5},
    }


THIRD_PARTY = {"NAME": "l3", "BACKEND": "tests.tiers.thirdparty.DictTier"}

CELLS = [
    "l1",
    "l2-fake",
    "l3",
    "l1+l3",
    "l1+l2-fake",
    "l1+l2+l3-real",
    "l1+thirdparty",
]


def tiers_for(cell: str, request: pytest.FixtureRequest) -> list[dict[str, Any]]:
    """Return the tier specs of ``cell``, starting real servers when needed."""
    disk = str(request.getfixturevalue("l3_dir"))
    if cell == "l1":
        return [L1]
    if cell == "l2-fake":
        return [fake_l2()]
    if cell == "l3":
        return [l3(disk)]
    if cell == "l1+l3":
        return [L1, l3(disk)]
    if cell == "l1+l2-fake":
        return [L1, fake_l2()]
    if cell == "l1+thirdparty":
        return [L1, THIRD_PARTY]
    if cell == "l1+l2+l3-real":
        url = request.getfixturevalue("redis_server").url(1)
        return [L1, real_l2(url), l3(disk)]
    raise ValueError(cell)
