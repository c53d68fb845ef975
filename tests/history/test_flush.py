"""The history's flush (a job of the metrics flusher) and the curve read back."""

from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core.cache import caches
from django.core.management import call_command

from tests.matrix import L1, l3
from tests.metrics.conftest import alias  # noqa: F401  (shared fixture)
from tiered_cache.history.flush import (
    CURVE_FIELD,
    flush_history,
    history_enabled,
    read_curve,
    store_of,
)
from tiered_cache.history.recorder import built_recorder
from tiered_cache.metrics.flusher import Flusher, flusher


@pytest.fixture
def historic(alias, tmp_path):  # noqa: F811
    name = alias(
        [{**L1, "OPTIONS": {"MAX_ENTRIES": 2}}, l3(str(tmp_path / "l3"))],
        HISTORY={"SAMPLE_RATE": 1.0},
    )
    recorder = built_recorder(caches[name].options)
    recorder.buffer.clear()
    recorder.curve.__init__(1.0)
    return name


def test_the_flush_is_a_job_of_the_metrics_flusher():
    assert flush_history in flusher.jobs


def test_a_job_that_raises_is_logged_and_the_others_run(caplog):
    ran = []
    own = Flusher()
    own.add_job(lambda: 1 / 0)
    own.add_job(lambda: ran.append(1))
    own.run_jobs()
    assert ran == [1] and "job" in caplog.text


def test_flush_moves_the_buffer_to_the_l3_store_and_publishes_the_curve(historic):
    cache = caches[historic]
    cache.set("a", 1)
    for key in ("a", "a", "b", "a"):
        cache.get(key)
    flush_history()
    store = store_of(historic)
    history = store.read()
    assert store.kind == "l3"
    assert [a[3] for a in history.accesses] == [True, True, False, True]
    assert sorted(history.names.values()) == ["a", "b"]
    assert list(built_recorder(cache.options).buffer) == []
    (curve,) = (json.loads(v) for v in store.fields(CURVE_FIELD).values())
    assert curve["entries"] == 2  # MAX_ENTRIES, the L1's size
    assert curve["hit_ratio"]["1x"] == pytest.approx(2 / 4)


def test_read_curve_and_cache_stats_show_the_l1_curve(historic):
    cache = caches[historic]
    for key in ("a", "b", "a", "b"):
        cache.get(key)
    flush_history()
    curve = read_curve(historic)
    assert curve["processes"] == 1 and curve["entries"] == 2
    assert curve["hit_ratio"]["0.5x"] == 0.0  # one entry: a, b alternate
    assert curve["hit_ratio"]["1x"] == pytest.approx(0.5)
    out = StringIO()
    call_command("cache_stats", "--json", stdout=out)
    assert json.loads(out.getvalue())[historic]["l1_curve"]["entries"] == 2
    out = StringIO()
    call_command("cache_stats", stdout=out)
    assert "L1 hit ratio at 0.5x 0.0%, 1x 50.0%, 2x 50.0%, 4x 50.0%" in out.getvalue()


def test_no_curve_without_history(alias, tmp_path):  # noqa: F811
    name = alias([L1, l3(str(tmp_path / "l3"))])
    assert read_curve(name) is None
    assert not history_enabled([name])
