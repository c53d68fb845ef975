"""L3's copies written behind the call (``tiers/disk/behind.py``).

A copy of L2's value is queued and written by a background thread; what
matters is that nothing is lost that was not a copy, nothing lands after what
replaced it, this process reads what it queued, and other processes of the
machine read it once written (``drain``).
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap
import threading

import pytest

from tests.tiers.disk.support import rec
from tiered_cache.envelope import Record, new_stamp
from tiered_cache.exceptions import TierUnavailable
from tiered_cache.sentinels import MISSING
from tiered_cache.tiers.disk.behind import WriteBehind


@pytest.fixture
def copies(make):
    """A tier below a wider tier that takes values under 1 000 bytes."""

    def factory(**options):
        options.setdefault("WRITE_BEHIND_MAX_BYTES", 32 * 2**20)  # off by default
        tier = make(**options)
        tier.copies_of(lambda record: record.size < 1000)
        tier.bound_staleness(60.0)
        return tier

    return factory


def test_a_copy_is_read_at_once_here_and_by_others_once_written(copies):
    tier, other = copies(), copies()  # two processes of the machine
    tier.set("k", rec("v"))
    assert tier.get_value("k", None) == "v"
    assert tier.drain() is True
    assert other.get_value("k", None) == "v"
    assert tier.describe()["write_behind"]["written"] == 1


def test_a_value_that_is_not_a_copy_is_written_before_the_call_returns(copies):
    tier, other = copies(), copies()
    tier.set("big", rec("x" * 5000))  # the wider tier refuses it: L3 is its authority
    assert other.get_value("big", None) == "x" * 5000
    assert tier.describe()["write_behind"]["queued"] == 0


def test_the_newest_copy_of_a_key_wins(copies):
    tier, other = copies(), copies()
    for n in range(50):
        tier.set("k", rec(n))
    tier.drain()
    assert other.get_value("k", None) == 49


def test_a_write_of_its_own_is_never_overwritten_by_an_older_queued_copy(copies):
    tier, other = copies(), copies()
    tier.set("k", rec("copy"))
    tier.set("k", rec("own " + "x" * 5000))  # L3 is this one's authority
    tier.drain()
    assert other.get_value("k", None).startswith("own")


@pytest.mark.parametrize("change", ["delete", "delete_many", "invalidate", "clear"])
def test_nothing_queued_lands_after_a_change_that_replaced_it(copies, change):
    tier, other = copies(), copies()
    tier.set("k", rec("old"))
    newer = new_stamp()
    if change == "delete":
        assert tier.delete("k") is True
    elif change == "delete_many":
        tier.delete_many(["k"])
    elif change == "invalidate":
        assert tier.invalidate("k", newer) is True
    else:
        tier.clear("")
    tier.drain()
    assert other.get("k") is MISSING
    assert tier.get("k") is MISSING


def test_a_late_invalidation_leaves_a_newer_queued_copy(copies):
    tier = copies()
    stale = new_stamp()
    tier.set("k", rec("new"))
    assert tier.invalidate("k", stale) is False
    tier.drain()
    assert tier.get_value("k", None) == "new"


def test_a_copy_written_late_is_kept_as_when_it_was_queued(copies, clock):
    """The bound shrinks while the bus cannot read; a copy queued before keeps
    the lifetime it had then, and is trusted again when the bound comes back."""
    tier = copies()
    tier.set("k", rec("v"))
    tier.bound_staleness(3.0)
    clock.advance(5)
    tier.drain()  # written now: as of when it was queued, not dropped as dead
    tier.bound_staleness(60.0)
    assert tier.get_value("k", None) == "v"


def test_a_full_queue_makes_the_caller_write(copies):
    tier, other = copies(WRITE_BEHIND_MAX_BYTES=1), copies()
    tier.set("k", rec("v"))
    assert other.get_value("k", None) == "v"  # no drain: written by the caller
    assert tier.describe()["write_behind"]["synchronous"] == 1


def test_zero_bytes_turns_write_behind_off(copies):
    tier, other = copies(WRITE_BEHIND_MAX_BYTES=0), copies()
    tier.set_many({"a": rec(1), "b": rec(2)})
    assert other.get_many(["a", "b"]).keys() == {"a", "b"}


def test_incr_and_touch_see_the_queued_copy_first(copies, clock):
    tier, other = copies(), copies()
    tier.set("n", rec(5, clock() + 100))
    assert tier.incr("n", 2) == 7
    assert other.get_value("n", None) == 7
    tier.set("t", rec("v", clock() + 100))
    assert tier.touch("t", clock() + 500) is True
    assert other.get_value("t", None) == "v"


def test_kept_counts_queued_out_of_order_keep_the_higher_count(copies, clock):
    tier, other = copies(), copies()
    later = Record(11, None, clock() + 100, new_stamp())
    earlier = Record(10, None, clock() + 100, later.stamp - 1)
    tier.keep_count("c", later, True)
    tier.keep_count("c", earlier, True)  # a slower thread's reply, arriving late
    tier.drain()
    assert other.incr("c", 0) == 11


# -- the queue itself ------------------------------------------------------------


def queue(write, forget=lambda keys: None, **kwargs) -> WriteBehind:
    return WriteBehind("test", write, forget, max_bytes=2**20, **kwargs)


def test_a_change_waits_for_the_batch_being_written():
    writing, release, order = threading.Event(), threading.Event(), []

    def write(batch):
        writing.set()
        release.wait(5)
        order.append(("written", *batch))

    behind = queue(write)
    behind.put("k", rec("v"))
    assert writing.wait(5)
    assert behind.peek("k") is not None  # being written: still read here

    def change():
        behind.take("k")
        order.append(("changed", "k"))

    changer = threading.Thread(target=change)
    changer.start()
    release.set()
    changer.join(5)
    assert order == [("written", "k"), ("changed", "k")]
    assert behind.peek("k") is None


def test_a_refused_batch_is_retried_then_its_keys_forgotten_and_logged(caplog):
    attempts, forgotten = [], []

    def write(batch):
        attempts.append(list(batch))
        raise TierUnavailable("l3", "set_many", "disk full", kind="disk_full")

    behind = queue(write, forgotten.extend)
    with caplog.at_level(logging.WARNING, logger="tiered_cache"):
        behind.put("a", rec(1))
        assert behind.drain() is True
    assert attempts == [["a"]] * 3
    assert forgotten == ["a"]
    assert behind.stats.failed == 1
    assert "could not write 1 local copies" in caplog.text


def test_a_forked_child_starts_with_an_empty_queue():
    release = threading.Event()
    behind = queue(lambda batch: "k" not in batch or release.wait(5))
    behind.put("k", rec("v"))
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: the parent's pending copy is the parent's to write
        ok = behind.pending_count() == 0 and behind.put("c", rec(1)) and behind.drain()
        os.write(write, b"1" if ok else b"0")
        os._exit(0)
    os.close(write)
    assert os.read(read, 1) == b"1"
    os.waitpid(pid, 0)
    release.set()
    assert behind.drain() is True


def test_copies_queued_at_exit_are_written(make, location, settings):
    script = textwrap.dedent(
        f"""
        import time
        from django.conf import settings
        settings.configure(SECRET_KEY={settings.SECRET_KEY!r})  # the reader's
        from tiered_cache.envelope import Record
        from tiered_cache.tiers.disk import DiskTier
        where = {str(location)!r}
        params = {{"BACKEND": "diskcache.DjangoCache", "LOCATION": where,
                   "OPTIONS": {{"OPEN_TIMEOUT": 10.0,
                               "WRITE_BEHIND_MAX_BYTES": 2**25}}}}
        tier = DiskTier(where, params, name="l3", clock=time.time)
        tier.copies_of(lambda record: True)
        tier.files.open().marked.wait(10)  # open, as in a process that served
        tier.set_many({{f"k{{n}}": Record.for_value(n, None) for n in range(100)}})
        assert tier.describe()["write_behind"]["queued"] == 100
        """
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)
    assert make().get_value("k99", None) == 99
