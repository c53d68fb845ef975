"""TieredCache over Redis Sentinel and Redis Cluster (real processes)."""

from __future__ import annotations

import pytest

from tests.matrix import L1
from tests.support.redis_servers import wait_until

pytestmark = pytest.mark.redis_server


@pytest.fixture
def cluster_spec(redis_cluster):
    return {
        "NAME": "l2",
        "BACKEND": "tiered_cache.tiers.RedisClusterTier",
        "LOCATION": redis_cluster.startup_urls,
    }


@pytest.fixture
def cluster_cache(make_cache, cluster_spec):
    return make_cache([L1, cluster_spec])


@pytest.fixture
def sentinel_spec(redis_sentinel):
    return {
        "NAME": "l2",
        "BACKEND": "django_redis.cache.RedisCache",
        "LOCATION": f"redis://{redis_sentinel.service_name}/0",
        "OPTIONS": {
            "CLIENT_CLASS": "django_redis.client.SentinelClient",
            "CONNECTION_FACTORY": "django_redis.pool.SentinelConnectionFactory",
            "SENTINELS": redis_sentinel.sentinels,
        },
    }


@pytest.fixture
def sentinel_cache(make_cache, sentinel_spec):
    return make_cache([L1, sentinel_spec])


def forget_l1(cache, *keys):
    cache.tier("l1").delete_many([cache.stored_key(k) for k in keys])


def test_cluster_api_across_slots(cluster_cache):
    cache = cluster_cache
    data = {f"key-{i}": {"n": i} for i in range(40)}  # spread over many slots
    assert cache.set_many(data) == []
    forget_l1(cache, *data)
    assert cache.get_many(list(data)) == data  # from L2, split per slot
    cache.delete_many([f"key-{i}" for i in range(20)])
    forget_l1(cache, *data)
    assert len(cache.get_many(list(data))) == 20
    assert cache.add("counter", 1) is True
    assert cache.add("counter", 5) is False
    assert cache.incr("counter", 9) == 10
    assert cache.touch("counter", 100) is True
    forget_l1(cache, "counter")
    assert cache.get("counter") == 10
    cache.clear()
    forget_l1(cache, *data)
    assert cache.get_many(list(data)) == {}
    assert cache.get("counter") is None


def test_sentinel_api(sentinel_cache):
    cache = sentinel_cache
    cache.set("k", {"v": 1})
    assert cache.get("k") == {"v": 1}
    assert cache.add("n", 1) is True
    assert cache.incr("n") == 2  # at the master
    assert cache.tier("l2").describe()["mode"] == "sentinel"
    assert cache.delete("k") is True
    cache.clear()
    # Reads go to the replica: wait for replication, bounded.
    wait_until(lambda: not cache.has_key("n"), timeout=5, what="clear() replicated")


@pytest.mark.parametrize("topology", ["cluster_spec", "sentinel_spec"])
def test_the_bus_rides_on_every_topology(make_cache, request, topology):
    """Two configurations (two processes' L1s) over one Cluster or Sentinel."""
    spec = request.getfixturevalue(topology)
    a = make_cache([L1, spec], KEY_PREFIX="bus")
    b = make_cache([L1, spec], KEY_PREFIX="bus", BREAKER={"OPEN_SECONDS": 4.9})
    assert a._chain.bus is not None and b._chain.bus is not None
    a.set("k", "v1")
    wait_until(lambda: b.get("k") == "v1", timeout=5, what="the value replicated")
    assert b.tier("l1").has_key(b.stored_key("k"))
    a.set("k", "v2")
    wait_until(
        lambda: not b.tier("l1").has_key(b.stored_key("k")),
        timeout=5,
        what="B's L1 copy dropped by the bus",
    )
