"""The metrics store under faults: lost replies, poisoned hashes, forks.

A flush is applied whole and once (a retry of a flush that was applied,
its reply lost, adds nothing); a field or key the readers cannot read is
skipped with a warning, never a crash of the command, the dashboard or a
scrape. Real redis-servers: the faults are a paused server and hashes
written by someone else (docs/faults.rst #41).
"""

from __future__ import annotations

import io
import logging
import time

import pytest
import redis
from django.core.cache import caches
from django.core.management import call_command
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from tests.matrix import L1, l3, real_l2
from tests.support.redis_servers import RedisServer, wait_until
from tiered_cache.metrics import read_series, read_summary
from tiered_cache.metrics.flusher import store_of
from tiered_cache.metrics.prometheus import TieredCacheCollector


def short_l2(url: str) -> dict:
    spec = real_l2(url)
    spec["OPTIONS"] = {"SOCKET_TIMEOUT": 0.2, "SOCKET_CONNECT_TIMEOUT": 0.2}
    return spec


def hits(cache, n: int) -> None:
    cache.set("k", 1)
    for _ in range(n):
        assert cache.get("k") == 1


def on_redis(alias, redis_server, db: int, **options):
    """Return ``(alias name, cache, store, client)`` of a cache over real L2."""
    name = alias([L1, real_l2(redis_server.url(db))], **options)
    client = redis.Redis.from_url(redis_server.url(db))
    return name, caches[name], store_of(name), client


def scrape(name: str) -> dict[str, float]:
    """Return ``{(sample name, labels): value}`` of a scrape, parsed back."""
    registry = CollectorRegistry()
    registry.register(TieredCacheCollector([name]))
    text = generate_latest(registry).decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def l1_hits_scraped(name: str) -> float:
    key = (
        "tiered_cache_requests_total",
        (("cache", name), ("result", "hit"), ("tier", "l1")),
    )
    return scrape(name)[key]


@pytest.fixture
def paused_server(tmp_path):
    server = RedisServer.start(tmp_path / "redis")
    try:
        yield server
    finally:
        server.resume()
        server.stop()


def test_a_flush_whose_reply_was_lost_is_not_counted_again(
    alias, process, paused_server
):
    name = alias([L1, short_l2(paused_server.url(0))])
    cache = caches[name]
    worker = process("w")
    hits(cache, 4)
    worker.flush(name)
    hits(cache, 3)  # 7 hits; the flush of the last 3 meets a paused server
    paused_server.pause()
    with pytest.raises(redis.TimeoutError):
        worker.flush(name)
    paused_server.resume()
    # The server read the flush before the client gave up: it is applied.
    store = store_of(name)
    wait_until(
        lambda: store.totals().get("l1|hits") == 7, timeout=10, what="the lost flush"
    )
    hits(cache, 2)
    worker.flush(name)  # the lost flush again, then the 2 new hits
    assert store.totals()["l1|hits"] == 9
    assert read_summary(name)["tiers"]["l1"]["hits"] == 9


@pytest.mark.redis_server
def test_a_flush_over_a_field_that_is_not_a_number_counts_once(
    alias, process, redis_server
):
    name, cache, store, client = on_redis(alias, redis_server, 5)
    client.hset(f"{store.base}:total", mapping={"l1|hits": "abc", "l1|sets": "1.5"})
    worker = process("w")
    hits(cache, 3)
    worker.flush(name)
    hits(cache, 2)
    worker.flush(name)
    # The unreadable values are replaced, never added to twice by a retry.
    assert store.totals()["l1|hits"] == 5
    assert read_summary(name)["tiers"]["l1"]["hits"] == 5
    assert l1_hits_scraped(name) == 5


@pytest.mark.redis_server
def test_a_key_of_the_wrong_type_refuses_the_flush_whole_and_readers_skip_it(
    alias, process, redis_server, caplog
):
    name, cache, store, client = on_redis(alias, redis_server, 5)
    total = f"{store.base}:total"
    client.rpush(total, "not a hash")
    worker = process("w")
    hits(cache, 3)
    with pytest.raises(redis.ResponseError, match="not a hash"):
        worker.flush(name)
    minute = int(time.time() // 60)
    assert not any(client.exists(f"{store.base}:{m}") for m in (minute - 1, minute))
    with caplog.at_level(logging.WARNING, logger="tiered_cache.metrics"):
        assert l1_hits_scraped(name) == 0  # the totals are unreadable: skipped
    assert "not a hash" in caplog.text
    client.delete(total)
    worker.flush(name)  # the refused flush, once
    assert store.totals()["l1|hits"] == 3
    client.delete(*client.keys(f"{store.base}:*"))
    client.set(f"{store.base}:{int(time.time() // 60)}", "a string")
    summary = read_summary(name)
    assert summary["tiers"]["l1"]["hits"] == 0


POISON = {
    "l1|misses": "1.5",
    "l2|lat|get|99": "1",
    "l2|lat|get|x": "1",
    "l2|lat|get": "1",
    "g|nobar": "1",
    "g|evil|l2|breaker": "9",
    "p|evil": "soon",
    "grp|user|bogus": "1",
    "zzz": "1",
    "x|y": "1",
    'evil"\n</script>|hits': "1",
}


@pytest.mark.redis_server
def test_readers_skip_the_fields_they_cannot_read(alias, process, redis_server):
    name, cache, store, client = on_redis(alias, redis_server, 5, METRICS={"GROUPS": 5})
    hits(cache, 3)
    process("w").flush(name)
    for minute in range(int(time.time() // 60) - 1, int(time.time() // 60) + 2):
        client.hset(f"{store.base}:{minute}", mapping=POISON)
    client.hset(f"{store.base}:total", mapping=POISON)
    assert read_summary(name)["tiers"]["l1"]["hits"] == 3
    assert read_series(name, 3600, 60)["tiers"]["l1"][-1]["hits"] in (0, 3)
    assert l1_hits_scraped(name) == 3
    tiers = {dict(labels).get("tier") for _, labels in scrape(name)} - {None}
    assert tiers == {"l1", "l2"}  # the configured tiers: no field makes one
    assert list(read_summary(name)["tiers"]) == ["l1", "l2"]
    out = io.StringIO()
    call_command("cache_stats", "--json", stdout=out)
    call_command("cache_stats", stdout=io.StringIO())


def test_a_poisoned_disk_store_is_repaired_by_the_next_flush(alias, process, tmp_path):
    name = alias([L1, l3(str(tmp_path / "l3"))])
    cache = caches[name]
    store = store_of(name)
    store.cache.set(f"{store.base}:total", "not a dict")
    minute = int(time.time() // 60)
    for m in (minute, minute + 1):
        store.cache.set(f"{store.base}:{m}", {"l1|hits": "abc", "p|x": None})
    hits(cache, 3)
    process("w").flush(name)
    assert store.totals()["l1|hits"] == 3
    assert read_summary(name)["tiers"]["l1"]["hits"] == 3
    assert l1_hits_scraped(name) == 3


def test_a_forked_child_sends_what_it_served_before_its_first_flush(
    alias, tmp_path, forked
):
    from tiered_cache.metrics.flusher import flusher

    name = alias([L1, l3(str(tmp_path / "l3"))])
    cache = caches[name]
    hits(cache, 7)  # the parent's, never flushed here

    def child() -> None:  # a gunicorn --preload worker serves before it flushes
        hits(cache, 5)
        flusher.flush(name)

    forked(child)
    assert read_summary(name)["tiers"]["l1"]["hits"] == 5


@pytest.mark.parametrize("shared", ["l2", "l3"])
def test_key_groups_stay_bounded_across_processes(
    alias, process, request, tmp_path, shared
):
    if shared == "l2":
        tier = real_l2(request.getfixturevalue("redis_server").url(6))
    else:
        tier = l3(str(tmp_path / "l3"))
    name = alias([L1, tier], METRICS={"GROUPS": 2})
    cache = caches[name]
    # Each process counts its own first two groups: four processes, eight.
    for index, worker in enumerate(["w1", "w2", "w3", "w4"]):
        cache._chain.groups.reset()
        for group in (f"g{2 * index}", f"g{2 * index + 1}"):
            cache.get(f"{group}:key")
        process(worker).flush(name)
    groups = read_summary(name)["groups"]
    assert sorted(groups) == ["g0", "g1", "other"]
    assert groups["other"]["misses"] == 6
    assert {labels[1][1] for (metric, labels) in scrape(name) if "group" in metric} == {
        "-",  # declared at zero
        "g0",
        "g1",
        "other",
    }


@pytest.mark.redis_server
@pytest.mark.parametrize("off_by", [-90_000, -7200, 7200])
def test_a_process_whose_clock_is_off_counts_in_the_servers_minutes(
    alias, process, redis_server, monkeypatch, off_by
):
    import sys
    from types import SimpleNamespace

    name = alias([L1, real_l2(redis_server.url(7))])
    cache = caches[name]
    hits(cache, 4)
    skewed = SimpleNamespace(time=lambda: time.time() + off_by)
    monkeypatch.setattr(sys.modules["tiered_cache.metrics.flusher"], "time", skewed)
    process("skewed").flush(name)
    summary = read_summary(name, since=3600)
    assert summary["tiers"]["l1"]["hits"] == 4
    assert summary["processes"] == 1


@pytest.mark.redis_server
def test_a_hash_with_too_many_fields_is_skipped_not_read(
    alias, process, redis_server, monkeypatch, caplog
):
    from tiered_cache.metrics import store as store_module

    monkeypatch.setattr(store_module, "MAX_FIELDS", 50)
    name, cache, store, client = on_redis(alias, redis_server, 7)
    hits(cache, 3)
    process("w").flush(name)
    client.hset(f"{store.base}:total", mapping={f"junk{i}": 1 for i in range(60)})
    with caplog.at_level(logging.WARNING, logger="tiered_cache.metrics"):
        assert store.totals() == {}
    assert "more than 50" in caplog.text
    assert read_summary(name)["tiers"]["l1"]["hits"] == 3  # the bucket is read


def cluster_tier(redis_cluster) -> dict:
    return {
        "NAME": "l2",
        "BACKEND": "tiered_cache.tiers.RedisClusterTier",
        "LOCATION": redis_cluster.startup_urls,
    }


@pytest.mark.redis_server
def test_a_flush_into_a_cluster_runs_on_the_slot_of_its_hash_tag(
    alias, process, redis_cluster
):
    name = alias([L1, cluster_tier(redis_cluster)], METRICS={"GROUPS": 1})
    cache = caches[name]
    hits(cache, 3)
    cache.get("user:1")
    cache.get("cart:1")
    worker = process("w")
    worker.flush(name)
    store = store_of(name)
    assert store.totals()["l1|hits"] == 3
    summary = read_summary(name)
    assert summary["tiers"]["l1"]["hits"] == 3
    assert sorted(summary["groups"]) == ["-", "other", "user"]
    assert l1_hits_scraped(name) == 3
