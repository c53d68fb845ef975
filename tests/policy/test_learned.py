"""The learned policy: fallback modes, no look-ahead, bounded memory, model files."""

from __future__ import annotations

import json
import logging
import random
import subprocess
import sys

import pytest

from tests.policy.drive import Store
from tiered_cache.policy import REGISTRY, LearnedPolicy, load_policy
from tiered_cache.policy.keystats import FEATURES, GROUPS
from tiered_cache.policy.model import ReuseModel


def zipf_with_scans(n: int, keys: int = 400, seed: int = 3) -> list[str]:
    """Skewed popularity with scans of one-hit wonders mixed in."""
    rng = random.Random(seed)
    weights = [1 / (rank + 1) for rank in range(keys)]
    trace = [f"k:{i}" for i in rng.choices(range(keys), weights, k=n)]
    for start in range(0, n, 2500):
        trace[start : start + 200] = [f"scan:{start}-{i}" for i in range(200)]
    return trace


def model_of(age: float = 0.0, count: float = 0.0) -> ReuseModel:
    """A hand-made model: log-odds = age x ``age`` + count x ``count``."""
    coef = [0.0] * len(FEATURES)
    coef[FEATURES.index("age")] = age
    coef[FEATURES.index("count")] = count
    return ReuseModel(coef=coef, intercept=0.0)


def test_registered_and_built_like_the_others():
    assert REGISTRY["learned"] is LearnedPolicy
    policy = load_policy("learned", {"base": "lru", "choices": ["lru"]})
    assert policy.base_name == "lru"
    for bad in ({"base": "nope"}, {"base": "learned"}, {"tail": 0}):
        with pytest.raises(ValueError):
            load_policy("learned", bad)


@pytest.mark.parametrize("name", ["lru", "s3fifo", "sieve", "tinylfu"])
def test_tail_starts_with_the_victim(name):
    policy = load_policy(name)
    store = Store(policy, 50)
    store.run(zipf_with_scans(3000))
    victim = policy.victim()
    tail = policy.tail(5)
    assert tail[0] == victim
    assert len(tail) == 5 and set(tail) <= store.keys


def test_untrained_it_evicts_exactly_as_its_base_heuristic():
    trace = zipf_with_scans(6000)
    learned = Store(LearnedPolicy(choices=["s3fifo"], train=False), 40)
    base = Store(load_policy("s3fifo"), 40)
    assert learned.run(trace) == base.run(trace)
    assert learned.evicted == base.evicted
    counts = learned.policy.counts
    assert counts["untrained"] == len(learned.evicted) and counts["model"] == 0


def test_a_losing_model_is_benched_counted_and_logged(caplog):
    # Evicting the most recent, most read keys first: the duels say so.
    policy = LearnedPolicy(choices=["s3fifo"], train=False, min_duels=20)
    policy.load_model(model_of(age=3.0, count=-3.0))
    caplog.set_level(logging.INFO, "tiered_cache.policy.learned")
    Store(policy, 40).run(zipf_with_scans(20000))
    assert policy.board.losses > policy.board.wins
    assert policy.counts["losing"] > 0
    assert policy.mode() == "losing"
    assert "model -> losing" in caplog.text


def test_the_shadow_a_b_benches_a_model_that_costs_hits():
    # With shadows (several choices) the judge is a shadow cache run with the
    # model beside the plain one: its verdict, not the duels, decides.
    policy = LearnedPolicy(train=False)
    policy.load_model(model_of(age=3.0, count=-3.0))
    Store(policy, 40).run(zipf_with_scans(20000))
    chooser = policy.chooser
    assert chooser is not None and chooser.judge is not None
    assert chooser.judge.policy.model is policy.model
    assert chooser.model_lead is not None and chooser.model_lead < 0
    assert policy.mode() == "losing" and policy.counts["losing"] > 0


def test_a_model_that_beats_its_heuristic_keeps_deciding():
    # Over LRU, on scans: evicting keys seen once wins the duels and hits.
    trace = zipf_with_scans(20000)
    policy = LearnedPolicy(
        base="lru", choices=["lru"], train=False, random_candidates=3
    )
    coef = [0.0] * len(FEATURES)
    coef[FEATURES.index("once")] = -5.0
    coef[FEATURES.index("age")] = -1.0
    policy.load_model(ReuseModel(coef=coef, intercept=0.0))
    hits = Store(policy, 40).run(trace)
    assert policy.board.wins > policy.board.losses
    assert policy.counts["model"] > policy.counts["losing"]
    assert policy.counts["overridden"] > 0
    assert hits > Store(load_policy("lru"), 40).run(trace)


def test_a_model_that_stops_being_refreshed_goes_stale():
    policy = LearnedPolicy(choices=["s3fifo"], refit=100, label_every=1)
    policy.load_model(model_of(age=-1.0))
    policy.trainer.submit = lambda *args: False  # fitting never happens
    Store(policy, 20).run(zipf_with_scans(5000))
    assert policy.mode() == "stale"
    assert policy.counts["stale"] > 0


def test_it_fits_in_the_background_and_uses_the_model():
    policy = LearnedPolicy(choices=["s3fifo"], refit=500, min_samples=500)
    store = Store(policy, 40)
    store.run(zipf_with_scans(6000))
    assert policy.trainer.done.wait(60), "no fit finished"
    store.run(zipf_with_scans(4000, seed=4))
    assert policy.trainer.fits >= 1 and policy.trainer.failures == 0
    assert policy.model is not None
    assert policy.model.meta["samples"] >= 500
    assert policy.counts["model"] > 0


def test_no_look_ahead_the_prefix_is_replayed_alike_whatever_follows():
    head = zipf_with_scans(8000, seed=5)
    tails = (zipf_with_scans(3000, seed=6), [f"new:{i}" for i in range(3000)])
    evicted = []
    for tail in tails:
        store = Store(LearnedPolicy(refit=500, min_samples=500, wait_for_fit=True), 40)
        store.run(head)
        evicted.append(list(store.evicted))
        store.run(tail)
    assert evicted[0] == evicted[1]
    assert len(evicted[0]) > 1000


def test_memory_stays_bounded_on_a_stream_of_new_keys():
    policy = LearnedPolicy(ghost_ratio=2.0, train=False)
    policy.load_model(model_of(age=-1.0))
    Store(policy, 100).run([f"once:{i}" for i in range(30000)])
    assert len(policy) == 100
    assert len(policy.ghost) <= 200
    assert len(policy.labels) <= policy.labels.max_pending
    assert len(policy.board) <= policy.board.max_open


def test_the_shadows_move_it_off_a_bad_base():
    # LRU against scans and a skewed popularity: the shadows prefer another.
    policy = LearnedPolicy(base="lru", train=False, shadow=64)
    Store(policy, 64).run(zipf_with_scans(40000))
    assert policy.base_name != "lru"
    assert policy.switches and policy.switches[0][1] != "lru"
    assert set(policy.stats()["shadows"]) == {"lru", "s3fifo", "tinylfu"}


def test_model_round_trip_and_loading_by_path(tmp_path):
    model = model_of(age=-2.0, count=0.5)
    model.group_bias[7] = 0.25
    path = tmp_path / "model.json"
    model.save(path)
    again = ReuseModel.load(path)
    assert again == model
    policy = load_policy("learned", {"model_path": str(path), "train": False})
    assert policy.mode() == "model"
    data = json.loads(path.read_text())
    assert data["format"] == 1 and len(data["group_bias"]) == GROUPS
    for broken in ({"format": 2}, {"coef": [1.0]}, {"features": ["age"]}):
        with pytest.raises(ValueError):
            ReuseModel.from_dict({**data, **broken})


def test_importing_the_policies_does_not_import_sklearn():
    code = (
        "import sys, tiered_cache.policy as p; p.load_policy('learned');"
        "print('sklearn' in sys.modules, 'numpy' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert out.stdout.split() == ["False", "False"]
