"""``replace_older``: a journaled write lands only over an older entry.

Run on fakeredis and on a real redis-server (the ``setup`` fixture), and once
on a real cluster (the WATCH goes to the key's shard).
"""

from __future__ import annotations

import pytest

from tests.tiers.redis.common import Setup, rec
from tiered_cache.envelope import Record, materialize
from tiered_cache.sentinels import MISSING
from tiered_cache.tiers.redis import RedisClusterTier


def value(setup: Setup, key: str):
    record = setup.tier.get(key)
    return None if record is MISSING else materialize(record)


def test_an_older_entry_is_replaced(setup: Setup):
    t = setup.tier
    old = rec("old")
    t.set("k", old)
    new = rec("new")
    assert t.replace_older("k", new) == old.stamp
    assert value(setup, "k") == "new"


def test_a_newer_entry_is_kept(setup: Setup):
    t = setup.tier
    ours = rec("ours")
    newer = rec("newer")
    t.set("k", newer)
    assert t.replace_older("k", ours) == newer.stamp
    assert value(setup, "k") == "newer"
    assert t.replace_older("k", newer) == newer.stamp  # the same write: kept


def test_nothing_is_not_filled(setup: Setup):
    """Nothing there may be a later delete: the journaled value stays out."""
    t = setup.tier
    assert t.replace_older("k", rec("ours")) is None
    assert setup.raw.exists("k") == 0
    dead = rec("dead", expires_at=setup.clock() + 1)
    t.set("d", dead)
    setup.clock.advance(2)  # dead on our clock, still in Redis
    assert t.replace_older("d", rec("ours")) is None


def test_a_raw_integer_is_older_than_any_write(setup: Setup):
    t = setup.tier
    t.set("n", rec(5))
    assert t.replace_older("n", rec("text")) == 0
    assert value(setup, "n") == "text"


def test_an_expired_record_removes_only_an_older_entry(setup: Setup):
    t = setup.tier
    old = rec("old")
    t.set("k", old)
    stand_in = Record(None, b"", -1e18, old.stamp + 1)
    assert t.replace_older("k", stand_in) == old.stamp
    assert setup.raw.exists("k") == 0
    newer = rec("newer")
    t.set("k", newer)
    assert t.replace_older("k", Record(None, b"", -1e18, newer.stamp - 1)) == (
        newer.stamp
    )
    assert value(setup, "k") == "newer"


@pytest.mark.redis_server
def test_cluster_replace_older_goes_to_the_slot_owner(redis_cluster, clock):
    t = RedisClusterTier(
        ",".join(redis_cluster.startup_urls), {}, name="l2", clock=clock
    )
    keys = [f"ns:k{i}" for i in range(20)]
    olds = {key: rec("old") for key in keys}
    t.set_many(olds)
    assert all(t.replace_older(key, rec("new")) == olds[key].stamp for key in keys)
    assert all(materialize(t.get(key)) == "new" for key in keys)
    t.clear("ns:")
