"""Training from a recorded history: metrics, replay comparison, a loadable model."""

from __future__ import annotations

import pytest

from tests.policy.test_learned import zipf_with_scans
from tiered_cache.learning import read_history, train_from_history
from tiered_cache.policy import load_policy
from tiered_cache.policy.model import ReuseModel


def history(n: int = 12000) -> list[tuple[str, float]]:
    return [(key, float(t)) for t, key in enumerate(zipf_with_scans(n))]


def test_fit_validate_compare_and_save(tmp_path):
    report = train_from_history(history(), 40)
    assert report.train_requests == 9600 and report.validation_requests == 2400
    assert report.train_samples > 1000 and report.validation_samples > 100
    assert 0.5 < report.metrics["roc_auc"] <= 1.0  # better than a coin
    assert 0 < report.metrics["positive_rate"] < 1
    replay = report.replay
    assert 0 < replay["heuristic_hit_ratio"] < 1
    assert replay["gain_points"] == pytest.approx(
        100 * (replay["learned_hit_ratio"] - replay["heuristic_hit_ratio"])
    )
    path = tmp_path / "model.json"
    report.model.save(path)
    model = ReuseModel.load(path)
    assert model.meta["capacity"] == 40 and "roc_auc" in model.meta["validation"]
    policy = load_policy("learned", {"model_path": str(path), "train": False})
    assert policy.mode() == "model"


def test_the_history_is_ordered_by_time_not_by_position():
    shuffled = list(reversed(history(6000)))
    ordered = history(6000)
    a = train_from_history(shuffled, 40).replay
    b = train_from_history(ordered, 40).replay
    assert a == b


def test_too_short_or_bad_arguments_are_value_errors():
    with pytest.raises(ValueError):
        train_from_history([("a", 0.0), ("b", 1.0)], 1)
    with pytest.raises(ValueError):
        train_from_history(history(100), 0)


def test_read_history_takes_pairs_or_bare_keys(tmp_path):
    path = tmp_path / "history.txt"
    path.write_text("# recorded\n17,5.5\n18\n\n17,9\n")
    assert read_history(path) == [("17", 5.5), ("18", 2.0), ("17", 9.0)]
