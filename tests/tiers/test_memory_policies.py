"""The memory tier running with every registered policy: budget, TTL, removal."""

from __future__ import annotations

import threading

import pytest

from tests.clock import FakeClock
from tiered_cache.envelope import Record
from tiered_cache.policy import REGISTRY, LRUPolicy
from tiered_cache.sentinels import MISSING
from tiered_cache.tiers.memory import MemoryTier

POLICIES = sorted(REGISTRY)
#: Options for the hammering test: the learned policy fits while threads run.
HAMMER_OPTIONS = {"learned": {"refit": 300, "min_samples": 300, "label_every": 1}}


def tier(clock=None, **options):
    return MemoryTier("", {"OPTIONS": options}, name="l1", clock=clock or FakeClock())


def rec(value, expires_at=None):
    return Record.for_value(value, expires_at)


class Recording(LRUPolicy):
    """LRU that writes down which of on_evict and on_remove the tier called."""

    calls: list[tuple[str, str]] = []

    def on_evict(self, key: str) -> None:
        self.calls.append(("evict", key))
        LRUPolicy.on_remove(self, key)  # not self.on_remove: one record per call

    def on_remove(self, key: str) -> None:
        self.calls.append(("remove", key))
        super().on_remove(key)


@pytest.mark.parametrize("policy", POLICIES)
def test_byte_budget_is_honoured_with_reads_in_between(policy):
    t = tier(MAX_BYTES=20_000, POLICY=policy)
    for i in range(300):
        t.set(f"k{i}", rec("x" * (200 + 37 * (i % 11))))
        t.get_value(f"k{i // 2}", None)
        t.get_value(f"k{i % 7}", None)
        assert t.size_bytes <= 20_000
    assert t.stats.evictions > 0
    assert t.describe()["policy"] == policy
    assert t.check() == []


@pytest.mark.parametrize("policy", POLICIES)
def test_entry_budget_and_ttl(policy):
    clock = FakeClock(1000.0)
    t = tier(clock, MAX_ENTRIES=5, POLICY=policy)
    t.set("short", rec("v", 1010.0))
    for i in range(4):
        t.set(f"k{i}", rec(i))
    assert t.get_value("short", MISSING) == "v"
    clock.advance(10)
    assert t.get_value("short", MISSING) is MISSING
    assert t.stats.expirations == 1
    for i in range(4, 20):
        t.set(f"k{i}", rec(i))
        t.get_value(f"k{i - 1}", None)
    assert len(t) == 5
    assert t.check() == []


@pytest.mark.parametrize("policy", POLICIES)
def test_delete_clear_and_invalidate_keep_policy_and_store_agreed(policy):
    t = tier(MAX_ENTRIES=4, POLICY=policy)
    for key in "abcdef":
        t.set(key, rec(key))
        t.get_value("a", None)
    t.delete("a")
    t.set("g", rec("g"))
    t.invalidate("g", 10**18)
    t.clear("")
    assert len(t) == 0 and len(t.policy) == 0
    assert t.check() == []


def test_the_tier_tells_eviction_from_deletion():
    Recording.calls = []
    t = tier(MAX_ENTRIES=2, POLICY="tests.tiers.test_memory_policies.Recording")
    for key in "abc":
        t.set(key, rec(key))
    t.delete("b")
    assert Recording.calls == [("evict", "a"), ("remove", "b")]


def test_s3fifo_ghost_remembers_evicted_keys_not_deleted_ones():
    t = tier(MAX_ENTRIES=4, POLICY="s3fifo")
    for key in "abcde":
        t.set(key, rec(key))
    assert not t.has_key("a") and t.policy.where("a") == "ghost"
    t.delete("b")
    assert t.policy.where("b") is None
    t.set("a", rec("a"))
    assert t.policy.where("a") == "main"


def test_tinylfu_without_window_refuses_a_cold_key_through_the_tier():
    t = tier(MAX_ENTRIES=3, POLICY="tinylfu", POLICY_OPTIONS={"window_ratio": 0})
    for key in "abc":
        t.set(key, rec(key))
    for _ in range(3):
        for key in "abc":
            t.get_value(key, None)
    t.set("cold", rec("cold"))
    assert not t.has_key("cold")
    assert t.stats.refused == 1 and t.stats.evictions == 0
    assert t.check() == []


@pytest.mark.parametrize("policy", POLICIES)
def test_threads_hammering_one_store_keep_invariants(policy):
    t = tier(MAX_ENTRIES=50, POLICY=policy, POLICY_OPTIONS=HAMMER_OPTIONS.get(policy))
    errors = []

    def worker(n):
        try:
            for i in range(2000):
                key = f"k{(i * 7 + n) % 120}"
                if i % 3:
                    t.get_value(key, None)
                else:
                    t.set(key, rec({"n": i}))
                if i % 50 == 0:
                    t.delete(key)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert t.check() == []
    assert len(t) <= 50
    if policy == "learned":  # it fitted in its own thread meanwhile
        assert t.policy.trainer.done.wait(60)
        assert t.policy.trainer.fits >= 1 and t.policy.trainer.failures == 0
