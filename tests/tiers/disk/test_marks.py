"""The marks cache (``<directory>/cache/tiered_cache``, tiers/disk/opening.py):
opened right after the shards, never waited for by a read, quarantined when
corrupt and watched like the shards; a floor it lost is written again before
the next mark (tiers/disk/copies.py).
"""

from __future__ import annotations

import logging
import os
import shutil
import sqlite3
import threading
import time

import pytest

from tests.tiers.disk.support import rec
from tiered_cache.exceptions import TierUnavailable
from tiered_cache.sentinels import MISSING
from tiered_cache.tiers.disk.store import MARKS, _handles

BOUND = 60.0


@pytest.fixture
def copies(make):
    """A tier holding copies of a wider tier that takes values under 1 000 bytes."""

    def factory(**options):
        tier = make(**options)
        tier.copies_of(lambda record: record.size < 1000)
        tier.bound_staleness(BOUND)
        return tier

    return factory


def _marks_db(location) -> str:
    return str(location / "cache" / MARKS / "cache.db")


def _garble(path: str) -> None:
    size = os.path.getsize(path)
    with open(path, "r+b") as f:
        f.write(os.urandom(max(size, 4096)))


def _close(tier) -> None:
    """Close this process's handle, as if the process had ended."""
    store = tier.files.open()
    store.marked.wait(10)
    for cache in (*store.shards, store.marks):
        cache.close()
    _handles.discard(tier.files.key)


def _floor_raised(tier, clock) -> None:
    """Write a copy, then raise the floor past it and leave a mark."""
    tier.set("old", rec("v"))
    clock.advance(1)
    tier.invalidate_all()
    tier.save_position("bus", "gen", "5-0")


def test_reads_do_not_wait_for_the_marks_cache(copies, location):
    os.makedirs(os.path.dirname(_marks_db(location)))
    held = sqlite3.connect(_marks_db(location), isolation_level=None)
    held.execute("BEGIN EXCLUSIVE")  # another process holds it: its open waits
    try:
        tier = copies(opened=False, OPEN_TIMEOUT=5.0)
        tier.set("k", rec("v"))  # the shards are open
        store = tier.files.open()
        assert not store.marked.is_set()
        started = time.monotonic()
        assert tier.get("k") is MISSING  # the floor is unknown: not trusted
        assert tier.get_value("big", None) is None
        tier.set("big", rec("x" * 5000))  # L3's own values are served meanwhile
        assert tier.get_value("big", None) == "x" * 5000
        assert time.monotonic() - started < 2.5  # never the 5 s OPEN_TIMEOUT
    finally:
        held.execute("ROLLBACK")
        held.close()
    assert store.marked.wait(10) and store.marks is not None
    assert tier.get_value("k", None) == "v"


def test_a_corrupt_marks_cache_at_open_is_quarantined(copies, clock, location, caplog):
    tier = copies()
    _floor_raised(tier, clock)
    _close(tier)
    _garble(_marks_db(location))
    with caplog.at_level(logging.ERROR, logger="tiered_cache.tiers.disk"):
        fresh = copies()
    assert fresh.files.open().marks is not None
    assert len(list((location / "cache").glob(f"{MARKS}.corrupt-*"))) == 1
    assert fresh.describe()["quarantined"] == 1
    assert fresh.load_position("bus") is None  # no mark: a listener drops all
    assert sum("is corrupt" in r.getMessage() for r in caplog.records) == 1


def test_a_corrupt_marks_cache_met_by_a_call_is_quarantined_and_the_floor_kept(
    copies, clock, location
):
    tier = copies()
    _floor_raised(tier, clock)
    _garble(_marks_db(location))
    outcome = []

    def listener() -> None:  # a new thread opens a new SQLite connection
        try:
            tier.save_position("bus", "gen", "6-0")
        except TierUnavailable as exc:
            outcome.append(exc)

    thread = threading.Thread(target=listener)
    thread.start()
    thread.join()
    (failure,) = outcome
    assert failure.kind == "corrupt"
    assert len(list((location / "cache").glob(f"{MARKS}.corrupt-*"))) == 1
    tier.save_position("bus", "gen", "6-0")  # a fresh marks cache
    other = copies()  # another process of the machine, started now
    assert other.load_position("bus") == ("gen", "6-0")
    assert other.get("old") is MISSING  # the floor went first
    assert tier.get("old") is MISSING


def test_a_deleted_marks_cache_is_noticed_and_the_floor_written_again(
    copies, clock, location
):
    tier = copies(CHECK_INTERVAL=0)
    _floor_raised(tier, clock)
    shutil.rmtree(location / "cache")
    tier.save_position("bus", "gen", "5-0")  # the same mark, in a new marks cache
    assert tier.describe()["reopened"] == 1
    other = copies()
    assert other.load_position("bus") == ("gen", "5-0")
    assert other.get("old") is MISSING
