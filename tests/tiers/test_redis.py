"""RedisTier / RedisClusterTier on their own, against the BaseTier contract.

Each contract test runs twice: on fakeredis (fast, no process) and on a real
redis-server (Lua, socket timeouts and pools behave for real). Sentinel,
Cluster and the fault tests need real processes; tests that break a server
start their own so the session servers stay healthy.
"""

from __future__ import annotations

import pickle
import threading
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import fakeredis
import pytest
import redis

from tests.clock import FakeClock
from tests.support.redis_servers import (
    RedisCluster,
    RedisServer,
    SentinelGroup,
    find_free_port,
)
from tiered_cache.envelope import MAGIC, Record, decode, materialize
from tiered_cache.exceptions import TierUnavailable
from tiered_cache.sentinels import MISSING
from tiered_cache.tiers.redis import (
    RedisClusterTier,
    RedisTier,
    error_kind,
    glob_escape,
    redact_url,
)

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


def _fake_setup(clock: FakeClock, **options: Any) -> Setup:
    server = fakeredis.FakeServer()
    pool_kwargs = {"connection_class": fakeredis.FakeRedisConnection, "server": server}
    tier = make_tier(FAKE_URL, clock, CONNECTION_POOL_KWARGS=pool_kwargs, **options)
    return Setup(tier, fakeredis.FakeRedis(server=server), clock)


@pytest.fixture(params=["fake", pytest.param("real", marks=pytest.mark.redis_server)])
def setup(request: pytest.FixtureRequest, clock: FakeClock) -> Iterator[Setup]:
    if request.param == "fake":
        yield _fake_setup(clock, COMPRESS_MIN_BYTES=256)
        return
    raw = request.getfixturevalue("clean_redis")
    url = request.getfixturevalue("redis_url")
    yield Setup(
        make_tier(url, clock, COMPRESS_MIN_BYTES=256), redis.Redis.from_url(url), clock
    )
    raw.close()


def needs_lua(s: Setup) -> None:
    if isinstance(s.raw, fakeredis.FakeRedis):
        pytest.importorskip("lupa", reason="fakeredis runs Lua only with lupa")


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
    assert zlib.decompress(stored[21:])  # zlib payload after the header
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


def test_raw_integers_incr_decr_keep_ttl(setup: Setup):
    needs_lua(setup)
    t, raw, clock = setup.tier, setup.raw, setup.clock
    t.set("n", rec(5, clock() + 100))
    assert raw.get("n") == b"5"
    assert t.incr("n", 3) == 8
    assert t.incr("n", -10) == -2
    record = t.get("n")
    assert record.value == -2 and record.payload is None
    assert record.expires_at == pytest.approx(clock() + 100, abs=1)
    assert 0 < raw.pttl("n") <= 100_000
    assert t.get_many(["n"])["n"].value == -2


def test_raw_integers_expire_by_the_injected_clock_too(setup: Setup):
    needs_lua(setup)
    t, raw, clock = setup.tier, setup.raw, setup.clock
    expires_at = clock() + 10
    t.set("n", rec(1, expires_at))
    # No envelope to carry the expiry: Redis keeps it, absolute (PXAT).
    assert raw.pexpiretime("n") == pytest.approx(expires_at * 1000, abs=1)
    assert t.get("n").expires_at == pytest.approx(expires_at, abs=0.001)
    clock.advance(10.5)
    assert raw.exists("n")
    assert t.get("n") is MISSING and not t.has_key("n")
    assert t.get_many(["n"]) == {}
    with pytest.raises(ValueError):
        t.incr("n", 1)
    assert t.touch("n", clock() + 10) is False and t.delete("n") is False
    assert t.add("n", rec(2)) is True and t.get("n").value == 2


def test_incr_on_missing_raises_value_error_and_creates_nothing(setup: Setup):
    needs_lua(setup)
    with pytest.raises(ValueError):
        setup.tier.incr("missing", 1)
    assert not setup.raw.exists("missing")
    setup.tier.set("old", rec("s", setup.clock() + 1))
    setup.clock.advance(2)
    with pytest.raises(ValueError):
        setup.tier.incr("old", 1)  # dead on our clock, though Redis still has it


def test_incr_on_a_non_integer_raises_type_error(setup: Setup):
    needs_lua(setup)
    setup.tier.set("s", rec("text"))
    with pytest.raises(TypeError, match="not an integer"):
        setup.tier.incr("s", 1)
    setup.raw.rpush("list", "x")
    with pytest.raises(TypeError):
        setup.tier.incr("list", 1)


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
    assert decode(raw.get("k")).expires_at is None
    assert t.touch("k", clock() - 1) is True  # a past expiry deletes
    assert not raw.exists("k")
    assert t.touch("k", clock() + 10) is False

    t.set("n", rec(7))
    assert t.touch("n", clock() + 50) is True
    assert 49_000 < raw.pttl("n") <= 50_000
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
    t.set_many({})
    t.delete_many([])


def test_clear_removes_only_the_namespace(setup: Setup):
    t, raw = setup.tier, setup.raw
    many = {f"a*:{i}": rec(i) for i in range(1200)}  # more than one UNLINK batch
    t.set_many(many)
    t.set_many({"ab:1": rec(1), "a:1": rec(1), "foreign": rec(1)})
    raw.set("a*-planted-by-someone-else", b"1")  # still in the namespace
    assert t.clear("a*") == 1201
    assert sorted(k.decode() for k in raw.scan_iter()) == ["a:1", "ab:1", "foreign"]
    assert t.clear("a*") == 0
    with pytest.raises(ValueError):
        t.clear("")


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
    assert t.stats.rejected >= 8
    assert _Detonator.exploded == 0


class _Detonator:
    exploded = 0

    def __reduce__(self):
        return (_detonate, ())


def _detonate() -> None:  # pragma: no cover - the test fails if this runs
    _Detonator.exploded += 1


# -- configuration ----------------------------------------------------------------


def test_defaults_are_injected_without_overriding_the_user(clock: FakeClock):
    t = _fake_setup(clock).tier
    pool = t._writer("").connection_pool
    assert isinstance(pool, redis.BlockingConnectionPool)
    assert pool.max_connections == 50 and pool.timeout == 0.1
    kwargs = pool.connection_kwargs
    assert kwargs["socket_timeout"] == 0.1 and kwargs["socket_connect_timeout"] == 0.1
    assert kwargs["retry"].get_retries() == 0
    assert t.max_value_bytes == 8 * 2**20  # 50 MB would outlast the timeout
    assert _fake_setup(clock, MAX_VALUE_BYTES=None).tier.max_value_bytes is None

    custom = _fake_setup(
        clock, SOCKET_TIMEOUT=0.5, CONNECTION_POOL_CLASS="redis.ConnectionPool"
    ).tier._writer("")
    assert type(custom.connection_pool) is redis.ConnectionPool
    assert custom.connection_pool.connection_kwargs["socket_timeout"] == 0.5


def test_pools_are_shared_per_url_and_options_not_per_url(clock: FakeClock):
    server = fakeredis.FakeServer()
    kwargs = {"connection_class": fakeredis.FakeRedisConnection, "server": server}

    def pool(**options: Any) -> redis.ConnectionPool:
        options["CONNECTION_POOL_KWARGS"] = {**kwargs, **options.pop("extra", {})}
        return make_tier(FAKE_URL, clock, **options)._writer("").connection_pool

    assert pool() is pool()  # two tiers of one spec share a pool
    assert pool(extra={"max_connections": 7}).max_connections == 7
    assert pool(SOCKET_TIMEOUT=0.3) is not pool()


def test_describe_never_shows_passwords(clock: FakeClock):
    t = make_tier(
        ["redis://u:s3cret@10.0.0.1:6380/1", "redis://:s3cret@10.0.0.2/1?password=x"],
        clock,
    )
    info = t.describe()
    assert info["mode"] == "replicas" and info["name"] == "l2"
    assert "s3cret" not in repr(info) and "password" not in repr(info)
    assert info["location"][0] == "redis://u@10.0.0.1:6380/1"
    assert redact_url("redis://[::1]:7000/0") == "redis://[::1]:7000/0"
    assert glob_escape("a*b?[c]\\") == "a\\*b\\?\\[c\\]\\\\"


def test_unknown_compressor_is_a_configuration_error(clock: FakeClock):
    from django.core.exceptions import ImproperlyConfigured

    with pytest.raises(ImproperlyConfigured):
        make_tier(FAKE_URL, clock, COMPRESSOR="django_redis.compressors.zlib.Zlib")


def test_fakeredis_outage_is_tier_unavailable(clock: FakeClock):
    t = _fake_setup(clock).tier
    t._writer("").connection_pool.connection_kwargs["server"].connected = False
    for call in (
        lambda: t.get("k"),
        lambda: t.set("k", rec(1)),
        lambda: t.get_many(["a", "b"]),
        lambda: t.clear("ns:"),
    ):
        with pytest.raises(TierUnavailable) as info:
            call()
        assert info.value.tier == "l2"
        assert isinstance(info.value.__cause__, redis.ConnectionError)
        assert error_kind(info.value) == "connection"


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
        _eventually(lambda: t.get("k") is not MISSING, 5)  # replica read
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

        _eventually(works, 15)
        print(f"sentinel: recovered {time.monotonic() - killed:.2f}s after kill -9")
        assert slowest < FAST
        assert group.current_master_addr()[1] == group.replica.port


@pytest.mark.redis_server
def test_cluster_keys_and_multi_key_ops_across_slots(redis_cluster, clock):
    t = RedisClusterTier(
        ",".join(redis_cluster.startup_urls), {}, name="l2", clock=clock
    )
    assert t.describe()["mode"] == "cluster"
    keys = [f"ns:{i}" for i in range(60)]
    slots = {_slot(t, k) for k in keys}
    assert len(slots) > 30
    t.set_many({k: rec(k, clock() + 60) for k in keys})
    t.set("n", rec(1))
    found = t.get_many([*keys, "missing", "n"])
    assert sorted(found) == sorted([*keys, "n"])
    assert materialize(found["ns:7"]) == "ns:7" and found["n"].value == 1
    assert materialize(t.get("ns:3")) == "ns:3"
    assert t.incr("n", 41) == 42
    assert t.add("ns:1", rec("x")) is False and t.add("fresh", rec("x")) is True
    assert t.touch("ns:2", None) is True and t.get("ns:2").expires_at is None
    assert t.delete("fresh") is True and not t.has_key("fresh")
    t.delete_many(keys[:30])
    assert len(t.get_many(keys)) == 30
    assert t.clear("ns:") == 30
    assert t.get_many(keys) == {} and t.get("n").value == 42
    t.delete("n")


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
            k for k in keys if victim.client().cluster("countkeysinslot", _slot(t, k))
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


# -- real servers: faults -------------------------------------------------------------


@pytest.fixture
def own_server(tmp_path) -> Iterator[RedisServer]:
    server = RedisServer.start(tmp_path / "own")
    try:
        yield server
    finally:
        server.stop()


@pytest.mark.redis_server
def test_hung_server_is_unavailable_within_the_socket_timeout(own_server, clock):
    t = make_tier(own_server.url(), clock)
    t.set("k", rec("v"))
    own_server.pause()
    try:
        for call in (lambda: t.get("k"), lambda: t.set("k", rec(2))):
            started = time.monotonic()
            with pytest.raises(TierUnavailable) as info:
                call()
            elapsed = time.monotonic() - started
            assert elapsed < FAST, elapsed
            assert error_kind(info.value) == "timeout"
        # a brand-new connection: the connect succeeds (kernel backlog), the
        # first reply never comes
        fresh = make_tier(own_server.url(), clock, SOCKET_TIMEOUT=0.15)
        started = time.monotonic()
        with pytest.raises(TierUnavailable):
            fresh.get("k")
        assert time.monotonic() - started < FAST
    finally:
        own_server.resume()
    assert materialize(t.get("k")) == "v"  # recovers without a restart


@pytest.mark.redis_server
def test_refused_port_is_unavailable_at_once(clock):
    t = make_tier(f"redis://127.0.0.1:{find_free_port()}/0", clock)
    started = time.monotonic()
    with pytest.raises(TierUnavailable) as info:
        t.get("k")
    assert time.monotonic() - started < FAST
    assert error_kind(info.value) == "connection"


@pytest.mark.redis_server
def test_pool_exhaustion_waits_boundedly_then_fails(own_server, clock):
    t = make_tier(
        own_server.url(), clock, CONNECTION_POOL_KWARGS={"max_connections": 2}
    )
    pool = t._writer("").connection_pool
    assert pool.max_connections == 2

    errors: list[BaseException] = []
    done: list[int] = []
    slowest = [0.0]

    def hammer() -> None:
        for i in range(30):
            started = time.monotonic()
            try:
                t.set(f"k{i}", rec(i))
                t.get(f"k{i}")
                done.append(i)
            except BaseException as exc:  # noqa: BLE001 - collected for the asserts
                errors.append(exc)
            slowest[0] = max(slowest[0], time.monotonic() - started)

    threads = [threading.Thread(target=hammer) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # 20 threads share 2 connections: they wait (bounded), never deadlock; a
    # wait longer than the pool timeout is an L2 miss, never another error.
    assert done and slowest[0] < FAST
    assert all(
        isinstance(e, TierUnavailable) and "No connection available" in str(e)
        for e in errors
    ), errors[:3]

    held = [pool.get_connection() for _ in range(2)]
    try:
        started = time.monotonic()
        with pytest.raises(TierUnavailable, match="No connection available"):
            t.get("k1")
        assert time.monotonic() - started < FAST
    finally:
        for connection in held:
            pool.release(connection)
    assert t.get("k1").value == 1


@pytest.mark.redis_server
def test_server_errors_map_to_unavailable_but_data_errors_do_not(own_server, clock):
    t = make_tier(own_server.url(), clock)
    admin = own_server.client()
    t.set("n", rec(1))
    admin.script_flush()  # NOSCRIPT: the script is sent again
    assert t.incr("n", 1) == 2
    admin.config_set("maxmemory-policy", "noeviction")
    admin.config_set("maxmemory", "1")
    try:
        with pytest.raises(TierUnavailable) as info:
            t.set("big", rec("x" * 100_000))
        assert error_kind(info.value) == "oom"
        assert t.get("n").value == 2  # reads still work
    finally:
        admin.config_set("maxmemory", "0")


# -- helpers ------------------------------------------------------------------------


def _slot(t: RedisClusterTier, key: str) -> int:
    return t._handle.get().keyslot(key)


def _eventually(predicate, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"not true after {timeout}s")
        time.sleep(0.05)
