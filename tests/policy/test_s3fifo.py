"""S3-FIFO on hand-made traces: one-hit wonders leave first, ghosts come back."""

from __future__ import annotations

import pytest

from tests.policy.drive import Store
from tiered_cache.policy import LRUPolicy, S3FIFOPolicy

HOT = [f"hot{i}" for i in range(9)]
SCAN = [f"once{i}" for i in range(30)]


def test_one_hit_wonders_are_evicted_before_keys_read_again():
    store = Store(S3FIFOPolicy(), 10)
    store.run(HOT + HOT)  # every hot key inserted, then read once
    store.run(SCAN)  # 30 keys never read again
    assert set(HOT) <= store.keys
    assert set(store.evicted) == set(SCAN[:-1])  # the scan left through small


def test_lru_loses_the_same_hot_keys_to_the_scan():
    store = Store(LRUPolicy(), 10)
    store.run(HOT + HOT)
    store.run(SCAN)
    assert not set(HOT) & store.keys


def test_an_evicted_key_comes_back_to_main_a_deleted_one_to_small():
    policy = S3FIFOPolicy()
    store = Store(policy, 4)
    store.run("abcde")  # a, never read, leaves the small queue: ghost
    assert store.evicted == ["a"] and policy.where("a") == "ghost"
    store.run("a")  # b leaves for the ghost, a re-enters straight into main
    assert store.evicted == ["a", "b"]
    assert policy.where("a") == "main" and policy.where("b") == "ghost"
    policy.on_remove("d")  # a deletion: no ghost
    store.keys.discard("d")
    assert policy.where("d") is None
    store.run("d")
    assert policy.where("d") == "small"


def test_main_gives_frequent_keys_another_round():
    policy = S3FIFOPolicy()
    store = Store(policy, 4)
    store.run("abcde")  # a -> ghost
    store.run("a")  # b leaves, a back in main
    store.run("aa")  # a read twice in main
    store.run("wxyz")  # pressure from new keys
    assert "a" in store.keys
    assert policy.where("a") == "main"


def test_hits_on_keys_gone_meanwhile_are_ignored():
    policy = S3FIFOPolicy()
    store = Store(policy, 3)
    store.run("abc")
    policy.on_hit("zzz")  # lock-free hit racing a removal: buffered, dropped
    policy.on_remove("b")
    policy.on_hit("b")
    store.keys.discard("b")
    store.run("de")
    assert "zzz" not in set(policy)
    assert len(policy) == len(store.keys) == 3


def test_clear_and_bad_options():
    policy = S3FIFOPolicy()
    Store(policy, 2).run("abcab")
    policy.clear()
    assert len(policy) == 0 and policy.victim() is None
    assert policy.where("a") is None
    for options in (
        {"small_ratio": 0},
        {"ghost_ratio": -1},
        {"promote_at": 0},
        {"hit_buffer": 0},
    ):
        with pytest.raises(ValueError):
            S3FIFOPolicy(**options)
