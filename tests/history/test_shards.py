"""The SHARDS estimate against exact LRU hit ratios of the simulator."""

from __future__ import annotations

import random

import pytest

from tiered_cache.history.sampling import Sampler
from tiered_cache.history.shards import MissRatioCurve
from tiered_cache.simulate import replay


def zipf_trace(n: int, keys: int, seed: int = 7) -> list[str]:
    rng = random.Random(seed)
    weights = [1 / (rank + 1) for rank in range(keys)]
    return [f"k{i}" for i in rng.choices(range(keys), weights, k=n)]


def test_unsampled_curve_equals_lru_exactly():
    trace = zipf_trace(20000, 2000)
    curve = MissRatioCurve(1.0, max_keys=10_000)
    sampler = Sampler(1.0)
    curve.feed(sampler(key) for key in trace)
    for size in (50, 200, 800):
        exact = replay(trace, "lru", size, timer_cost=0).hit_ratio
        # Bins are 1/32 of a doubling wide: a size between two edges reads
        # the lower one.
        assert curve.hit_ratios([size])[0] == pytest.approx(exact, abs=0.01)


def test_sampled_curve_is_close_to_lru():
    trace = zipf_trace(60000, 5000)
    sampler = Sampler(0.2)
    curve = MissRatioCurve(0.2, max_keys=10_000)
    curve.feed(h for h in map(sampler, trace) if h is not None)
    sizes = [100, 400, 1600]
    estimate = curve.hit_ratios(sizes, requests=len(trace))
    for size, value in zip(sizes, estimate, strict=True):
        exact = replay(trace, "lru", size, timer_cost=0).hit_ratio
        assert value == pytest.approx(exact, abs=0.04)


def test_memory_is_bounded_by_max_keys():
    curve = MissRatioCurve(1.0, max_keys=100)
    curve.feed(range(5000))
    assert len(curve) == 100
    assert len(curve._tree.tree) == 401  # 4 x max_keys slots, renumbered


def test_forgotten_keys_count_as_misses_at_every_size():
    curve = MissRatioCurve(1.0, max_keys=2)
    curve.feed([1, 2, 3, 1])  # 1 was forgotten when 3 came
    assert curve.hit_ratios([10]) == [0.0]


def test_no_sample_yet_gives_none():
    assert MissRatioCurve(0.5).hit_ratios([1, 2]) == [None, None]


def test_window_halves_the_histogram():
    curve = MissRatioCurve(1.0, window=4)
    curve.feed([1, 1, 1, 1])
    assert curve.accesses == 2
    assert curve.hit_ratios([1]) == [pytest.approx(3 / 4)]
