"""Pytest fixtures backed by real Redis processes (see ``redis_servers``).

Enable with ``pytest_plugins = ["tests.support.fixtures"]`` in the root
``tests/conftest.py``.  Servers are session-scoped because starting a
sentinel group or a cluster costs seconds; tests that break a server on
purpose (kill, failover) should start their own instead of using these.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from tests.support.redis_servers import RedisCluster, RedisServer, SentinelGroup

__all__ = [
    "clean_redis",
    "redis_cluster",
    "redis_sentinel",
    "redis_server",
    "redis_url",
]


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One standalone redis-server for the whole session (never port 6379)."""
    server = RedisServer.start(tmp_path_factory.mktemp("redis-server"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def redis_url(redis_server: RedisServer) -> str:
    """``redis://127.0.0.1:PORT/0`` of :func:`redis_server`."""
    return redis_server.url(0)


@pytest.fixture
def clean_redis(redis_server: RedisServer) -> Iterator[redis.Redis]:
    """Empty db 0 of OUR server before and after the test; yields a db-0 client.

    Opt-in (not autouse) so tests that do not touch Redis do not pay for it.
    Also resumes/restarts the shared server if a test paused or killed it,
    so one broken test cannot cascade into the rest of the session.
    """
    redis_server.ensure_running()
    redis_server.flushdb(0)
    client = redis_server.client(0)
    try:
        yield client
    finally:
        client.close()
        redis_server.ensure_running()
        redis_server.flushdb(0)


@pytest.fixture(scope="session")
def redis_sentinel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SentinelGroup]:
    """1 master + 1 replica + 3 sentinels; service name ``mymaster``."""
    group = SentinelGroup.start(tmp_path_factory.mktemp("redis-sentinel"))
    try:
        yield group
    finally:
        group.stop()


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisCluster]:
    """3-master Redis Cluster without replicas."""
    cluster = RedisCluster.start(tmp_path_factory.mktemp("redis-cluster"), masters=3)
    try:
        yield cluster
    finally:
        cluster.stop()
