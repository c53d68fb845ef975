"""Flushes add up in the shared store; readers see the sum of every process.

Each ``Flusher`` stands for one process: two of them over the same chain
send the same counts twice, as two workers that served the same traffic
would, so the deployment's numbers are twice this process's. The
multi-process proof with real workers is tests/testproject/test_metrics_gunicorn.py.
"""

from __future__ import annotations

import time

import pytest
import redis
from django.core.cache import caches

from tests.matrix import L1, l3, real_l2
from tiered_cache.metrics import fields, read_series, read_summary
from tiered_cache.metrics.flusher import store_of
from tiered_cache.metrics.summary import summarize


def traffic(cache) -> None:
    cache.set("a", 1)
    for _ in range(3):
        cache.get("a")  # three L1 hits
    cache.get("nothing")  # a miss in every tier asked


@pytest.mark.redis_server
def test_two_processes_add_up_in_redis(alias, process, redis_server, tmp_path):
    name = alias([L1, real_l2(redis_server.url(4)), l3(str(tmp_path / "l3"))])
    cache = caches[name]
    traffic(cache)
    local = cache.stats()
    for who in ("worker-1", "worker-2"):
        process(who).flush(name)
    summary = read_summary(name)
    assert summary["store"] == "l2"
    assert summary["processes"] == 2
    l1 = summary["tiers"]["l1"]
    assert l1["hits"] == 2 * local["l1"]["hits"] == 6
    assert summary["total"]["hits"] == 6
    assert summary["total"]["requests"] == 2 * (
        local["l1"]["hits"] + local["l1"]["misses"]
    )
    assert summary["total"]["hit_ratio"] == pytest.approx(6 / 8)
    assert summary["total"]["sets"] == 2
    assert l1["bytes"] == 2 * cache.tier("l1").usage()["bytes"] > 0
    assert summary["tiers"]["l2"]["breaker"] == "closed"
    assert summary["latency"]["get"]["count"] >= 2  # L2's get of "nothing"
    assert list(summary["tiers"]) == ["l1", "l2", "l3"]


@pytest.mark.redis_server
def test_a_flush_sends_only_what_changed_and_is_not_cache_traffic(
    alias, process, redis_server
):
    name = alias([L1, real_l2(redis_server.url(4))])
    cache = caches[name]
    worker = process("w")
    traffic(cache)
    worker.flush(name)
    before = fields.counters(cache._chain)
    worker.flush(name)  # nothing new: adds nothing, counts nothing
    assert fields.counters(cache._chain) == before
    cache.get("a")
    worker.flush(name)
    assert read_summary(name)["tiers"]["l1"]["hits"] == 4


@pytest.mark.redis_server
def test_the_history_is_outside_every_namespace_and_survives_clear(
    alias, process, redis_server
):
    name = alias([L1, real_l2(redis_server.url(4))])
    cache = caches[name]
    traffic(cache)
    process("w").flush(name)
    cache.clear()
    assert read_summary(name)["tiers"]["l1"]["hits"] == 3
    client = redis.Redis.from_url(redis_server.url(4))
    try:
        ours = [k.decode() for k in client.scan_iter(match="tiered_cache:metrics:*")]
        namespace = cache.namespace
        assert ours and not any(k.startswith(namespace) for k in ours)
        minute_keys = [k for k in ours if not k.endswith(":total")]
        assert all(0 < client.ttl(k) <= 24 * 3600 + 120 for k in minute_keys)
    finally:
        client.close()


def test_without_l2_the_processes_of_a_machine_add_up_in_l3(alias, process, tmp_path):
    name = alias([L1, l3(str(tmp_path / "l3"))])
    cache = caches[name]
    traffic(cache)
    process("a").flush(name)
    process("b").flush(name)
    summary = read_summary(name)
    assert summary["store"] == "l3"
    assert summary["processes"] == 2
    assert summary["tiers"]["l1"]["hits"] == 6


def test_with_l1_alone_the_view_is_this_process(alias, process):
    name = alias([L1])
    cache = caches[name]
    traffic(cache)
    process("only").flush(name)
    summary = read_summary(name)
    assert summary["store"] == "local"
    assert summary["total"]["hits"] == 3


def test_a_series_has_one_point_per_step_and_the_last_holds_the_traffic(
    alias, process, tmp_path
):
    name = alias([L1, l3(str(tmp_path / "l3"))])
    traffic(caches[name])
    process("w").flush(name)
    series = read_series(name, window=3600, step=300)
    assert series["step"] == 300
    points = series["tiers"]["l1"]
    assert len(points) == 13
    assert points[-1]["hits"] == 3 and points[-1]["misses"] == 1
    assert points[-1]["hit_ratio"] == pytest.approx(0.75)
    assert points[0]["hit_ratio"] is None  # no reads: no ratio, not zero
    assert [p["t"] for p in points] == sorted(p["t"] for p in points)
    assert series["total"][-1]["hits"] == 3


def test_a_forked_child_does_not_send_what_it_inherited(alias, process, tmp_path):
    name = alias([L1, l3(str(tmp_path / "l3"))])
    cache = caches[name]
    traffic(cache)
    child = process("child")
    child._after_fork()  # what os.register_at_fork runs in a child
    child.process = "child"
    child.flush(name)  # the parent's counts: not sent
    cache.get("a")
    child.flush(name)
    assert read_summary(name)["tiers"]["l1"]["hits"] == 1


def test_gauges_of_processes_that_stopped_flushing_are_left_out():
    now = time.time()
    minute = int(now // 60)
    buckets = {
        minute - 10: {"l1|hits": 5, "p|old": int(now) - 600, "g|old|l1|bytes": 100},
        minute: {"l1|hits": 1, "p|new": int(now), "g|new|l1|bytes": 7},
    }
    summary = summarize(buckets, now, ["l1"])
    assert summary["tiers"]["l1"]["hits"] == 6  # counts stay counted
    assert summary["tiers"]["l1"]["bytes"] == 7  # the dead process holds nothing
    assert summary["processes"] == 1 and summary["processes_seen"] == 2


def test_latency_percentiles_are_bucket_upper_bounds():
    counts = {f"l2|lat|get|{i}": 0 for i in range(16)}
    counts["l2|lat|get|4"] = 98  # <= 1 ms
    counts["l2|lat|get|8"] = 2  # <= 25 ms
    counts["l2|lat_us|get"] = 98 * 800 + 2 * 20_000
    summary = summarize({0: counts}, 0.0, ["l1", "l2"])
    latency = summary["latency"]["get"]
    assert latency == {
        "count": 100,
        "p50_ms": 1.0,
        "p99_ms": 25.0,
        "mean_ms": pytest.approx(1.184),
    }
    assert summary["tiers"]["l2"]["latency"]["get"]["count"] == 100
    assert store_of  # imported for the monkeypatch-free reader path above


def test_a_real_forked_child_sends_only_its_own_counts(alias, tmp_path, forked):
    from tiered_cache.metrics.flusher import flusher

    name = alias([L1, l3(str(tmp_path / "l3"))])
    cache = caches[name]
    traffic(cache)  # the parent's three hits, never flushed

    def child() -> None:  # os.register_at_fork already reset the flusher
        flusher.flush(name)  # what it inherited: not sent
        cache.get("a")
        flusher.flush(name)

    forked(child)
    summary = read_summary(name)
    assert summary["tiers"]["l1"]["hits"] == 1  # the child's one hit
    assert summary["processes"] == 1


def test_key_groups_reach_the_summary(alias, process, tmp_path):
    name = alias([L1, l3(str(tmp_path / "l3"))], METRICS={"GROUPS": 5})
    cache = caches[name]
    cache._chain.groups.reset()
    cache.set("user:1", 1)
    cache.get("user:1")
    cache.get("user:2")
    process("w").flush(name)
    groups = read_summary(name)["groups"]
    assert groups == {"user": {"hits": 1, "misses": 1, "hit_ratio": 0.5}}


def test_the_summary_says_how_long_its_counts_cover():
    from tiered_cache.metrics.summary import summarize

    now = 1_000_000 * 60 + 30.0
    minute = int(now // 60)
    buckets = {
        minute - 10: {"p|w": 1},  # a flush with nothing counted
        minute - 5: {"l1|hits": 3},
        minute: {"l1|misses": 1},
    }
    assert summarize(buckets, now, ["l1"])["covered"] == 5 * 60 + 30
    assert summarize({}, now, ["l1"])["covered"] is None
