"""Stampede protection: ``get_or_set`` computes a missing value once.

Once per key per process (single flight, threads), and once per deployment
when a tier holds leases (L2). "Other processes" are simulated in-process by
caches whose L1 differs and whose L2 is one fakeredis server: each has its
own chain, so its own flights, as a process would. The acceptance case runs
real processes against a real redis-server.

Waits are event-driven (``wait_until`` on a counter or a flight's waiters);
the only sleeps are the computations being protected.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import fakeredis
import pytest
from django.core.exceptions import ImproperlyConfigured

from tests.flights import (
    Work,
    fake_l2,
    flights,
    in_background,
    in_threads,
    l1,
    lease_of,
)
from tests.matrix import L1, l3, real_l2
from tests.support import stampede_worker
from tests.support.redis_servers import wait_until
from tiered_cache import stampede
from tiered_cache.conf import parse_options
from tiered_cache.exceptions import TierUnavailable

ROOT = Path(__file__).resolve().parents[1]
#: Sanity bound for "did not wait": far above the cost, far below a lease.
PROMPT = 5.0


# -- single flight in one process ---------------------------------------------


@pytest.mark.parametrize("tier_set", ["l1", "l1+l2-fake"])
def test_single_flight_computes_once_for_concurrent_threads(make_cache, tier_set):
    tiers = [L1] if tier_set == "l1" else [L1, fake_l2(fakeredis.FakeServer())]
    cache = make_cache(tiers)
    stored = cache.stored_key("k")
    callers = 20
    work = Work(
        {"rows": [1, 2]}, until=lambda: flights(cache).waiting(stored) >= callers - 1
    )
    outcomes = in_threads(callers, lambda: cache.get_or_set("k", work, 60))
    assert work.calls == 1
    assert [kind for kind, _, _ in outcomes] == ["ok"] * callers
    values = [value for _, value, _ in outcomes]
    assert all(value == {"rows": [1, 2]} for value in values)
    assert len({id(value) for value in values}) == callers  # each its own copy
    assert not flights(cache).in_flight(stored)
    assert cache.get("k") == {"rows": [1, 2]}


def test_an_exception_reaches_every_waiter_and_the_next_call_tries_again(make_cache):
    cache = make_cache([L1])
    stored = cache.stored_key("k")
    callers = 12
    boom = RuntimeError("backend database is down")
    work = Work(until=lambda: flights(cache).waiting(stored) >= callers - 1, error=boom)
    outcomes = in_threads(callers, lambda: cache.get_or_set("k", work, 60))
    assert work.calls == 1
    assert all(kind == "error" and exc is boom for kind, exc, _ in outcomes)
    assert cache.get("k") is None  # nothing stored
    assert cache.get_or_set("k", Work("second try"), 60) == "second try"
    assert cache.get("k") == "second try"


def test_an_interrupted_leader_abandons_the_flight_and_a_waiter_takes_over(
    make_cache,
):
    class Interrupted(BaseException):
        pass

    cache = make_cache([L1])
    stored = cache.stored_key("k")
    callers = 6
    first = threading.Event()
    calls = []

    def work() -> str:
        calls.append(threading.get_ident())
        if not first.is_set():
            first.set()
            wait_until(
                lambda: flights(cache).waiting(stored) >= callers - 1,
                timeout=10,
                what="callers to join",
            )
            raise Interrupted  # a worker timeout, say
        return "value"

    outcomes = in_threads(callers, lambda: cache.get_or_set("k", work, 60))
    kinds = sorted(kind for kind, _, _ in outcomes)
    assert kinds == ["error"] + ["ok"] * (callers - 1)
    assert len(calls) == 2  # the interrupted leader, then one new leader
    assert all(v == "value" for kind, v, _ in outcomes if kind == "ok")


def test_a_hit_never_computes_and_plain_defaults_are_added_as_in_django(make_cache):
    cache = make_cache([L1, fake_l2(fakeredis.FakeServer())])
    cache.set("k", "cached")
    work = Work()
    assert cache.get_or_set("k", work, 60) == "cached" and work.calls == 0
    assert cache.get_or_set("plain", "default", 60) == "default"
    assert cache.get("plain") == "default"
    assert cache.get_or_set("none", None) is None
    assert cache.get_or_set("none", "other") is None  # a stored None is a hit
    assert cache.tier("l2").stats.leases == 0  # nothing was computed


def test_timeout_zero_computes_stores_nothing_and_takes_no_lease(make_cache):
    cache = make_cache([L1, fake_l2(fakeredis.FakeServer())])
    work = Work("fresh")
    assert cache.get_or_set("k", work, 0) == "fresh"
    assert cache.get_or_set("k", work, 0) == "fresh"
    assert work.calls == 2 and not cache.has_key("k")
    assert cache.tier("l2").stats.leases == 0


# -- leases: once per deployment ----------------------------------------------


def test_the_lease_is_held_during_the_computation_and_released_after(make_cache):
    server = fakeredis.FakeServer()
    cache = make_cache([L1, fake_l2(server)])
    raw = fakeredis.FakeRedis(server=server)
    lease = lease_of(cache, "k")
    assert lease.startswith(cache.namespace + "#lease:")
    seen = []
    work = Work("v", until=lambda: seen.append(raw.exists(lease)) or True)
    assert cache.get_or_set("k", work, 60) == "v"
    assert seen == [1] and raw.exists(lease) == 0
    stats = cache.stats()["l2"]
    assert stats["leases"] == 1 and stats["leases_refused"] == 0


def test_lease_keys_live_under_the_namespace_so_clear_removes_only_ours(make_cache):
    server = fakeredis.FakeServer()
    ours = make_cache([L1, fake_l2(server)])
    theirs = make_cache([L1, fake_l2(server)])
    raw = fakeredis.FakeRedis(server=server)
    mine, other = lease_of(ours, "k"), lease_of(theirs, "k")
    assert mine != other
    assert ours.tier("l2").acquire_lease(mine, 30)
    assert theirs.tier("l2").acquire_lease(other, 30)
    ours.clear()
    assert raw.exists(mine) == 0 and raw.exists(other) == 1


@pytest.mark.filterwarnings("ignore::django.core.cache.CacheKeyWarning")
def test_a_lease_key_is_never_the_key_of_a_value(make_cache):
    cache = make_cache([L1])
    for key in ("k", "#lease:x", f"{cache.namespace}#lease:x", "x" * 2000):
        stored = cache.stored_key(key)
        assert lease_of(cache, key) != stored
        assert not cache.stored_key(lease_of(cache, key)).startswith(
            cache.namespace + "#lease:"
        )


def two_processes(make_cache, **options):
    """Two caches over one L2 with their own L1 and flights: two processes."""
    server = fakeredis.FakeServer()
    here = make_cache([l1(0), fake_l2(server)], KEY_PREFIX="shared", **options)
    there = make_cache([l1(1), fake_l2(server)], KEY_PREFIX="shared")
    assert here._chain is not there._chain
    return server, here, there


def test_a_waiter_gets_the_value_of_the_lease_holder_in_another_process(make_cache):
    _, here, there = two_processes(make_cache)
    lease = lease_of(here, "k")
    token = there.tier("l2").acquire_lease(lease, 30)  # "there" computes
    work = Work("mine")
    thread, result = in_background(lambda: here.get_or_set("k", work, 60))
    polling = here._chain.by_name["l2"].stats
    wait_until(lambda: polling.leases_refused >= 2, timeout=10, what="polling")
    there.set("k", "theirs")
    there.tier("l2").release_lease(lease, token)
    thread.join(10)
    assert result[0][:2] == ("ok", "theirs") and work.calls == 0
    assert here.get("k") == "theirs"  # promoted into this process's L1


def test_a_holder_that_failed_gives_the_lease_back_and_a_waiter_computes(make_cache):
    _, here, there = two_processes(make_cache)
    lease = lease_of(here, "k")
    token = there.tier("l2").acquire_lease(lease, 30)
    work = Work("mine")
    thread, result = in_background(lambda: here.get_or_set("k", work, 60))
    polling = here._chain.by_name["l2"].stats
    wait_until(lambda: polling.leases_refused >= 1, timeout=10, what="polling")
    there.tier("l2").release_lease(lease, token)  # its computation raised
    thread.join(10)
    assert result[0][:2] == ("ok", "mine") and work.calls == 1
    assert result[0][2] < PROMPT  # not the 30 s of the lease


def test_a_holder_that_died_is_replaced_when_its_lease_expires(make_cache):
    _, here, there = two_processes(make_cache)
    there.tier("l2").acquire_lease(lease_of(here, "k"), 0.3)  # then it dies
    work = Work("mine")
    started = time.perf_counter()
    assert here.get_or_set("k", work, 60) == "mine"
    took = time.perf_counter() - started
    assert work.calls == 1 and 0.25 <= took < PROMPT
    assert here.stats()["l2"]["leases"] == 1  # the expired lease, taken over


def test_waiting_is_bounded_by_the_lease_time(make_cache):
    _, here, there = two_processes(make_cache, STAMPEDE={"LEASE_SECONDS": 0.3})
    there.tier("l2").acquire_lease(lease_of(here, "k"), 30)  # a slow holder
    work = Work("mine")
    started = time.perf_counter()
    assert here.get_or_set("k", work, 60) == "mine"
    took = time.perf_counter() - started
    assert work.calls == 1 and 0.25 <= took < PROMPT
    assert here.stats()["l2"]["leases"] == 0  # computed without the lease


def test_the_lease_never_outlives_the_value(make_cache):
    server = fakeredis.FakeServer()
    cache = make_cache([L1, fake_l2(server)], STAMPEDE={"LEASE_SECONDS": 30})
    raw = fakeredis.FakeRedis(server=server)
    lease = lease_of(cache, "k")
    ttl = []
    cache.get_or_set("k", Work(until=lambda: ttl.append(raw.pttl(lease)) or True), 2)
    assert 0 < ttl[0] <= 2000


def test_no_lease_without_a_tier_that_holds_leases_and_when_switched_off(
    make_cache, tmp_path
):
    assert make_cache([L1, l3(str(tmp_path / "l3"))])._chain.lease_slot is None
    cache = make_cache([L1, fake_l2(fakeredis.FakeServer())])
    assert cache._chain.lease_slot is cache._chain.by_name["l2"]
    off = make_cache(
        [L1, fake_l2(fakeredis.FakeServer())], STAMPEDE={"LEASE_SECONDS": None}
    )
    assert off.get_or_set("k", Work("v"), 60) == "v"
    assert off.stats()["l2"]["leases"] == 0


def test_four_simulated_processes_compute_once(make_cache):
    """The acceptance case on fakeredis, in one process (fast)."""
    server = fakeredis.FakeServer()
    # The lease outlives the join timeout: callers that finish were woken by
    # the value landing, not by the lease running out.
    caches = [
        make_cache(
            [l1(p), fake_l2(server)], KEY_PREFIX="four", STAMPEDE={"LEASE_SECONDS": 60}
        )
        for p in range(4)
    ]
    work = Work({"answer": 42}, seconds=0.3)
    go = threading.Event()
    outcomes: list[tuple[Any, float]] = []
    lock = threading.Lock()

    def caller(cache) -> None:
        go.wait()
        started = time.perf_counter()
        value = cache.get_or_set("cold", work, 60)
        with lock:
            outcomes.append((value, time.perf_counter() - started))

    threads = [
        threading.Thread(target=caller, args=(cache,))
        for cache in caches
        for _ in range(50)
    ]
    for thread in threads:
        thread.start()
    go.set()
    for thread in threads:
        thread.join(30)
    assert len(outcomes) == 200
    assert all(value == {"answer": 42} for value, _ in outcomes)
    assert work.calls <= 2  # how long the waiters wait: bench/stampede.py


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded")
def test_a_forked_child_starts_with_no_flights(make_cache):
    cache = make_cache([L1])
    stored = cache.stored_key("k")
    computing = threading.Event()
    release = threading.Event()

    def slow() -> str:
        computing.set()
        release.wait(10)
        return "parent"

    thread, result = in_background(lambda: cache.get_or_set("k", slow, 60))
    computing.wait(10)
    assert flights(cache).in_flight(stored)
    try:
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child reports through its exit code
            signal.alarm(5)  # an inherited flight would make it wait forever
            ok = cache.get_or_set("k", lambda: "child", 60) == "child"
            os._exit(0 if ok else 1)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
    finally:
        release.set()
        thread.join(10)
    assert result[0][:2] == ("ok", "parent")


def test_waiters_share_a_result_that_cannot_be_copied():
    coordinator = stampede.Coordinator(None)
    callers = 5
    result = threading.Lock()  # cannot be pickled: nothing to copy it with

    def produce(outage: bool):
        wait_until(
            lambda: coordinator.waiting("k") >= callers - 1,
            timeout=10,
            what="callers to join",
        )
        return result

    outcomes = in_threads(
        callers, lambda: coordinator.run("k", lambda: stampede.MISSING, produce)
    )
    assert all(kind == "ok" and value is result for kind, value, _ in outcomes)


# -- failing open -------------------------------------------------------------


def test_redis_down_computes_locally_once_per_process_without_waiting(make_cache):
    server = fakeredis.FakeServer()
    cache = make_cache([L1, fake_l2(server)])
    server.connected = False
    stored = cache.stored_key("k")
    callers = 10
    work = Work("v", until=lambda: flights(cache).waiting(stored) >= callers - 1)
    outcomes = in_threads(callers, lambda: cache.get_or_set("k", work, 60))
    assert work.calls == 1
    assert all(kind == "ok" and value == "v" for kind, value, _ in outcomes)
    assert max(took for _, _, took in outcomes) < PROMPT
    assert cache.stats()["l2"]["errors"] >= 2  # the read and the lease, at least


def test_a_waiter_stops_waiting_when_redis_stops_answering(make_cache):
    server, here, there = two_processes(make_cache)
    there.tier("l2").acquire_lease(lease_of(here, "k"), 30)
    work = Work("mine")
    thread, result = in_background(lambda: here.get_or_set("k", work, 60))
    polling = here._chain.by_name["l2"].stats
    wait_until(lambda: polling.leases_refused >= 1, timeout=10, what="polling")
    server.connected = False
    thread.join(10)
    assert result[0][:2] == ("ok", "mine") and work.calls == 1
    assert result[0][2] < PROMPT  # not the 30 s lease


def test_an_open_breaker_skips_the_lease_without_io(make_cache):
    server = fakeredis.FakeServer()
    cache = make_cache([L1, fake_l2(server)], BREAKER={"FAILURE_THRESHOLD": 1})
    server.connected = False
    assert cache.get("warm") is None  # one failure opens the breaker
    assert cache.breaker_state("l2") == "open"
    skipped = cache.stats()["l2"]["skipped"]
    assert cache.get_or_set("k", Work("v"), 60) == "v"
    assert cache.stats()["l2"]["skipped"] > skipped
    assert cache.stats()["l2"]["leases"] == 0


def test_fail_open_off_raises_the_lease_error_to_the_caller(make_cache):
    server = fakeredis.FakeServer()
    cache = make_cache([L1, fake_l2(server)], FAIL_OPEN=False)
    cache.set("other", 1)
    server.connected = False
    cache.tier("l1").delete(cache.stored_key("k"))
    with pytest.raises(TierUnavailable):
        cache.get_or_set("k", Work("v"), 60)


# -- real redis-server --------------------------------------------------------


@pytest.fixture
def own_redis(tmp_path):
    from tests.support.redis_servers import RedisServer

    server = RedisServer.start(tmp_path / "redis")
    yield server
    server.stop()


@pytest.mark.redis_server
def test_paused_redis_costs_timeouts_not_the_lease(make_cache, own_redis):
    cache = make_cache([L1, real_l2(own_redis.url(0))])
    cache.get("warm-up")  # a pooled connection, so the pause hangs a read
    stored = cache.stored_key("k")
    callers = 10
    work = Work("v", until=lambda: flights(cache).waiting(stored) >= callers - 1)
    own_redis.pause()
    try:
        outcomes = in_threads(callers, lambda: cache.get_or_set("k", work, 60))
    finally:
        own_redis.resume()
    assert work.calls == 1
    assert all(kind == "ok" and value == "v" for kind, value, _ in outcomes)
    assert max(took for _, _, took in outcomes) < PROMPT


@pytest.mark.redis_server
def test_a_waiter_stops_waiting_when_the_real_redis_hangs(make_cache, own_redis):
    here = make_cache([l1(0), real_l2(own_redis.url(0))], KEY_PREFIX="hang")
    there = make_cache([l1(1), real_l2(own_redis.url(0))], KEY_PREFIX="hang")
    there.tier("l2").acquire_lease(lease_of(here, "k"), 30)
    work = Work("mine")
    thread, result = in_background(lambda: here.get_or_set("k", work, 60))
    polling = here._chain.by_name["l2"].stats
    wait_until(lambda: polling.leases_refused >= 1, timeout=10, what="polling")
    own_redis.pause()
    try:
        thread.join(10)
    finally:
        own_redis.resume()
    assert result[0][:2] == ("ok", "mine") and work.calls == 1
    assert result[0][2] < PROMPT


@pytest.mark.redis_server
def test_acceptance_200_callers_in_4_processes_compute_once(
    clean_redis, redis_url, tmp_path
):
    """4 processes x 50 threads, one cold key, a 0.3 s computation, one L2.

    How long the slowest caller waits is measured by ``bench/stampede.py``.
    """
    outcome = stampede_worker.run_processes(redis_url, tmp_path)
    assert len(outcome.results) == 200
    assert outcome.errors == []
    assert outcome.computations <= 2
    assert outcome.slowest < PROMPT  # nobody waited out the 30 s lease


# -- options and helpers ------------------------------------------------------


def test_stampede_options_are_validated():
    assert parse_options({"TIERS": [L1]}).stampede.lease_seconds == 5.0
    options = parse_options(
        {"TIERS": [L1], "STAMPEDE": {"LEASE_SECONDS": 2, "MAX_POLL_SECONDS": 0.01}}
    )
    assert options.stampede.lease_seconds == 2
    assert options.stampede.max_poll_seconds == 0.01
    for bad in (
        [],
        {"LEASE": 1},
        {"LEASE_SECONDS": 0},
        {"LEASE_SECONDS": True},
        {"LEASE_SECONDS": float("inf")},
        {"MAX_POLL_SECONDS": None},
        {"MAX_POLL_SECONDS": "1"},
    ):
        with pytest.raises(ImproperlyConfigured):
            parse_options({"TIERS": [L1], "STAMPEDE": bad})


def test_lease_seconds_never_exceed_the_value_timeout():
    from django.core.cache.backends.base import DEFAULT_TIMEOUT

    assert stampede.lease_seconds(5, 60, 300) == 5
    assert stampede.lease_seconds(5, 2, 300) == 2
    assert stampede.lease_seconds(5, None, 300) == 5
    assert stampede.lease_seconds(5, float("inf"), 300) == 5
    assert stampede.lease_seconds(5, DEFAULT_TIMEOUT, 1) == 1
    assert stampede.lease_seconds(None, 60, 300) is None
    for unstored in (0, -1, float("nan"), "60", True):
        assert stampede.lease_seconds(5, unstored, 300) is None
