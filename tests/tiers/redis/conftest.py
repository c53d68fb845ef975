"""Fixtures of the Redis tier tests (helpers live in ``common``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from tests.clock import FakeClock
from tests.support.redis_servers import RedisServer
from tests.tiers.redis.common import Setup, fake_setup, make_tier


@pytest.fixture(params=["fake", pytest.param("real", marks=pytest.mark.redis_server)])
def setup(request: pytest.FixtureRequest, clock: FakeClock) -> Iterator[Setup]:
    """A tier on fakeredis, then on the session's redis-server (db 0, emptied)."""
    if request.param == "fake":
        yield fake_setup(clock, COMPRESS_MIN_BYTES=256)
        return
    request.getfixturevalue("clean_redis")
    url = request.getfixturevalue("redis_url")
    raw = redis.Redis.from_url(url)
    yield Setup(make_tier(url, clock, COMPRESS_MIN_BYTES=256), raw, clock)
    raw.close()


@pytest.fixture
def own_server(tmp_path) -> Iterator[RedisServer]:
    """A redis-server of the test's own, for tests that break or reconfigure it."""
    server = RedisServer.start(tmp_path / "own")
    try:
        yield server
    finally:
        server.stop()
