"""Counters inside the backend: the delta of every operation, per tier.

Each test reads the chain's counters as the flusher does
(``metrics.fields.counters``) before and after one operation, and asserts the
fields that moved. Real tiers throughout: L1 memory, L2 on fakeredis (a real
redis-server in ``test_store.py``), L3 diskcache in a temp folder.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import fakeredis
import pytest

from tests.flights import Work, fake_l2, in_threads
from tests.matrix import L1, l3
from tests.support.redis_servers import find_free_port
from tiered_cache import cached
from tiered_cache.metrics import fields
from tiered_cache.stats import LATENCY_BUCKETS_MS


def delta(cache: Any, operation: Callable[[], Any]) -> dict[str, int]:
    """Return the counters that ``operation`` changed, latency sums left out."""
    before = fields.counters(cache._chain)
    operation()
    after = fields.counters(cache._chain)
    moved = {
        name: after.get(name, 0) - before.get(name, 0)
        for name in {*before, *after}
        if after.get(name, 0) != before.get(name, 0) and "|lat_us|" not in name
    }
    return moved


def latency_count(moved: dict[str, int], tier: str, op: str) -> int:
    prefix = f"{tier}|lat|{op}|"
    return sum(value for name, value in moved.items() if name.startswith(prefix))


@pytest.fixture
def three(make_cache, tmp_path):
    """L1 + L2 (fakeredis) + L3; the bus off, so only cache traffic moves."""
    return make_cache(
        [L1, fake_l2(fakeredis.FakeServer()), l3(str(tmp_path / "l3"))],
        INVALIDATION=False,
    )


def test_set_counts_a_write_in_every_tier_and_times_the_shared_ones(three):
    moved = delta(three, lambda: three.set("a", 1))
    assert {k: v for k, v in moved.items() if "|lat|" not in k} == {
        "l1|sets": 1,
        "l2|sets": 1,
        "l3|sets": 1,
    }
    assert latency_count(moved, "l2", "set") == 1
    assert latency_count(moved, "l3", "set") == 1
    assert latency_count(moved, "l1", "set") == 0  # local memory is never timed


def test_an_l1_hit_counts_one_hit_and_nothing_else(three):
    three.set("a", 1)
    assert delta(three, lambda: three.get("a")) == {"l1|hits": 1}


def test_an_l2_hit_counts_the_l1_miss_the_l2_hit_and_the_promotion(three):
    three.set("a", 1)
    three.tier("l1").delete(three.stored_key("a"))
    moved = delta(three, lambda: three.get("a"))
    assert moved.pop("l2|lat|get|" + _bucket_of(moved, "l2|lat|get|")) == 1
    assert moved == {
        "l1|misses": 1,
        "l2|hits": 1,
        "l1|sets": 1,
        "l1|promotions": 1,
    }


def _bucket_of(moved: dict[str, int], prefix: str) -> str:
    (name,) = [name for name in moved if name.startswith(prefix)]
    index = int(name.rsplit("|", 1)[1])
    assert 0 <= index <= len(LATENCY_BUCKETS_MS)
    return str(index)


def test_a_miss_everywhere_counts_a_miss_in_the_tiers_asked(three):
    moved = delta(three, lambda: three.get("nothing"))
    assert moved["l1|misses"] == 1 and moved["l2|misses"] == 1
    assert not any(name.endswith("|hits") for name in moved)


def test_delete_get_many_add_and_touch(three):
    three.set("a", 1)
    moved = delta(three, lambda: three.delete("a"))
    assert moved["l1|deletes"] == 1 and moved["l2|deletes"] == 1
    # L3 was asked too (its answer, "did I hold it", is its own business).
    assert latency_count(moved, "l3", "delete") == 1
    three.set_many({"x": 1, "y": 2})
    moved = delta(three, lambda: three.get_many(["x", "y", "z"]))
    assert moved["l1|hits"] == 2 and moved["l1|misses"] == 1
    moved = delta(three, lambda: three.add("new", 1))
    assert moved["l2|sets"] == 1 and moved["l1|sets"] == 1
    assert latency_count(moved, "l2", "add") == 1
    moved = delta(three, lambda: three.touch("new", 60))
    assert latency_count(moved, "l2", "touch") == 1


def test_a_value_too_big_for_a_tier_is_refused_with_its_reason(make_cache):
    small = {**L1, "OPTIONS": {"MAX_VALUE_BYTES": 64}}
    cache = make_cache([small, fake_l2(fakeredis.FakeServer())], INVALIDATION=False)
    moved = delta(cache, lambda: cache.set("big", "x" * 1000))
    assert moved["l1|refused"] == 1
    assert moved["l1|refused|too_big"] == 1
    assert moved["l2|sets"] == 1


def test_an_eviction_by_capacity_and_an_admission_refusal(make_cache):
    bounded = {**L1, "OPTIONS": {"MAX_ENTRIES": 2}}
    cache = make_cache([bounded])
    cache.set("a", 1)
    cache.set("b", 2)
    moved = delta(cache, lambda: cache.set("c", 3))
    assert moved["l1|evictions"] == 1
    tier = cache.tier("l1")
    tier.policy.admit = lambda key, size: False  # a policy that turns values away
    moved = delta(cache, lambda: cache.set("d", 4))
    assert moved["l1|refused|admission"] == 1


def test_an_unreachable_redis_counts_an_error_by_kind(make_cache):
    nowhere = {
        "NAME": "l2",
        "BACKEND": "django_redis.cache.RedisCache",
        "LOCATION": f"redis://127.0.0.1:{find_free_port()}/0",
    }
    cache = make_cache([L1, nowhere], INVALIDATION=False)
    moved = delta(cache, lambda: cache.get("a"))
    kinds = {name: v for name, v in moved.items() if name.startswith("l2|error|")}
    assert sum(kinds.values()) == 1 and moved["l2|errors"] == 1
    assert latency_count(moved, "l2", "get") == 1  # failed calls are timed too


def test_collapsed_stampedes_are_counted_on_the_chain(make_cache):
    cache = make_cache([L1])
    stored = cache.stored_key("k")
    from tiered_cache import stampede

    flights = stampede.coordinator_for(cache._chain)
    callers = 8
    work = Work("v", until=lambda: flights.waiting(stored) >= callers - 1)
    before = cache._chain.stats.collapsed
    in_threads(callers, lambda: cache.get_or_set("k", work, 60))
    assert work.calls == 1
    assert cache._chain.stats.collapsed - before == callers - 1


def test_a_stale_value_served_is_counted_on_the_chain(make_cache, clock):
    cache = make_cache([L1])
    calls = []

    @cached(timeout=10, cache=cache, stale_if_error=600)
    def compute() -> int:
        calls.append(1)
        if len(calls) > 1:
            raise RuntimeError("upstream down")
        return 1

    assert compute() == 1
    clock.now += 11  # no longer fresh, still stored
    moved = delta(cache, compute)
    assert moved["chain|stale_served"] == 1


def test_the_bus_counters_are_fields_when_there_is_a_bus(make_cache):
    cache = make_cache([L1, fake_l2(fakeredis.FakeServer())])
    assert cache._chain.bus is not None
    moved = delta(cache, lambda: cache.set("a", 1))
    assert moved.get("bus|announced", 0) == 1


def test_metrics_off_times_nothing(make_cache):
    cache = make_cache(
        [L1, fake_l2(fakeredis.FakeServer())],
        INVALIDATION=False,
        METRICS={"ENABLED": False},
    )
    moved = delta(cache, lambda: cache.set("a", 1))
    assert moved == {"l1|sets": 1, "l2|sets": 1}


#: Counters that only failures make (each by a bounded kind).
FAILURES = {"errors", "error", "busy", "skipped", "breaker_opened"}


def test_the_fields_stay_the_same_after_10000_distinct_keys(three):
    def traffic(keys: range) -> None:
        for n in keys:
            three.set(f"user:{n}", n)
            three.get(f"user:{n}")
            three.get(f"absent:{n}")
            three.delete(f"user:{n}")

    traffic(range(20))  # every operation seen once
    names = set(fields.counters(three._chain))
    traffic(range(20, 10_020))
    after = set(fields.counters(three._chain))
    # A loaded machine may add real events (an L3 shard busy, an L2 timeout):
    # failures, never a field made from a key.
    assert {name.split("|")[1] for name in after - names} <= FAILURES, after - names
    assert not any("user" in name or "absent" in name for name in after)


def test_key_groups_are_bounded_and_counted_only_when_asked(make_cache):
    plain = make_cache([L1])
    assert "get" not in vars(plain)  # no breakdown: the hit path is untouched
    cache = make_cache([L1], METRICS={"GROUPS": 2})
    groups = cache._chain.groups
    groups.reset()
    cache.get("user:1")
    cache.set("user:1", 1)
    assert cache.get("user:1") == 1
    assert cache.get("page:home", "dflt") == "dflt"  # the default still comes back
    cache.get("cart:9")  # a third group: over the limit of 2
    cache.get("b@d:1")  # not a plain name
    cache.get("homepage")  # no ":": never the key itself
    assert groups.hits == {"user": 1}
    assert groups.misses == {"user": 1, "page": 1, "other": 2, "-": 1}
    moved = delta(cache, lambda: cache.get("user:2"))
    assert moved["grp|user|misses"] == 1


def test_a_group_limit_out_of_range_is_a_configuration_error():
    from django.core.exceptions import ImproperlyConfigured

    from tiered_cache.conf import parse_options

    for bad in (-1, 101, 1.5, True, "3"):
        with pytest.raises(ImproperlyConfigured, match="GROUPS"):
            parse_options({"TIERS": [L1], "METRICS": {"GROUPS": bad}})
