"""Helpers shared by the Redis tier tests: building tiers, records and setups.

Contract tests run twice, through the ``setup`` fixture (``conftest.py``): on
fakeredis (fast, no process) and on a real redis-server (Lua, socket timeouts
and pools behave for real). ``Setup.raw`` is a plain client on the tier's
database, to plant entries or peek at them the way another program would.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import fakeredis
import pytest
import redis

from tests.clock import FakeClock
from tiered_cache.envelope import Record
from tiered_cache.tiers.redis import RedisClusterTier, RedisTier

FAKE_URL = "redis://fakeredis.invalid:6379/0"  # never dialled: FakeRedisConnection

# A loose sanity bound, not a benchmark: a hung Redis must not cost seconds.
FAST = 1.0


def make_tier(location: Any, clock: FakeClock, **options: Any) -> RedisTier:
    return RedisTier(location, {"OPTIONS": options}, name="l2", clock=clock)


def rec(value: Any, expires_at: float | None = None) -> Record:
    return Record.for_value(value, expires_at)


@dataclass
class Setup:
    tier: RedisTier
    raw: redis.Redis  # a plain client on the same database, for planting/peeking
    clock: FakeClock


def fake_setup(clock: FakeClock, **options: Any) -> Setup:
    server = fakeredis.FakeServer()
    pool_kwargs = {"connection_class": fakeredis.FakeRedisConnection, "server": server}
    tier = make_tier(FAKE_URL, clock, CONNECTION_POOL_KWARGS=pool_kwargs, **options)
    return Setup(tier, fakeredis.FakeRedis(server=server), clock)


def needs_lua(s: Setup) -> None:
    if isinstance(s.raw, fakeredis.FakeRedis):
        pytest.importorskip("lupa", reason="fakeredis runs Lua only with lupa")


def slot(t: RedisClusterTier, key: str) -> int:
    return t._handle.get().keyslot(key)


def eventually(predicate: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"not true after {timeout}s")
        time.sleep(0.05)
