"""RedisTier against the BaseTier contract, and on replicas and Sentinel.

Contract tests run on fakeredis and on a real redis-server (the ``setup``
fixture); the topology tests need real processes. Cluster, counters, the wire
format, connections and faults have files of their own.
"""

from __future__ import annotations

import pickle
import time
import zlib

import pytest

from tests.support.redis_servers import RedisServer, SentinelGroup
from tests.tiers.redis.common import FAST, Setup, eventually, make_tier, rec
from tiered_cache.envelope import HEADER_SIZE, MAGIC, decode, materialize
from tiered_cache.exceptions import TierUnavailable
from tiered_cache.sentinels import MISSING
from tiered_cache.serializers import PICKLE
from tiered_cache.tiers.redis import RedisTier, namespaces, redis_options

#: Keys of the invalidation bus that other tests' caches keep in the same db.
BUS = b"{tiered_cache:bus}"

# -- the contract, on fakeredis and on redis-server --------------------------------


def test_envelope_round_trip_with_and_without_compression(setup: Setup):
    t, raw, now = setup.tier, setup.raw, setup.clock()
    small, big = {"a": [1, 2, None]}, "x" * 10_000
    t.set("small", rec(small, now + 60))
    t.set("big", rec(big, now + 60))

    assert materialize(t.get("small")) == small
    record = t.get("big")
    assert materialize(record) == big
    assert record.expires_at == pytest.approx(now + 60)
    stored = raw.get("big")
    assert stored.startswith(MAGIC) and len(stored) < 1000  # compressed
    # a zlib-compressed pickle after the header
    assert pickle.loads(zlib.decompress(stored[HEADER_SIZE:])) == big
    assert t.get_value("small", "dflt") == small
    assert t.get_value("nope", "dflt") == "dflt"


def test_ttl_in_redis_and_expiry_by_the_injected_clock(setup: Setup):
    t, raw, clock = setup.tier, setup.raw, setup.clock
    t.set("k", rec("v", clock() + 10))
    assert 9_000 < raw.pttl("k") <= 10_000
    clock.advance(10.5)  # Redis still holds it; our clock says it is gone
    assert raw.exists("k")
    assert t.get("k") is MISSING
    assert not t.has_key("k")
    assert t.get_many(["k"]) == {}
    assert t.delete("k") is False
    assert t.touch("k", clock() + 100) is False


def test_no_expiry_and_already_expired(setup: Setup):
    t, raw, clock = setup.tier, setup.raw, setup.clock
    t.set("forever", rec("v"))
    assert raw.pttl("forever") == -1
    assert t.get("forever").expires_at is None
    t.set("forever", rec("v", clock() - 1))  # an expired set deletes
    assert not raw.exists("forever")


def test_add_is_nx_and_replaces_only_dead_entries(setup: Setup):
    t, clock = setup.tier, setup.clock
    assert t.add("k", rec("first", clock() + 10)) is True
    assert t.add("k", rec("second", clock() + 10)) is False
    assert materialize(t.get("k")) == "first"
    clock.advance(11)  # dead on our clock, still in Redis
    assert t.add("k", rec("third", clock() + 10)) is True
    assert materialize(t.get("k")) == "third"
    assert t.add("k", rec("past", clock() - 1)) is False  # live entry stays
    assert t.add("other", rec("past", clock() - 1)) is True  # nothing stored
    assert not setup.raw.exists("other")


def test_touch_rewrites_the_envelope_expiry_and_pttl(setup: Setup):
    t, raw, clock = setup.tier, setup.raw, setup.clock
    t.set("k", rec("v" * 1000, clock() + 10))  # compressed payload stays intact
    stamp = t.get("k").stamp
    assert t.touch("k", clock() + 100) is True
    assert 99_000 < raw.pttl("k") <= 100_000
    record = t.get("k")
    assert record.expires_at == pytest.approx(clock() + 100)
    assert record.stamp == stamp and materialize(record) == "v" * 1000
    assert t.touch("k", None) is True
    assert raw.pttl("k") == -1 and t.get("k").expires_at is None
    assert decode(raw.get("k"), "k", PICKLE).expires_at is None
    assert t.touch("k", clock() - 1) is True  # a past expiry deletes
    assert not raw.exists("k")
    assert t.touch("k", clock() + 10) is False

    t.set("n", rec(7))
    assert t.touch("n", clock() + 50) is True
    # A raw int's expiry is absolute (PXAT, on the injected clock); Redis
    # counts PTTL on its own wall clock, which has moved on since the clock
    # was fixed (seconds, on a slow run).
    left = (clock() + 50 - time.time()) * 1000
    assert left - 1_000 < raw.pttl("n") <= left + 1
    assert t.touch("n", None) is True and raw.pttl("n") == -1


def test_delete_and_has_key(setup: Setup):
    t = setup.tier
    t.set("k", rec("v"))
    assert t.has_key("k")
    assert t.delete("k") is True
    assert t.delete("k") is False
    assert not t.has_key("k")
    t.set("n", rec(3))
    assert t.has_key("n") and t.delete("n") is True


def test_get_many_set_many_delete_many(setup: Setup):
    t, clock = setup.tier, setup.clock
    t.set_many(
        {
            "a": rec("A", clock() + 60),
            "b": rec(2),
            "c": rec(None),
            "old": rec("x", clock() + 1),
            "past": rec("p", clock() - 1),
        }
    )
    clock.advance(2)
    found = t.get_many(["a", "b", "c", "old", "past", "nope"])
    assert sorted(found) == ["a", "b", "c"]
    assert materialize(found["a"]) == "A"
    assert found["b"].value == 2 and found["b"].expires_at is None
    assert materialize(found["c"]) is None  # a stored None is a hit
    t.delete_many(["a", "b", "nope"])
    assert sorted(t.get_many(["a", "b", "c"])) == ["c"]
    assert t.get_many([]) == {}
    # The invalidation bus of other tests' caches keeps its stream in this db.
    stored = {k for k in setup.raw.scan_iter() if not k.startswith(b"{tiered_cache")}
    assert t.set_many({}) is None and t.delete_many([]) is None
    again = {k for k in setup.raw.scan_iter() if not k.startswith(b"{tiered_cache")}
    assert again == stored == {b"c", b"old"}  # old: dead to us


def test_clear_removes_only_the_namespace(setup: Setup):
    t, raw = setup.tier, setup.raw
    many = {f"a*:{i}": rec(i) for i in range(1200)}  # more than one UNLINK batch
    t.set_many(many)
    t.set_many({"ab:1": rec(1), "a:1": rec(1), "foreign": rec(1)})
    raw.set("a*-planted-by-someone-else", b"1")  # still in the namespace
    assert t.clear("a*") == 1201
    # SCAN may return a key twice while Redis resizes its table: compare sets
    left = {k.decode() for k in raw.scan_iter() if not k.startswith(BUS)}
    assert left == {"a:1", "ab:1", "foreign"}
    assert t.clear("a*") == 0
    with pytest.raises(ValueError):
        t.clear("")


def test_keys_lists_only_the_namespace_up_to_the_limit(setup: Setup, monkeypatch):
    t, raw = setup.tier, setup.raw
    t.set_many({f"a*:{i}": rec(i) for i in range(1200)})  # more than one SCAN batch
    t.set_many({"ab:1": rec(1), "a:1": rec(1)})
    raw.set(b"a*:\xff", b"1")  # not UTF-8: never written by a cache
    assert sorted(t.keys("a*")) == sorted(f"a*:{i}" for i in range(1200))
    assert t.keys("zz") == []
    monkeypatch.setattr(namespaces, "KEYS_LIMIT", 7)
    assert len(t.keys("a*")) == 7
    with pytest.raises(ValueError):
        t.keys("")


def test_poisoned_bytes_are_rejected_and_never_executed(setup: Setup):
    t, raw = setup.tier, setup.raw
    raw.set("pickle", pickle.dumps(_Detonator()))
    raw.set("truncated", MAGIC + b"\x01\x00")
    raw.set("version", MAGIC + b"\x63" + b"\x00" * 30)
    raw.rpush("list", "x")
    for key in ("pickle", "truncated", "version", "list"):
        assert t.get(key) is MISSING
    assert t.get_many(["pickle", "truncated", "version", "list"]) == {}
    assert not t.has_key("pickle")
    # 4 by get, 3 by get_many (MGET answers nil for the list), 1 by has_key
    assert t.stats.rejected == 8
    assert _Detonator.exploded == 0


class _Detonator:
    exploded = 0

    def __reduce__(self):
        return (_detonate, ())


def _detonate() -> None:  # pragma: no cover - the test fails if this runs
    _Detonator.exploded += 1


# -- real servers: topology ---------------------------------------------------------


@pytest.mark.redis_server
def test_reads_go_to_the_replica_url(redis_server: RedisServer, clean_redis, clock):
    primary, replica = redis_server.url(0), redis_server.url(1)
    redis_server.flushdb(1)
    t = make_tier([primary, replica], clock)
    assert t.mode == "replicas"
    t.set("k", rec("written"))
    assert redis_server.client(0).exists("k")
    assert not redis_server.client(1).exists("k")
    assert t.get("k") is MISSING  # reads are served by "the replica" (db 1)
    RedisTier(replica, {}, name="x", clock=clock).set("k", rec("replicated"))
    assert materialize(t.get("k")) == "replicated"
    redis_server.flushdb(1)


@pytest.mark.redis_server
def test_sentinel_get_set_and_recovery_after_master_kill(tmp_path, clock):
    with SentinelGroup.start(tmp_path / "sentinel") as group:
        t = RedisTier(
            f"redis://{group.service_name}/0",
            {
                "OPTIONS": {
                    "CLIENT_CLASS": "django_redis.client.SentinelClient",
                    "CONNECTION_FACTORY": "django_redis.pool.SentinelConnectionFactory",
                    "SENTINELS": group.sentinels,
                }
            },
            name="l2",
            clock=clock,
        )
        assert t.mode == "sentinel" and t.describe()["sentinels"]
        t.set("k", rec("v"))
        eventually(lambda: t.get("k") is not MISSING, 5)  # replica read
        assert materialize(t.get("k")) == "v"

        group.master.kill()
        killed = time.monotonic()
        slowest = 0.0

        def works() -> bool:
            nonlocal slowest
            started = time.monotonic()
            try:
                t.set("after", rec("failover"))
                return t.get("after") is not MISSING
            except TierUnavailable:
                return False
            finally:
                slowest = max(slowest, time.monotonic() - started)

        eventually(works, 15)
        print(f"sentinel: recovered {time.monotonic() - killed:.2f}s after kill -9")
        assert slowest < FAST
        assert group.current_master_addr()[1] == group.replica.port


@pytest.mark.redis_server
def test_sentinel_all_down_costs_one_bounded_call(tmp_path, clock):
    """With every sentinel dead, a call fails within the socket timeouts.

    redis-py's defaults (no timeout, 10 retries with backoff) made one read
    take 22-24 s; the tier gives the sentinels its own timeouts and no retry.
    """
    with SentinelGroup.start(tmp_path / "sentinel") as group:
        options = {
            "CLIENT_CLASS": "django_redis.client.SentinelClient",
            "CONNECTION_FACTORY": "django_redis.pool.SentinelConnectionFactory",
            "SENTINELS": group.sentinels,
        }
        kwargs = redis_options(options)["SENTINEL_KWARGS"]
        assert kwargs["socket_timeout"] == kwargs["socket_connect_timeout"] == 0.1
        for sentinel in group.sentinel_servers:
            sentinel.kill()
        # A process starting now: its first connection needs a sentinel.
        t = RedisTier(
            f"redis://{group.service_name}/0",
            {"OPTIONS": {**options, "SOCKET_TIMEOUT": 0.11}},  # a pool of its own
            name="l2",
            clock=clock,
        )
        for _ in range(3):
            started = time.monotonic()
            with pytest.raises(TierUnavailable):
                t.set("k2", rec("v2"))
            assert time.monotonic() - started < FAST
