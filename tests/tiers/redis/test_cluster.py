"""RedisClusterTier on real clusters: per-slot routing, a shard down or hung."""

from __future__ import annotations

import time

import pytest

from tests.support.redis_servers import RedisCluster
from tests.tiers.redis.common import FAST, rec, slot
from tiered_cache.envelope import materialize
from tiered_cache.exceptions import TierUnavailable
from tiered_cache.tiers.redis import RedisClusterTier

BIG = 2**63


@pytest.mark.redis_server
def test_cluster_keys_and_multi_key_ops_across_slots(redis_cluster, clock):
    t = RedisClusterTier(
        ",".join(redis_cluster.startup_urls), {}, name="l2", clock=clock
    )
    assert t.describe()["mode"] == "cluster"
    keys = [f"ns:{i}" for i in range(60)]
    slots = {slot(t, k) for k in keys}
    assert len(slots) > 30
    t.set_many({k: rec(k, clock() + 60) for k in keys})
    t.set("n", rec(1))
    found = t.get_many([*keys, "missing", "n"])
    assert sorted(found) == sorted([*keys, "n"])
    assert materialize(found["ns:7"]) == "ns:7" and found["n"].value == 1
    assert materialize(t.get("ns:3")) == "ns:3"
    assert t.incr("n", 41) == 42
    t.set("big", rec(BIG - 1))  # past 64 bits: WATCH/MULTI on the slot's node
    assert t.incr("big", 1) == BIG and materialize(t.get("big")) == BIG
    assert sorted(t.keys("ns:")) == sorted(keys)  # SCAN on every primary
    assert t.add("ns:1", rec("x")) is False and t.add("fresh", rec("x")) is True
    assert t.touch("ns:2", None) is True and t.get("ns:2").expires_at is None
    assert t.delete("fresh") is True and not t.has_key("fresh")
    t.delete_many(keys[:30])
    assert len(t.get_many(keys)) == 30
    assert t.clear("ns:") == 30
    assert t.get_many(keys) == {} and t.get("n").value == 42
    assert t.delete("n") is True and t.delete("big") is True


@pytest.mark.redis_server
def test_cluster_one_shard_down_keeps_the_others(tmp_path, clock):
    with RedisCluster.start(tmp_path / "cluster", masters=3) as cluster:
        for node in cluster.nodes:
            node.client().config_set("cluster-require-full-coverage", "no")
        t = RedisClusterTier(cluster.startup_urls, {}, name="l2", clock=clock)
        keys = [f"k{i}" for i in range(30)]
        t.set_many({k: rec(k) for k in keys})
        victim = cluster.nodes[0]
        owned = {
            k for k in keys if victim.client().cluster("countkeysinslot", slot(t, k))
        }
        assert owned and len(owned) < len(keys)

        victim.pause()  # hung shard: each of its calls costs one socket timeout
        try:
            started = time.monotonic()
            found = t.get_many(keys)
            paused_many = time.monotonic() - started
            assert set(found) == set(keys) - owned
            assert t.stats.errors == 1
            started = time.monotonic()
            with pytest.raises(TierUnavailable):
                t.get(next(iter(owned)))
            paused_get = time.monotonic() - started
        finally:
            victim.resume()

        victim.kill()  # dead shard: refused at once
        worst = 0.0
        for _ in range(20):
            for key in keys:
                started = time.monotonic()
                try:
                    assert materialize(t.get(key)) == key
                except TierUnavailable:
                    assert key in owned
                worst = max(worst, time.monotonic() - started)
        with pytest.raises(TierUnavailable):
            t.set_many({k: rec(1) for k in keys})  # the live shards were written
        assert t.get(sorted(set(keys) - owned)[0]).value == 1
        print(
            f"cluster: paused shard get_many {paused_many:.3f}s get {paused_get:.3f}s;"
            f" killed shard worst call {worst:.3f}s"
        )
        assert max(paused_many, paused_get, worst) < FAST
