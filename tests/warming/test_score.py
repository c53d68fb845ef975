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


def test_a_record_of_the_read_sample_counts_read_every_reads():
    spatial = 5  # under 1e-3 of the hash space: the spatial sample
    other = 2**63  # outside it: one read in 10
    history = History(
        [(spatial, 0.0, 0, True, "")] * 5 + [(other, 0.0, 0, True, "")],
        {spatial: "s", other: "o"},
        sample_rate=1e-3,
        read_every=10,
    )
    assert (history.weight(spatial), history.weight(other)) == (1, 10)
    assert decayed_frequency(history) == [("o", 10.0), ("s", 5.0)]
