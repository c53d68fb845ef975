"""L3 copies below an L2: trusted for a bounded time after they were copied,
never before the machine's floor, and not before the bus has settled.

The tier is told which records are copies the way the chain tells it
(``copies_of``); here every record under 1 000 bytes is "a value L2 takes".
"""

from __future__ import annotations

import sqlite3

import pytest

from tests.tiers.disk.support import plain, rec
from tiered_cache.envelope import Record, materialize, new_stamp
from tiered_cache.exceptions import TierUnavailable
from tiered_cache.sentinels import MISSING

BOUND = 60.0


@pytest.fixture
def copies(make):
    """A tier holding copies of a wider tier that takes values under 1 000 bytes."""

    def factory(**options):
        tier = make(**options)
        tier.copies_of(lambda record: record.size < 1000)
        assert tier.bound_staleness(BOUND) is True
        return tier

    return factory


def test_a_copy_is_trusted_for_the_bound_after_it_was_copied(copies, clock):
    tier = copies()
    written_long_ago = Record("v", None, clock() + 7200, new_stamp() - 3600 * 10**9)
    tier.set("k", written_long_ago)  # copied now: fresh, whatever its age
    clock.advance(BOUND - 1)
    served = tier.get("k")
    assert served is not MISSING
    # Served with the lifetime it is trusted for, so L1 cannot trust it longer.
    assert served.expires_at == pytest.approx(clock() + 1)
    clock.advance(2)
    assert tier.get("k") is MISSING
    assert not tier.has_key("k")
    assert tier.delete("k") is False  # nothing that could be served was there


def test_a_copy_expires_with_its_value_when_that_comes_first(copies, clock):
    tier = copies()
    tier.set("k", rec("v", clock() + 10))
    assert tier.get("k").expires_at == pytest.approx(clock() + 10)
    clock.advance(11)
    assert tier.get("k") is MISSING


def test_values_the_wider_tier_refuses_are_this_tiers_own(copies, clock):
    tier = copies()
    tier.set("big", rec("x" * 5000, None))  # L3 is its authority: no bound
    clock.advance(10 * BOUND)
    assert tier.get("big").value is not None
    tier.invalidate_all()
    assert tier.get_value("big", None) == "x" * 5000


def test_no_bound_without_a_wider_tier(make, clock):
    tier = make()  # L1 + L3: L3 is the authority of everything
    tier.set("k", rec("v"))
    clock.advance(10 * BOUND)
    tier.invalidate_all()
    assert tier.get_value("k", None) == "v"


def test_invalidate_all_raises_a_floor_every_process_of_the_machine_sees(
    copies, clock, location
):
    tier = copies()
    tier.set("old", rec("v"))
    tier.drain()  # the copy is written behind the call (behind.py)
    clock.advance(1)
    tier.invalidate_all()
    tier.set("new", rec("v"))
    tier.drain()
    assert tier.get("old") is MISSING
    assert tier.get_value("new", None) == "v"
    # Another process of the machine (another tier object on the directory)
    # reads the persisted floor: it trusts what was copied after it only.
    other = copies()
    assert other.trust is not tier.trust
    assert other.get("old") is MISSING
    assert other.get_value("new", None) == "v"
    assert plain(location / "cache", 0) is not None  # the marks cache exists


def test_a_floor_that_could_not_be_written_goes_first_with_the_next_mark(
    copies, clock, location
):
    tier = copies()
    tier.set("old", rec("v"))
    tier.drain()
    clock.advance(1)
    marks = sqlite3.connect(location / "cache" / "tiered_cache" / "cache.db")
    marks.isolation_level = None
    marks.execute("BEGIN EXCLUSIVE")  # another process holds the marks' lock
    try:
        tier.invalidate_all()  # never raises: trusted no more in this process
        assert tier.get("old") is MISSING
        with pytest.raises(TierUnavailable):
            tier.save_position("bus", "gen", "5-0")
    finally:
        marks.execute("ROLLBACK")
        marks.close()
    assert copies().get_value("old", None) == "v"  # not on disk yet
    tier.save_position("bus", "gen", "5-0")
    assert copies().get("old") is MISSING  # the floor went first
    assert copies().load_position("bus") == ("gen", "5-0")


def test_positions_are_kept_per_stream(copies):
    tier = copies()
    assert tier.load_position("bus") is None
    tier.save_position("bus", "g1", "1-1")
    tier.save_position("other", "g2", "2-0")
    fresh = copies()
    assert fresh.load_position("bus") == ("g1", "1-1")
    assert fresh.load_position("other") == ("g2", "2-0")


def test_no_copy_is_served_while_the_process_does_not_trust_them(copies, clock):
    tier = copies()
    tier.set("k", rec("v"))
    tier.set("big", rec("x" * 5000))
    tier.trust_copies(False)
    assert tier.describe()["copies"]["trusted"] is False
    assert tier.get("k") is MISSING
    assert tier.get_value("big", None) == "x" * 5000  # its own value
    assert tier.add("k", rec("w")) is True  # an untrusted copy counts as absent
    tier.trust_copies(True)
    assert tier.get_value("k", None) == "w"


def test_rows_without_a_copy_time_are_not_trusted(make, copies, clock, location):
    plain_tier = make()  # the directory served an L1 + L3 chain before
    plain_tier.set("k", rec("v"))
    plain_tier.set("n", rec(5))
    tier = copies()
    assert tier.get("k") is MISSING
    assert tier.get("n") is MISSING


def test_an_integer_copy_is_an_envelope_that_keeps_its_expiry(copies, clock):
    tier = copies()
    tier.set("n", rec(41, clock() + 30))
    tier.drain()
    got = tier.get("n")
    assert got.payload is not None  # an envelope, not a raw int
    assert tier.get_value("n", None) == 41
    assert got.expires_at == pytest.approx(clock() + 30)
    assert tier.incr("n", 1) == 42  # falls back here while L2 is away
    assert tier.get_value("n", None) == 42


def test_touch_keeps_the_time_the_copy_was_made(copies, clock):
    tier = copies()
    tier.set("k", rec("v", clock() + 100))
    clock.advance(BOUND - 10)
    assert tier.touch("k", clock() + 3600) is True
    assert tier.get("k").expires_at == pytest.approx(clock() + 10)
    clock.advance(11)
    assert tier.get("k") is MISSING


def test_the_bound_follows_the_bus(copies, clock):
    tier = copies()
    tier.set("k", rec("v"))
    clock.advance(5)
    tier.bound_staleness(3.0)  # the bus cannot read: 2 x heartbeat + 1
    assert tier.get("k") is MISSING
    tier.bound_staleness(BOUND)
    assert tier.get_value("k", None) == "v"


# -- counts kept for an outage (docs/design.rst, "Counters") ----------------------


def test_a_kept_count_only_moves_the_way_the_counter_moved(copies, clock):
    tier = copies()
    expires = clock() + 600
    tier.keep_count("n", Record(6, None, expires, 20), True)
    tier.keep_count("n", Record(5, None, expires, 21), True)  # older count, late
    kept = tier.get("n")
    assert (materialize(kept), kept.stamp) == (6, 21)  # higher count, newest stamp
    tier.keep_count("n", Record(4, None, expires, 22), False)  # a decr
    assert materialize(tier.get("n")) == 4
    tier.keep_count("n", Record(5, None, expires, 23), False)  # an older decr
    assert materialize(tier.get("n")) == 4


def test_a_kept_count_outlives_its_trust_and_incr_counts_on_from_it(copies, clock):
    """Served only while trusted; counted from for the counter's lifetime."""
    tier = copies()
    tier.keep_count("n", Record(6, None, clock() + 3 * BOUND, 20), True)
    clock.advance(BOUND + 1)
    assert tier.get("n") is MISSING  # no longer served
    tier.invalidate_all()  # a gap: no copy made before now is trusted
    assert tier.incr("n", 1) == 7  # the base for an outage is still there
    assert materialize(tier.get("n")) == 7  # a count made now is trusted again
    clock.advance(3 * BOUND)
    with pytest.raises(ValueError):
        tier.incr("n", 1)  # gone with the counter's own lifetime
