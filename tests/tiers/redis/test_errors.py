"""What counts as Redis failing: ``TierUnavailable``, its kind, its cost.

A fakeredis outage for the mapping; real redis-server processes of the test's
own (``own_server``) for hung servers, refused ports, exhausted pools and
error replies, which fakeredis cannot reproduce.
"""

from __future__ import annotations

import threading
import time

import pytest
import redis
import redis.exceptions as rex

from tests.clock import FakeClock
from tests.support.redis_servers import find_free_port
from tests.tiers.redis.common import FAST, fake_setup, make_tier, rec
from tiered_cache.envelope import materialize
from tiered_cache.exceptions import TierUnavailable
from tiered_cache.tiers.redis import ALIVE_KINDS, error_kind
from tiered_cache.tiers.redis.errors import unavailable
from tiered_cache.tiers.redis.stack import ConnectionStack


def test_error_kinds_and_which_mean_the_server_answered():
    cases = {
        rex.TimeoutError("t"): ("timeout", False),
        rex.ConnectionError("refused"): ("connection", False),
        rex.AuthenticationError("WRONGPASS"): ("auth", False),
        rex.BusyLoadingError("LOADING"): ("loading", False),
        rex.OutOfMemoryError("OOM"): ("oom", True),
        rex.ReadOnlyError("READONLY"): ("readonly", True),
        rex.ResponseError("MISCONF no RDB"): ("misconf", True),
        rex.ResponseError("ERR something"): ("response", True),
        rex.WatchError("changed"): ("contention", True),
        rex.SlotNotCoveredError("slot"): ("cluster", False),
        OSError("reset"): ("connection", False),
    }
    for exc, (kind, alive) in cases.items():
        error = unavailable("l2", "get", exc)
        assert (error.kind, error.alive) == (kind, alive), exc
        assert error_kind(exc) == kind and (kind in ALIVE_KINDS) is alive
        assert error.tier == "l2" and type(exc).__name__ in str(error)


def test_fakeredis_outage_is_tier_unavailable(clock: FakeClock):
    t = fake_setup(clock).tier
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
    assert isinstance(pool.pool, ConnectionStack)  # the waits below are its own

    errors: list[BaseException] = []
    done: list[int] = []
    slowest = [0.0]

    def hammer() -> None:
        for i in range(30):
            started = time.monotonic()
            try:
                t.set(f"k{i}", rec(i))
                assert t.get(f"k{i}").value == i
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
        with pytest.raises(TierUnavailable, match="No connection available") as info:
            t.get("k1")
        assert info.value.kind == "pool" and info.value.busy  # back-pressure
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
        assert error_kind(info.value) == "oom" and info.value.alive
        with pytest.raises(TierUnavailable) as info:
            t.incr("n", 1)  # refused by the server, not a data error
        assert error_kind(info.value) == "oom"
        assert t.get("n").value == 2  # reads still work
    finally:
        admin.config_set("maxmemory", "0")
