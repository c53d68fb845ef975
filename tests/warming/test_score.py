"""The decayed-frequency scorer: frequency and recency, names only."""

from __future__ import annotations

import pytest

from tiered_cache.history.store import History
from tiered_cache.warming.score import decayed_frequency


def test_a_read_one_half_life_old_counts_half():
    history = History(
        [(1, 0.0, 0, True, "l1"), (2, 10.0, 0, True, "l1")], {1: "old", 2: "new"}
    )
    scores = dict(decayed_frequency(history, half_life=10.0))
    assert scores == {"new": pytest.approx(1.0), "old": pytest.approx(0.5)}


def test_frequent_keys_come_first_and_unnamed_keys_are_left_out():
    read = [(1, 5.0, 0, True, ""), (2, 5.0, 0, True, ""), (3, 5.0, 0, True, "")]
    accesses = [read[0]] * 3 + [read[1]] + [read[2]] * 9
    ranked = decayed_frequency(History(accesses, {1: "a", 2: "b"}))
    assert [key for key, _ in ranked] == ["a", "b"]


def test_an_empty_history_scores_nothing():
    assert decayed_frequency(History()) == []
