"""The collector reads the shared totals at scrape time, on a private registry."""

from __future__ import annotations

import re

import pytest
from django.core.cache import caches
from prometheus_client import CollectorRegistry, generate_latest

from tests.matrix import L1, l3
from tiered_cache.metrics.prometheus import TieredCacheCollector, register


@pytest.fixture
def scraped(alias, process, tmp_path):
    name = alias([L1, l3(str(tmp_path / "l3"))])
    registry = CollectorRegistry()
    registry.register(TieredCacheCollector([name]))
    return caches[name], process("w"), registry


def value(registry: CollectorRegistry, metric: str, **labels: str) -> float | None:
    return registry.get_sample_value(metric, {"cache": "m", **labels})


def test_a_scrape_shows_the_flushed_counters_with_bounded_labels(scraped):
    cache, worker, registry = scraped
    cache.set("user:1", 1)
    cache.get("user:1")
    cache.get("user:2")
    worker.flush("m")
    hit = value(registry, "tiered_cache_requests_total", tier="l1", result="hit")
    miss = value(registry, "tiered_cache_requests_total", tier="l1", result="miss")
    assert (hit, miss) == (1, 1)
    assert value(registry, "tiered_cache_sets_total", tier="l3") == 1
    assert (
        value(
            registry,
            "tiered_cache_operation_duration_seconds_count",
            tier="l3",
            op="set",
        )
        == 1
    )
    assert value(registry, "tiered_cache_entries", tier="l1") == 1
    assert value(registry, "tiered_cache_processes") == 1
    text = generate_latest(registry).decode()
    names = set(re.findall(r"^(\w+)(?:\{| )", text, re.M))
    assert names and all(name.startswith("tiered_cache_") for name in names)
    counters = re.findall(r"^# TYPE (\w+) counter$", text, re.M)
    assert counters and all(name.endswith("_total") for name in counters)
    assert "user" not in text  # no key, no key group, ever


def test_counters_only_grow_between_scrapes(scraped):
    cache, worker, registry = scraped
    cache.set("a", 1)
    cache.get("a")
    worker.flush("m")
    first = value(registry, "tiered_cache_requests_total", tier="l1", result="hit")
    cache.get("a")
    worker.flush("m")
    second = value(registry, "tiered_cache_requests_total", tier="l1", result="hit")
    assert second == first + 1


def test_the_number_of_series_stays_the_same_after_10000_distinct_keys(scraped):
    cache, worker, registry = scraped

    def traffic(keys: range) -> None:
        for n in keys:
            cache.set(f"k:{n}", n)
            cache.get(f"k:{n}")
            cache.get(f"absent:{n}")
            cache.delete(f"k:{n}")

    def series() -> int:
        worker.flush("m")
        return sum(len(family.samples) for family in registry.collect())

    traffic(range(20))
    before = series()
    traffic(range(20, 10_020))
    assert series() == before


def test_register_adds_the_collector_once():
    registry = CollectorRegistry()
    assert register(registry) is register(registry)


def test_key_groups_are_a_bounded_label(alias, process, tmp_path):
    name = alias([L1, l3(str(tmp_path / "l3"))], METRICS={"GROUPS": 1})
    cache = caches[name]
    cache._chain.groups.reset()
    for n in range(50):
        cache.get(f"user:{n}")
        cache.get(f"k{n}:x")  # fifty more groups: all "other"
    process("w").flush(name)
    registry = CollectorRegistry()
    registry.register(TieredCacheCollector([name]))
    family = next(
        f for f in registry.collect() if f.name == "tiered_cache_group_requests"
    )
    labels = {(s.labels["group"], s.labels["result"]): s.value for s in family.samples}
    assert labels == {
        ("user", "miss"): 50,
        ("other", "miss"): 50,
        ("other", "hit"): 0,  # the pooled groups are declared at zero
        ("-", "hit"): 0,
        ("-", "miss"): 0,
    }


@pytest.mark.redis_server
def test_a_scrape_while_the_store_is_down_says_so_and_does_not_fail(
    alias, process, tmp_path
):
    from tests.matrix import real_l2
    from tests.support.redis_servers import RedisServer

    server = RedisServer.start(tmp_path / "redis")
    spec = real_l2(server.url(0))
    spec["OPTIONS"] = {"SOCKET_TIMEOUT": 0.2, "SOCKET_CONNECT_TIMEOUT": 0.2}
    name = alias([L1, spec])
    cache = caches[name]
    cache.set("a", 1)
    cache.get("a")
    process("w").flush(name)
    registry = CollectorRegistry()
    registry.register(TieredCacheCollector([name]))
    assert value(registry, "tiered_cache_store_up") == 1
    assert value(registry, "tiered_cache_requests_total", tier="l1", result="hit") == 1
    server.stop()
    text = generate_latest(registry).decode()  # a scrape, not a server error
    assert 'tiered_cache_store_up{cache="m"} 0.0' in text
    assert "tiered_cache_requests_total{" not in text  # unknown, not zero


def test_register_reads_no_store(alias, tmp_path, monkeypatch):
    from tiered_cache.metrics import prometheus

    alias([L1, l3(str(tmp_path / "l3"))])
    reads = []
    real = prometheus.store_of
    monkeypatch.setattr(prometheus, "store_of", lambda a: reads.append(a) or real(a))
    registry = CollectorRegistry(auto_describe=True)  # as prometheus_client's own
    register(registry)  # at URLconf import: Redis may be down (issue 8)
    assert reads == []
    assert "tiered_cache_store_up" in generate_latest(registry).decode()
    assert reads == ["m"]  # the scrape reads it


def _series(registry: CollectorRegistry) -> int:
    return sum(len(family.samples) for family in registry.collect())


@pytest.mark.redis_server
def test_series_stay_constant_over_10000_keys_from_several_processes(
    alias, process, redis_server
):
    """Each process names its own first groups; workers come and go (issue 8)."""
    from tests.matrix import real_l2

    redis_server.flushdb(8)
    name = alias([L1, real_l2(redis_server.url(8))], METRICS={"GROUPS": 5})
    cache = caches[name]
    registry = CollectorRegistry()
    registry.register(TieredCacheCollector([name]))
    cache._chain.groups.reset()
    for n in range(20):  # the first worker: every operation, five groups
        cache.set(f"g{n % 5}:{n}", n)
        cache.get(f"g{n % 5}:{n}")
        cache.get(f"g{n % 5}:absent{n}")
        cache.delete(f"g{n % 5}:{n}")
    process("w0").flush(name)
    before = _series(registry)
    for worker in ("w1", "w2", "w3"):  # restarted workers, new keys and groups
        cache._chain.groups.reset()
        for n in range(1667):
            cache.get(f"{worker}x{n}:k")
            cache.get(f"{worker}plain{n}")  # no ':': the group "-"
        process(worker).flush(name)
    assert _series(registry) == before


def test_readers_show_only_the_busiest_groups_of_any_store(alias, process, tmp_path):
    from tiered_cache.metrics import read_summary
    from tiered_cache.metrics.flusher import store_of

    name = alias([L1, l3(str(tmp_path / "l3"))], METRICS={"GROUPS": 3})
    process("w").flush(name)
    store = store_of(name)
    # A store written before groups were bounded in it: fifty groups.
    unbounded = {f"grp|g{n}|misses": n + 1 for n in range(50)}
    minute = f"{store.base}:{int(store.now() // 60)}"
    for key in (f"{store.base}:total", minute):
        store.cache.set(key, {**store.cache.get(key, {}), **unbounded})
    groups = read_summary(name)["groups"]
    assert sorted(groups) == ["g47", "g48", "g49", "other"]
    assert groups["other"]["misses"] == sum(range(1, 48))
    registry = CollectorRegistry()
    registry.register(TieredCacheCollector([name]))
    scraped = {
        s.labels["group"]
        for f in registry.collect()
        if f.name == "tiered_cache_group_requests"
        for s in f.samples
    }
    assert scraped == {"g47", "g48", "g49", "other", "-"}
