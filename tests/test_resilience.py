from __future__ import annotations

import logging
import threading

from tiered_cache.resilience import (
    CLOSED,
    HALF_OPEN,
    OPEN,
    BreakerOptions,
    CircuitBreaker,
    LogThrottle,
)


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def breaker(on_open=None, **kwargs):
    clock = Clock()
    options = BreakerOptions(**kwargs)
    return CircuitBreaker("l2", options, clock=clock, on_open=on_open), clock


def test_opens_after_consecutive_failures():
    b, _ = breaker(failure_threshold=3)
    for _ in range(2):
        b.record_failure()
    assert b.state == CLOSED and b.allow()
    b.record_failure()
    assert b.state == OPEN and not b.allow()


def test_success_resets_the_consecutive_count():
    b, _ = breaker(failure_threshold=3, min_calls=1000)
    for _ in range(10):
        b.record_failure()
        b.record_failure()
        b.record_success()
    assert b.state == CLOSED


def test_opens_on_failure_rate_over_the_window():
    b, clock = breaker(failure_threshold=100, failure_rate=0.5, min_calls=10, window=10)
    b.record_failure()
    for _ in range(4):
        b.record_success()
        b.record_failure()
        clock.now += 0.1
    assert b.state == CLOSED  # 9 calls: below min_calls
    b.record_success()
    b.record_failure()
    assert b.state == OPEN


def test_old_calls_leave_the_window():
    b, clock = breaker(failure_threshold=100, min_calls=4, window=1)
    b.record_failure()
    b.record_failure()
    clock.now += 5
    b.record_success()
    b.record_success()
    b.record_failure()
    assert b.state == CLOSED


def test_half_open_lets_one_probe_through():
    opened = []
    b, clock = breaker(
        failure_threshold=1, open_seconds=5, on_open=lambda: opened.append(1)
    )
    b.record_failure()
    clock.now += 4.9
    assert not b.allow()
    clock.now += 0.2
    assert b.allow()
    assert b.state == HALF_OPEN
    assert not b.allow()  # only one probe at a time
    b.record_failure()
    assert b.state == OPEN
    assert opened == [1, 1]
    clock.now += 5.1
    assert b.allow()
    b.record_success()
    assert b.state == CLOSED and b.allow()


def test_lost_probe_expires():
    b, clock = breaker(failure_threshold=1, open_seconds=5)
    b.record_failure()
    clock.now += 5.1
    assert b.allow()
    clock.now += 5.1
    assert b.allow()


def test_reset_and_transition_logging(caplog):
    b, _ = breaker(failure_threshold=1)
    with caplog.at_level(logging.INFO):
        b.record_failure()
        b.reset()
    assert b.state == CLOSED
    assert [r.getMessage() for r in caplog.records] == [
        "tier l2 circuit breaker closed -> open",
        "tier l2 circuit breaker open -> closed",
    ]


def test_breaking_and_healing_are_logged_at_the_same_level(caplog):
    b, clock = breaker(failure_threshold=1, open_seconds=5)
    with caplog.at_level(logging.WARNING):
        b.record_failure()
        clock.now += 5
        assert b.allow()  # the half-open probe is not news at WARNING
        b.record_success()
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (logging.WARNING, "tier l2 circuit breaker closed -> open"),
        (logging.WARNING, "tier l2 circuit breaker half_open -> closed"),
    ]


def test_a_dead_tier_whose_probes_keep_failing_logs_one_line(caplog):
    b, clock = breaker(failure_threshold=1, open_seconds=5)
    with caplog.at_level(logging.WARNING):
        b.record_failure()
        for _ in range(10):  # 50 s of failed probes
            clock.now += 5
            assert b.allow()
            b.record_failure()
        clock.now += 5
        assert b.allow()
        b.record_success()
    assert [r.getMessage() for r in caplog.records] == [
        "tier l2 circuit breaker closed -> open",
        "tier l2 circuit breaker half_open -> closed"
        " (10 transitions since the last line not logged)",
    ]


def test_a_flapping_breaker_logs_one_pair_per_interval(caplog):
    b, clock = breaker(failure_threshold=1, open_seconds=1)
    with caplog.at_level(logging.WARNING):
        for _ in range(8):  # open, probe, close: every 2 s for 16 s
            b.record_failure()
            clock.now += 1
            assert b.allow()
            b.record_success()
            clock.now += 1
    messages = [r.getMessage() for r in caplog.records]
    assert messages == [
        "tier l2 circuit breaker closed -> open",
        "tier l2 circuit breaker half_open -> closed",
        "tier l2 circuit breaker closed -> open"
        " (8 transitions since the last line not logged)",
        "tier l2 circuit breaker half_open -> closed",
    ]
    assert b.state == CLOSED


def test_log_throttle():
    clock = Clock()
    throttle = LogThrottle(10, clock=clock)
    assert throttle.allow("a")
    assert not throttle.allow("a")
    assert throttle.allow("b")
    clock.now += 10
    assert throttle.allow("a")
    throttle.reset()
    assert throttle.allow("a")


def test_success_costs_nothing_again_once_failures_leave_the_window():
    b, clock = breaker(failure_threshold=100, min_calls=1000, window=10)
    assert b.quiet
    b.record_failure()
    b.record_success()
    assert not b.quiet and b.state == CLOSED  # a failure is still in the window
    clock.now += 11
    b.record_success()
    assert b.quiet  # nothing left to remember: the next success is free


def test_a_held_breaker_lets_only_its_holder_through_until_released():
    """The outage journal replays before requests use the tier again."""
    b, clock = breaker()
    for _ in range(5):
        b.record_failure()
    clock.now += 60  # past OPEN_SECONDS: a request would probe now
    b.hold()
    assert b.allow() is True  # the holder (this thread)
    seen = []
    other = threading.Thread(target=lambda: seen.append(b.allow()))
    other.start()
    other.join()
    assert seen == [False]  # every other thread is still kept off
    b.record_success()  # the holder's calls decide nothing
    assert b.state == OPEN
    b.release(close=True)
    assert b.state == CLOSED and b.allow() is True


def test_a_release_that_did_not_finish_leaves_the_breaker_open():
    b, clock = breaker()
    for _ in range(5):
        b.record_failure()
    b.hold()
    b.release(close=False)
    assert b.state == OPEN and b.allow() is False  # OPEN_SECONDS not over
