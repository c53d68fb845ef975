"""``tiered_cache.cached``: keys, single flight, XFetch and stale-if-error.

XFetch runs on the tests' fake clock (the cache's CLOCK) with a fake random
draw and a fake stopwatch for the computation time (``delta``), so the
decision "recompute early or not" is exact, not probabilistic.
"""

from __future__ import annotations

import copy
import datetime
import decimal
import enum
import itertools
import math
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import fakeredis
import pytest
from django.core.cache import caches

from tests.flights import fake_l2, in_background, in_threads, l1
from tests.matrix import L1
from tests.support.redis_servers import wait_until
from tiered_cache import decorators, stampede
from tiered_cache.decorators import cached, default_key

ROOT = Path(__file__).resolve().parents[1]


class Color(enum.Enum):
    RED = "red"


class Counter:
    """A function to decorate: counts calls, returns what it is told."""

    def __init__(self, value="v", error=None):
        self.value = value
        self.error = error
        self.calls = 0
        self.__qualname__ = "Counter"
        self.__module__ = __name__

    def __call__(self, *args, **kwargs):
        self.calls += 1
        if self.error is not None:
            raise self.error
        return copy.deepcopy(self.value)  # a new object per call, as computed


@pytest.fixture
def stopwatch(monkeypatch):
    """Each computation takes ``seconds[0]`` on the decorator's stopwatch."""
    seconds = [0.0]
    reads = itertools.count()  # read at the start, then at the end

    monkeypatch.setattr(
        decorators, "_timer", lambda: seconds[0] if next(reads) % 2 else 0.0
    )
    return seconds


@pytest.fixture
def draw(monkeypatch):
    """The random draw XFetch uses, in (0, 1]."""
    value = [1.0]
    monkeypatch.setattr(decorators, "_random", lambda: value[0])
    return value


# -- keys ---------------------------------------------------------------------


def test_default_key_is_canonical_and_bounded():
    k = default_key("m.f", (1, "a"), {"x": 1, "y": [1, 2]})
    assert k.startswith("cached:m.f:") and len(k) == len("cached:m.f:") + 32
    assert k == default_key("m.f", (1, "a"), {"y": [1, 2], "x": 1})  # kw order
    assert k != default_key("m.f", (1, "b"), {"x": 1, "y": [1, 2]})
    assert k != default_key("m.g", (1, "a"), {"x": 1, "y": [1, 2]})
    assert default_key("f", ((1,),), {}) != default_key("f", ([1],), {})
    assert default_key("f", (1,), {}) != default_key("f", ("1",), {})
    assert default_key("f", (True,), {}) != default_key("f", (1,), {})
    assert default_key("f", ("a", "b"), {}) != default_key("f", ("a\x1fb",), {})
    assert default_key("f", ({"b", "a"},), {}) == default_key("f", ({"a", "b"},), {})
    assert default_key("f", ("x" * 10**6,), {}) == default_key("f", ("x" * 10**6,), {})
    assert len(default_key("f", ("x" * 10**6,), {})) < 60


def sample_arguments() -> tuple:
    """Arguments whose naive forms differ between processes (set order...)."""
    return (
        {"b", "a", "c"},
        frozenset({"x", "y"}),
        {"k": {"d", "e"}},
        Color.RED,
        decimal.Decimal("1.10"),
        datetime.date(2026, 1, 2),
        uuid.UUID(int=7),
        b"\x00\xff",
        1.5,
        None,
    )


def test_default_key_is_the_same_in_every_process():
    script = (
        "from tests.test_decorators import sample_arguments;"
        "from tiered_cache.decorators import default_key;"
        "print(default_key('f', sample_arguments(), {}))"
    )
    keys = {
        subprocess.run(
            [sys.executable, "-c", script],
            cwd=ROOT,
            env={"PYTHONHASHSEED": seed, "PATH": "/usr/bin:/bin"},
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        for seed in ("1", "2", "3")
    }
    assert keys == {default_key("f", sample_arguments(), {})}


def test_long_names_are_cut_and_arguments_without_a_stable_form_refused(make_cache):
    cache = make_cache([L1])

    def f(*args):
        return 1

    f.__qualname__ = "q" * 500
    decorated = cached(60, cache=cache)(f)
    assert len(decorated.cache_key()) < 200
    with pytest.raises(TypeError, match="pass key="):
        decorated(object())


@pytest.mark.django_db
def test_saved_model_instances_key_by_label_and_primary_key():
    from django.contrib.auth.models import Group

    group = Group.objects.create(name="a")
    same = Group.objects.get(pk=group.pk)
    assert default_key("f", (group,), {}) == default_key("f", (same,), {})
    with pytest.raises(TypeError):
        default_key("f", (Group(name="unsaved"),), {})


def test_a_key_function_names_the_entry(make_cache):
    cache = make_cache([L1])
    work = Counter({"name": "ada"})
    profile = cached(60, key=lambda user_id: f"profile:{user_id}", cache=cache)(work)
    assert profile(7) == {"name": "ada"} and profile(7) == {"name": "ada"}
    assert work.calls == 1
    assert profile.cache_key(7) == "profile:7"
    value, delta, soft = cache.get("profile:7")  # the decorator's own record
    assert value == {"name": "ada"} and isinstance(delta, float) and soft > 0
    assert profile.invalidate(7) is True and cache.get("profile:7") is None
    assert profile(7) == {"name": "ada"} and work.calls == 2


# -- caching and single flight ------------------------------------------------


def test_results_are_cached_per_arguments_with_copies(make_cache):
    cache = make_cache([L1, fake_l2(fakeredis.FakeServer())])
    work = Counter(["rows"])
    report = cached(60, cache=cache)(work)
    first = report(2025)
    first.append("mutated by a caller")
    assert report(2025) == ["rows"] and work.calls == 1
    assert report(2026) == ["rows"] and work.calls == 2
    assert report.stats.snapshot() == {
        "hits": 1,
        "misses": 2,
        "computations": 2,
        "early": 0,
        "stale": 0,
        "errors": 0,
    }
    assert report.__wrapped__ is work


def test_concurrent_callers_compute_once(make_cache):
    cache = make_cache([L1, fake_l2(fakeredis.FakeServer())])
    callers = 16
    ready = threading.Event()

    def slow() -> str:
        flight = cache.stored_key(report.cache_key())
        wait_until(
            lambda: (
                stampede.coordinator_for(cache._chain).waiting(flight) >= callers - 1
            ),
            timeout=10,
            what="callers to join",
        )
        ready.set()
        return "v"

    report = cached(60, cache=cache)(slow)
    outcomes = in_threads(callers, report)
    assert ready.is_set()
    assert [value for _, value, _ in outcomes] == ["v"] * callers
    assert report.stats.computations == 1


def test_another_django_cache_gets_single_flight_per_process():
    callers = 8
    calls = []

    def slow() -> str:
        calls.append(1)
        flight = caches["default"].make_key(report.cache_key())
        wait_until(
            lambda: (
                stampede.local_coordinator("default").waiting(flight) >= callers - 1
            ),
            timeout=10,
            what="callers to join",
        )
        return "v"

    report = cached(60)(slow)  # "default" is a LocMemCache in tests/settings.py
    caches["default"].delete(report.cache_key())
    outcomes = in_threads(callers, report)
    assert [value for _, value, _ in outcomes] == ["v"] * callers
    assert len(calls) == 1
    report.invalidate()


def test_two_simulated_processes_share_one_computation_through_the_lease(
    make_cache,
):
    server = fakeredis.FakeServer()
    here = make_cache([l1(0), fake_l2(server)], KEY_PREFIX="dec")
    there = make_cache([l1(1), fake_l2(server)], KEY_PREFIX="dec")
    polling = here._chain.by_name["l2"].stats

    def computed_there() -> str:  # holds the lease until "here" waits for it
        wait_until(lambda: polling.leases_refused >= 1, timeout=10, what="polling")
        return "v"

    work_here = Counter("computed here")
    report_there = cached(60, key=lambda: "report", cache=there)(computed_there)
    report_here = cached(60, key=lambda: "report", cache=here)(work_here)
    holder, held = in_background(report_there)
    wait_until(lambda: there.stats()["l2"]["leases"] == 1, timeout=10, what="lease")
    waiter, waited = in_background(report_here)
    holder.join(10)
    waiter.join(10)
    assert held[0][:2] == ("ok", "v") and waited[0][:2] == ("ok", "v")
    assert work_here.calls == 0
    assert report_here.stats.misses == 1 and report_here.stats.computations == 0


# -- XFetch -------------------------------------------------------------------


def xfetch_fires(now, soft, delta, beta, draw_value):
    return now - delta * beta * math.log(draw_value) >= soft


def test_xfetch_recomputes_early_exactly_when_the_formula_says(
    make_cache, clock, stopwatch, draw
):
    cache = make_cache([L1])
    work = Counter("v1")
    report = cached(100, cache=cache, early_recompute=1.0)(work)
    stopwatch[0] = 10.0  # computing takes 10 s
    assert report() == "v1"
    _, delta, soft = cache.get(report.cache_key())
    assert delta == 10.0 and soft == clock() + 100
    clock.advance(95)  # 5 s before the soft expiry
    draw[0] = 0.9  # -10 * ln(0.9) = 1.05 s of head start: not yet
    assert not xfetch_fires(clock(), soft, delta, 1.0, draw[0])
    assert report() == "v1" and work.calls == 1
    draw[0] = 0.5  # -10 * ln(0.5) = 6.9 s: recompute now
    assert xfetch_fires(clock(), soft, delta, 1.0, draw[0])
    work.value = "v2"
    assert report() == "v2"  # the caller that refreshed gets the new value
    assert work.calls == 2 and report.stats.early == 1
    _, _, new_soft = cache.get(report.cache_key())
    assert new_soft == clock() + 100
    assert report() == "v2" and work.calls == 2


def test_xfetch_beta_scales_the_head_start_and_is_off_by_default(
    make_cache, clock, stopwatch, draw
):
    cache = make_cache([L1])
    stopwatch[0] = 10.0
    eager, lazy, off = Counter(), Counter(), Counter()
    eager_f = cached(100, key=lambda: "e", cache=cache, early_recompute=3.0)(eager)
    lazy_f = cached(100, key=lambda: "l", cache=cache, early_recompute=0.5)(lazy)
    off_f = cached(100, key=lambda: "o", cache=cache)(off)
    for f in (eager_f, lazy_f, off_f):
        f()
    clock.advance(85)  # 15 s left; -10 * ln(0.6) = 5.1 s
    draw[0] = 0.6
    for f in (eager_f, lazy_f, off_f):
        f()
    assert (eager.calls, lazy.calls, off.calls) == (2, 1, 1)  # 15.3 s >= 15 s


def test_xfetch_never_waits_and_skips_when_another_process_refreshes(
    make_cache, clock, stopwatch, draw
):
    server = fakeredis.FakeServer()
    here = make_cache([l1(0), fake_l2(server)], KEY_PREFIX="x")
    there = make_cache([l1(1), fake_l2(server)], KEY_PREFIX="x")
    stopwatch[0] = 10.0
    work = Counter("v1")
    report = cached(100, key=lambda: "r", cache=here, early_recompute=1.0)(work)
    report()
    lease = stampede.lease_key(there.namespace, there.stored_key("r"))
    there.tier("l2").acquire_lease(lease, 30)  # another process is refreshing
    clock.advance(99)
    draw[0] = 0.5
    work.value = "v2"
    assert report() == "v1" and work.calls == 1  # served at once, no refresh
    assert report.stats.early == 0


def test_xfetch_refreshes_under_a_lease_and_gives_it_back(
    make_cache, clock, stopwatch, draw
):
    server = fakeredis.FakeServer()
    cache = make_cache([L1, fake_l2(server)])
    stopwatch[0] = 10.0
    work = Counter("v1")
    report = cached(100, key=lambda: "r", cache=cache, early_recompute=1.0)(work)
    report()
    clock.advance(99)
    draw[0] = 0.5
    work.value = "v2"
    assert report() == "v2" and report.stats.early == 1
    assert cache.stats()["l2"]["leases"] == 2  # the first computation, the refresh
    lease = stampede.lease_key(cache.namespace, cache.stored_key("r"))
    assert fakeredis.FakeRedis(server=server).exists(lease) == 0


def test_xfetch_skips_while_this_process_already_refreshes(
    make_cache, clock, stopwatch, draw
):
    cache = make_cache([L1])
    stopwatch[0] = 10.0
    refreshing = threading.Event()
    release = threading.Event()
    calls = []

    def work() -> str:
        calls.append(1)
        if len(calls) == 2:  # the first refresh: hold it
            refreshing.set()
            release.wait(10)
        return f"v{len(calls)}"

    report = cached(100, key=lambda: "r", cache=cache, early_recompute=1.0)(work)
    assert report() == "v1"
    clock.advance(99)
    draw[0] = 0.5
    first, result = in_background(report)
    refreshing.wait(10)
    try:
        assert report() == "v1"  # no second refresh, no waiting
    finally:
        release.set()
        first.join(10)
    assert result[0][:2] == ("ok", "v2") and len(calls) == 2


def test_xfetch_with_fail_open_off_and_redis_down_serves_the_value(
    make_cache, clock, stopwatch, draw
):
    server = fakeredis.FakeServer()
    cache = make_cache([L1, fake_l2(server)], FAIL_OPEN=False)
    stopwatch[0] = 10.0
    work = Counter("v1")
    report = cached(50, key=lambda: "r", cache=cache, early_recompute=1.0)(work)
    report()
    clock.advance(49)  # within L1_MAX_STALENESS: L1 still serves the hit
    draw[0] = 0.5
    # The lease call fails (FAIL_OPEN off raises): the refresh is skipped.
    server.connected = False
    assert report() == "v1" and work.calls == 1


def test_an_early_recomputation_that_raises_serves_the_current_value(
    make_cache, clock, stopwatch, draw, caplog
):
    cache = make_cache([L1])
    stopwatch[0] = 10.0
    work = Counter("v1")
    report = cached(100, cache=cache, early_recompute=1.0)(work)
    report()
    clock.advance(99)
    draw[0] = 0.5
    work.error = RuntimeError("database is down")
    assert report() == "v1"
    assert report.stats.errors == 1 and report.stats.early == 0
    assert "early recomputation raised" in caplog.text


# -- stale if error -----------------------------------------------------------


def test_a_failing_computation_serves_the_last_value_within_the_window(
    make_cache, clock
):
    cache = make_cache([L1])
    work = Counter("v1")
    report = cached(10, cache=cache, stale_if_error=60)(work)
    assert report() == "v1"
    clock.advance(20)  # stale for 10 s, inside the 60 s window
    work.error = RuntimeError("database is down")
    assert report() == "v1"
    assert report.stats.stale == 1 and report.stats.errors == 1
    work.error = None
    work.value = "v2"
    assert report() == "v2"  # the next call tries again
    clock.advance(75)  # v2 stale for 65 s: past the window, entry gone
    work.error = RuntimeError("still down")
    with pytest.raises(RuntimeError, match="still down"):
        report()


def test_without_stale_if_error_the_error_is_raised(make_cache, clock):
    cache = make_cache([L1])
    work = Counter("v1")
    report = cached(10, cache=cache)(work)
    report()
    clock.advance(11)
    work.error = RuntimeError("down")
    with pytest.raises(RuntimeError):
        report()


def test_authority_down_serves_the_last_value_without_computing(make_cache, clock):
    server = fakeredis.FakeServer()
    cache = make_cache([L1, fake_l2(server)])
    work = Counter("v1")
    report = cached(10, cache=cache, stale_if_error=60)(work)
    report()
    clock.advance(20)  # the L1 copy is still trusted (L1_MAX_STALENESS 60 s)
    server.connected = False
    work.value = "v2"
    assert report() == "v1" and work.calls == 1
    assert report.stats.stale == 1
    server.connected = True


def test_authority_down_without_a_stale_value_computes_locally(make_cache):
    server = fakeredis.FakeServer()
    cache = make_cache([L1, fake_l2(server)])
    server.connected = False
    work = Counter("v1")
    report = cached(10, cache=cache, stale_if_error=60)(work)
    assert report() == "v1" and work.calls == 1


def test_timeout_zero_always_computes_but_can_fall_back(make_cache, clock):
    cache = make_cache([L1])
    work = Counter("v1")
    report = cached(0, cache=cache, stale_if_error=30)(work)
    assert report() == "v1" and report() == "v1" and work.calls == 2
    work.error = RuntimeError("down")
    assert report() == "v1" and report.stats.stale == 1


def test_timeout_none_never_goes_stale(make_cache, clock):
    cache = make_cache([L1])
    work = Counter("v1")
    report = cached(None, cache=cache, early_recompute=True, stale_if_error=5)(work)
    report()
    clock.advance(10**6)
    assert report() == "v1" and work.calls == 1


# -- arguments of the decorator -----------------------------------------------


def test_bad_decorator_arguments_are_refused():
    with pytest.raises(TypeError, match="parentheses"):
        cached(lambda: 1)
    for kwargs in ({"timeout": "60"}, {"key": "k"}, {"cache": 3}):
        with pytest.raises(TypeError):
            cached(**kwargs)
    for kwargs in (
        {"timeout": float("nan")},
        {"early_recompute": -1},
        {"stale_if_error": float("inf")},
    ):
        with pytest.raises(ValueError):
            cached(**kwargs)

    async def coroutine():
        return 1

    with pytest.raises(TypeError, match="coroutines"):
        cached(60)(coroutine)


def test_cached_is_exported_lazily():
    import tiered_cache

    assert tiered_cache.cached is cached
    assert "cached" in tiered_cache.__all__
