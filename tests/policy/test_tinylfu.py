"""W-TinyLFU on hand-made traces: the sketch decides who enters main."""

from __future__ import annotations

import pytest

from tests.policy.drive import Store
from tiered_cache.policy import TinyLFUPolicy
from tiered_cache.policy.sketch import CountMinSketch

HOT = [f"hot{i}" for i in range(20)]


def warm(policy: TinyLFUPolicy, capacity: int) -> Store:
    store = Store(policy, capacity)
    store.run(HOT)
    for _ in range(4):
        store.run(HOT)
    return store


def test_a_cold_key_is_refused_against_a_hot_victim_without_window():
    store = warm(TinyLFUPolicy(window_ratio=0), 20)
    assert not store.access("cold")
    assert store.refused == ["cold"] and store.evicted == []
    assert set(HOT) == store.keys


def test_a_key_that_became_frequent_is_admitted():
    store = warm(TinyLFUPolicy(window_ratio=0), 20)
    for _ in range(10):
        store.access("rising")
    assert "rising" in store.keys
    assert len(store.evicted) == 1


def test_the_window_lets_a_new_key_in_then_the_sketch_throws_it_out():
    policy = TinyLFUPolicy()
    store = warm(policy, 20)
    store.run(["cold1"])  # enters the window, a hot window key goes to main
    assert policy.where("cold1") == "window"
    store.run(["cold2"])  # candidate cold1 (seen once) loses to main's victim
    assert "cold1" in store.evicted and "cold2" in store.keys
    assert len(set(HOT) & store.keys) == 19  # one hot key paid at cold1's entry


def test_a_probation_hit_promotes_to_protected():
    policy = TinyLFUPolicy(window_ratio=0)
    store = Store(policy, 10)
    store.run("abcdefghij")
    assert policy.where("a") == "probation"
    store.run("aa")
    store.run("k")  # drains the buffered hits
    assert policy.where("a") == "protected"


def test_sketch_saturates_ages_and_resizes():
    sketch = CountMinSketch(16, sample_factor=10)
    for _ in range(40):
        sketch.increment("k")
    assert sketch.estimate("k") == 15  # 4-bit counters
    assert sketch.estimate("never") <= 1
    for i in range(200):
        sketch.increment(f"other{i}")
    assert sketch.resets >= 1 and sketch.estimate("k") < 15
    sketch.resize(1000)
    assert sketch.keys == 1000 and sketch.width == 4096
    assert sketch.estimate("k") == 0


def test_clear_and_bad_options():
    policy = TinyLFUPolicy()
    Store(policy, 3).run("abcdabcd")
    policy.clear()
    assert len(policy) == 0 and policy.victim() is None
    for options in (
        {"window_ratio": 1},
        {"protected_ratio": -0.1},
        {"sample_factor": 0},
        {"hit_buffer": -1},
    ):
        with pytest.raises(ValueError):
            TinyLFUPolicy(**options)
    with pytest.raises(TypeError):
        TinyLFUPolicy(window=0.5)
