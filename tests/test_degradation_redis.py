"""Fail-open against a real redis-server that the test pauses, kills and restarts.

docs/faults.rst A1-A3: a dead or hung L2 costs at most its timeout per call until
the breaker opens, then nothing; L1/L3 keep serving; the breaker closes by
itself when Redis is back. Latency bounds here are sanity bounds (10x the
budget), not benchmarks.
"""

from __future__ import annotations

import logging
import threading
import time

import pytest
import redis

from tests.matrix import L1, l3, real_l2
from tests.support.redis_servers import RedisServer, find_free_port, wait_until
from tiered_cache.exceptions import CircuitOpen, TierUnavailable

pytestmark = pytest.mark.redis_server


@pytest.fixture
def server(tmp_path):
    srv = RedisServer.start(tmp_path / "redis")
    yield srv
    srv.stop()


def build(make_cache, server, tmp_path, **options):
    cache = make_cache(
        [L1, real_l2(server.url(0)), l3(str(tmp_path / "l3"))], **options
    )
    # L3's copies are served once the bus has settled where they stand.
    wait_until(lambda: cache._chain.bus.settled, timeout=5, what="bus settled")
    return cache


def timed(call):
    start = time.perf_counter()
    result = call()
    return result, time.perf_counter() - start


def test_hung_redis_costs_one_timeout_then_nothing(make_cache, server, tmp_path):
    cache = build(make_cache, server, tmp_path)
    cache.set("k", "v")
    final = cache.stored_key("k")
    server.pause()
    try:
        worst = 0.0
        for _ in range(5):
            cache.tier("l1").delete(final)
            value, took = timed(lambda: cache.get("k"))
            assert value == "v"  # served by L3
            worst = max(worst, took)
        assert worst < 1.0  # one 0.1 s timeout per call, never redis-py's 5 s
        assert cache.breaker_state("l2") == "open"
        l2 = cache.stats()["l2"]
        assert cache.get("other") is None
        after = cache.stats()["l2"]  # skipped by the open breaker: no call made
        assert after["skipped"] == l2["skipped"] + 1
        assert after["errors"] == l2["errors"]
        assert cache.set_many({"a": 1}) == ["a"]  # L2 (the authority) was skipped
        assert cache.get("a") == 1
    finally:
        server.resume()


def test_killed_redis_is_skipped_and_recovers_by_itself(
    make_cache, server, tmp_path, monkeypatch
):
    cache = build(make_cache, server, tmp_path)
    breaker_time = [1000.0]  # moved by hand instead of waiting OPEN_SECONDS
    monkeypatch.setattr(
        cache._chain.by_name["l2"].breaker, "_clock", lambda: breaker_time[0]
    )
    cache.set("before", "v")
    server.kill()
    for i in range(10):
        cache.set(f"during{i}", i)
        assert cache.get(f"during{i}") == i
    assert cache.breaker_state("l2") == "open"
    assert cache.tier("l2").stats.errors == 5
    server.restart()  # empty: no persistence
    breaker_time[0] += 5.1  # OPEN_SECONDS later: one probe is let through
    cache.set("after", "v2")
    assert cache.breaker_state("l2") == "closed"
    assert server.client(0).exists(cache.stored_key("after")) == 1
    # Redis lost its data: the bus sees a gap and drops every copy (L1, and
    # this machine's L3), so nothing deleted meanwhile can come back from them.
    bus = cache._chain.bus
    wait_until(lambda: bus.stats.gaps + bus.stats.outages > 0, timeout=5, what="gap")
    assert cache.get("before") is None
    assert cache.get("after") == "v2"


def test_redis_down_at_start_does_not_break_the_first_request(make_cache, tmp_path):
    port = find_free_port()  # nothing listens there
    spec = real_l2(f"redis://127.0.0.1:{port}/0")
    cache = make_cache([L1, spec, l3(str(tmp_path / "l3"))])
    value, took = timed(lambda: cache.get("k", "default"))
    assert value == "default"
    # A refused connection fails at once: no retries with backoff (seconds),
    # never redis-py's 5 s timeouts. The bound leaves room for a loaded machine
    # (the call also opens the L3 folder).
    assert took < 3.0
    assert cache.stats()["l2"]["errors"] == 1
    cache.set("k", "v")
    assert cache.get("k") == "v"


def test_fail_open_off_raises_the_redis_error_as_cause(make_cache, server, tmp_path):
    cache = build(make_cache, server, tmp_path, FAIL_OPEN=False)
    cache.set("k", "v")
    server.kill()
    try:
        with pytest.raises(TierUnavailable) as info:
            cache.set("k", "v2")
        assert isinstance(info.value.__cause__, redis.exceptions.ConnectionError)
        for _ in range(4):
            with pytest.raises(TierUnavailable):
                cache.get_many(["k", "x"])
        with pytest.raises(CircuitOpen):
            cache.delete("k")
    finally:
        server.restart()
        cache._chain.by_name["l2"].breaker.reset()


def test_redis_out_of_memory_refuses_writes_but_keeps_serving_reads(
    make_cache, server, tmp_path
):
    cache = make_cache([L1, real_l2(server.url(0))])
    cache.set("kept", "v")
    admin = server.client(0)
    admin.config_set("maxmemory-policy", "noeviction")
    admin.config_set("maxmemory", "1")  # anything used is already too much
    try:
        for i in range(10):
            cache.set(f"k{i}", "x" * 100)  # OOM: counted, never raised
        assert cache.tier("l2").stats.errors == 10
        assert cache.breaker_state("l2") == "closed"  # reachable: reads go on
        cache.tier("l1").delete(cache.stored_key("kept"))
        assert cache.get("kept") == "v"  # served by L2
    finally:
        admin.config_set("maxmemory", "0")


def test_a_busy_pool_is_back_pressure_not_an_outage(make_cache, server, caplog):
    """200 threads on 20 connections of a healthy Redis (docs/faults.rst #12)."""
    spec = real_l2(server.url(0))
    spec["OPTIONS"] = {"CONNECTION_POOL_KWARGS": {"max_connections": 20}}
    cache = make_cache([L1, spec])
    cache.set("k", "v")
    final = cache.stored_key("k")
    go = threading.Event()
    outcomes: list[object] = []

    def reader() -> None:
        go.wait()
        for _ in range(20):
            cache.tier("l1").delete(final)  # every read goes to L2
            outcomes.append(cache.get("k", "miss"))

    threads = [threading.Thread(target=reader) for _ in range(200)]
    for thread in threads:
        thread.start()
    with caplog.at_level(logging.WARNING, logger="tiered_cache"):
        go.set()
        for thread in threads:
            thread.join(60)
    stats = cache.stats()["l2"]
    assert len(outcomes) == 4000 and set(outcomes) <= {"v", "miss"}
    assert cache.breaker_state("l2") == "closed"
    assert stats["breaker_opened"] == 0
    # Each miss is a pool wait that ran out, or (on a machine loaded enough to
    # starve the server itself) a reply later than SOCKET_TIMEOUT: a fault.
    assert outcomes.count("miss") == stats["busy"] + stats["errors"]
    busy_lines = [r for r in caplog.records if "no free connection" in r.message]
    assert len(busy_lines) <= 1  # throttled: one line per 10 s, never one per call
    assert not [r for r in caplog.records if "circuit breaker" in r.message]


def test_a_read_served_below_a_hung_redis_pays_its_timeout_once(
    make_cache, server, tmp_path
):
    """The promotion does not write back into the L2 that just timed out."""
    cache = build(make_cache, server, tmp_path)
    cache.set("k", "v")
    final = cache.stored_key("k")
    cache.tier("l1").delete(final)
    server.pause()
    try:
        before = cache.stats()["l2"]
        assert cache.get("k") == "v"  # from L3, promoted into L1 only
        after = cache.stats()["l2"]
    finally:
        server.resume()
    assert after["errors"] == before["errors"] + 1  # the read, not a promotion too
    assert after["sets"] == before["sets"]
    assert cache.stats()["l1"]["promotions"] >= 1
