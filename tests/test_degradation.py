"""Fail-open: a failing tier never breaks a view unless FAIL_OPEN is off."""

from __future__ import annotations

import logging

import pytest

from tests import doubles
from tiered_cache.exceptions import CircuitOpen, TierUnavailable

L1 = {"NAME": "l1", "BACKEND": "tiered_cache.tiers.MemoryTier"}
FLAKY = {"NAME": "l2", "BACKEND": "tests.doubles.FlakyTier"}


@pytest.fixture(autouse=True)
def _reset_faults():
    doubles.FAULTS.clear()
    doubles.CALLS.clear()
    yield
    doubles.FAULTS.clear()


@pytest.fixture
def chained(make_cache):
    cache = make_cache([L1, FLAKY])
    yield cache
    cache._chain.by_name["l2"].breaker.reset()


def test_reads_fall_through_a_failing_tier(chained):
    chained.set("k", "v")
    chained.tier("l1").delete(chained.stored_key("k"))
    doubles.FAULTS["l2"] = True
    assert chained.get("k", "default") == "default"
    assert chained.get_many(["k"]) == {}
    assert chained.has_key("k") is False
    assert chained.tier("l2").stats.errors >= 1


def test_writes_reach_healthy_tiers(chained):
    doubles.FAULTS["l2"] = True
    chained.set("k", "v")
    assert chained.get("k") == "v"  # from L1
    assert chained.set_many({"a": 1, "b": 2}) == ["a", "b"]  # authority failed
    assert chained.get_many(["a", "b"]) == {"a": 1, "b": 2}
    assert chained.add("new", 1) is True  # fell over to L1 as authority
    assert chained.incr("new") == 2
    assert chained.touch("k", 10) is True
    assert chained.delete("k") is True
    chained.delete_many(["a", "b"])
    assert chained.get_many(["a", "b"]) == {}
    chained.clear()
    assert chained.get("new") is None


def test_breaker_opens_and_skips_the_dead_tier(chained, caplog):
    doubles.FAULTS["l2"] = True
    with caplog.at_level(logging.WARNING):
        for _ in range(10):
            chained.get("missing")
    assert chained.breaker_state("l2") == "open"
    calls = [c for c in doubles.CALLS if c[0] == "l2"]
    assert len(calls) == 5  # the breaker opened after 5 failures
    assert chained.tier("l2").stats.skipped == 5
    assert chained.tier("l2").stats.breaker_opened == 1
    tier_failures = [r for r in caplog.records if "failed during get" in r.getMessage()]
    assert len(tier_failures) == 1  # logged once per burst, not per call
    transitions = [r for r in caplog.records if "closed -> open" in r.getMessage()]
    assert len(transitions) == 1


@pytest.fixture
def opened(chained, monkeypatch):
    """Open l2's breaker with five failures; return its hand-moved clock."""
    breaker = chained._chain.by_name["l2"].breaker
    now = [1000.0]
    monkeypatch.setattr(breaker, "_clock", lambda: now[0])
    doubles.FAULTS["l2"] = True
    for _ in range(5):
        chained.get("missing")
    assert breaker.state == "open"
    return now


def test_breaker_half_opens_and_closes_after_recovery(chained, opened):
    doubles.FAULTS["l2"] = False
    chained.get("missing")
    assert chained.breaker_state("l2") == "open"  # still within OPEN_SECONDS
    opened[0] += 5.1
    chained.get("missing")  # the half-open probe succeeds
    assert chained.breaker_state("l2") == "closed"


def test_failed_probe_reopens(chained, opened):
    opened[0] += 5.1
    chained.get("missing")
    assert chained.breaker_state("l2") == "open"
    assert chained.tier("l2").stats.breaker_opened == 2


def test_fail_open_off_raises_chained_to_cause(make_cache):
    cache = make_cache([L1, FLAKY], FAIL_OPEN=False)
    doubles.FAULTS["l2"] = True
    try:
        with pytest.raises(TierUnavailable) as info:
            cache.get("k")
        assert isinstance(info.value.__cause__, ConnectionError)
        for call in (
            lambda: cache.set("k", 1),
            lambda: cache.get_many(["k"]),
            lambda: cache.delete("k"),
            lambda: cache.add("k", 1),
            lambda: cache.incr("k"),
            lambda: cache.touch("k"),
            lambda: cache.has_key("k"),
        ):
            with pytest.raises(TierUnavailable):
                call()
        with pytest.raises(CircuitOpen):
            cache.get("k")  # five failures opened the breaker
    finally:
        cache._chain.by_name["l2"].breaker.reset()


def test_programming_errors_raise_even_when_failing_open(chained):
    doubles.FAULTS["l2"] = True
    with pytest.raises(TypeError):
        chained.set("k", "v", timeout="soon")

    class Bad:
        def __reduce__(self):
            raise TypeError("cannot pickle")

    with pytest.raises(TypeError):
        chained.set("k", Bad())


def test_incr_with_every_tier_down_is_a_miss(make_cache):
    cache = make_cache([FLAKY])
    doubles.FAULTS["l2"] = True
    try:
        with pytest.raises(ValueError):
            cache.incr("k")
        assert cache.add("k", 1) is False
    finally:
        cache._chain.by_name["l2"].breaker.reset()


def test_disk_full_does_not_open_the_breaker(make_cache, tmp_path, monkeypatch):
    import errno

    import diskcache

    cache = make_cache(
        [
            L1,
            {
                "NAME": "l3",
                "BACKEND": "diskcache.DjangoCache",
                "LOCATION": str(tmp_path),
                # a loaded machine can take > 0.5 s to create 8 shards
                "OPTIONS": {"OPEN_TIMEOUT": 10.0},
            },
        ]
    )
    cache.set("kept", "v")

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(diskcache.Cache, "set", full)
    for i in range(10):
        cache.set(f"k{i}", "v")  # counted, never raised
    assert cache.tier("l3").stats.errors == 10
    assert cache.breaker_state("l3") == "closed"  # reads still work
    cache.tier("l1").delete(cache.stored_key("kept"))
    assert cache.get("kept") == "v"


def test_a_short_outage_is_seen_ending(chained, caplog):
    """Fewer failures than open the breaker: the end is logged as the start was."""
    import logging

    with caplog.at_level(logging.WARNING):
        doubles.FAULTS["l2"] = True
        chained.set("k", "v")
        doubles.FAULTS["l2"] = False
        chained.set("k", "v")
        chained.set("k", "v")
    lines = [r.getMessage() for r in caplog.records]
    assert chained.breaker_state("l2") == "closed"
    assert sum("failed during set" in line for line in lines) == 1
    assert sum("l2 answered again" in line for line in lines) == 1
