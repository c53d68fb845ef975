"""Counters through an outage of their authority, and writes Redis refuses.

docs/design.rst, "Counters", and docs/faults.rst #8: on a real redis-server
that the test pauses, kills, restarts empty or fills (``maxmemory`` with
``noeviction``), ``incr`` never raises for a counter that exists, ``get``
never goes below the last count ``incr`` returned (a miss is allowed), and
what was counted during the outage reaches Redis when it answers again.
Under out-of-memory, a ``set`` or ``delete`` that returned leaves no older
value to be read.
"""

from __future__ import annotations

import threading

import pytest

from tests.matrix import L1, l3, real_l2
from tests.support.redis_servers import RedisServer, wait_until
from tiered_cache.journal import DELETE, INCR, SET
from tiered_cache.journal_rows import dump, parse
from tiered_cache.sentinels import MISSING, UNAVAILABLE

pytestmark = pytest.mark.redis_server


@pytest.fixture
def server(tmp_path):
    with RedisServer.start(tmp_path / "redis") as server:
        yield server


def machine(make_cache, server, folder):
    spec = {**real_l2(server.url(0)), "OPTIONS": {"SOCKET_TIMEOUT": 0.5}}
    cache = make_cache([L1, spec, l3(str(folder))], KEY_PREFIX="c")
    wait_until(lambda: cache._chain.bus.settled, timeout=5, what="bus settled")
    return cache


def raw(server, cache, key):
    """What Redis holds at ``key`` (bytes or None), read around the cache."""
    return server.client(0, decode_responses=False).get(cache.stored_key(key))


def count_through(cache, key, calls, seen):
    """``incr`` ``calls`` times; check every ``get`` against the last count."""
    last = seen[-1]
    for _ in range(calls):
        last = cache.incr(key)
        seen.append(last)
        value = cache.get(key)
        assert value is None or value >= last, (value, last)
    return last


def out_of_memory(server):
    admin = server.client(0)
    admin.config_set("maxmemory-policy", "noeviction")
    admin.config_set("maxmemory", "1")  # whatever is used is already too much


def enough_memory(server):
    server.client(0).config_set("maxmemory", "0")


@pytest.mark.parametrize("fault", ["paused", "killed", "out_of_memory"])
def test_a_counter_survives_its_authority_failing(make_cache, server, tmp_path, fault):
    cache = machine(make_cache, server, tmp_path / "l3")
    cache.set("hits", 0, timeout=600)
    seen = [0]
    before = count_through(cache, "hits", 5, seen)
    assert raw(server, cache, "hits") == b"5"
    if fault == "paused":
        server.pause()
    elif fault == "killed":
        server.kill()
    else:
        out_of_memory(server)
    try:
        during = count_through(cache, "hits", 20, seen)  # never raises
    finally:
        if fault == "paused":
            server.resume()
        elif fault == "killed":
            server.restart()  # empty: it kept nothing on disk
        else:
            enough_memory(server)
    assert during == before + 20
    # Reconciled when Redis answers: L2 takes what was counted here (a call
    # that timed out while paused may have landed too: then one more).
    wait_until(
        lambda: (
            raw(server, cache, "hits") is not None
            and int(raw(server, cache, "hits")) >= during
        ),
        timeout=10,
        what="Redis holds the count",
    )
    assert int(raw(server, cache, "hits")) <= during + 1
    after = cache.incr("hits")
    assert after > during
    assert cache.get("hits") >= after
    # An incr that timed out on the loaded machine right after the recovery is
    # journaled again; the listener reconciles it.
    wait_until(
        lambda: cache._chain.journal.pending() == {"e": {}, "c": []},
        timeout=10,
        what="the journal reconciled",
    )


def test_in_an_outage_only_the_machine_that_counted_last_counts_on(
    make_cache, server, tmp_path
):
    """What is lost (docs/design.rst, "Counters"): a machine keeps the count
    it made until another machine counts after it. In an outage, a machine
    with no count left has none: ``get`` misses and ``incr`` raises, as for a
    key that is not there; the one that counted last counts on, and Redis
    gets its delta."""
    one = machine(make_cache, server, tmp_path / "one")
    two = machine(make_cache, server, tmp_path / "two")
    one.set("n", 10, timeout=600)
    assert two.incr("n") == 11
    assert one.incr("n") == 12
    wait_until(
        lambda: two.tier("l3").get(two.stored_key("n")) is MISSING,
        timeout=5,
        what="two drops its count of 11",
    )
    server.pause()
    try:
        assert [one.incr("n") for _ in range(3)] == [13, 14, 15]
        assert two.get("n") is None
        with pytest.raises(ValueError):
            two.incr("n")
    finally:
        server.resume()
    wait_until(
        lambda: int(raw(server, one, "n") or 0) >= 15,
        timeout=10,
        what="one's count reaches Redis",
    )
    assert int(raw(server, one, "n")) <= 16  # a timed-out call may land too
    assert two.get("n") >= 15


def test_out_of_memory_delete_and_set_leave_no_older_value(
    make_cache, server, tmp_path
):
    cache = machine(make_cache, server, tmp_path / "l3")
    cache.set("gone", "old")
    cache.set("moved", "old")
    out_of_memory(server)
    try:
        assert cache.delete("gone") is True  # a plain DEL works out of memory
        cache.set("moved", "new")  # refused: the older value goes instead
        assert cache.add("fresh", 1) is False  # nothing added where it is refused
        assert raw(server, cache, "gone") is None
        assert raw(server, cache, "moved") is None
        for key in ("gone", "moved"):
            cache.tier("l1").delete(cache.stored_key(key))
        assert cache.get("gone") is None
        assert cache.get("moved") in ("new", None)  # never "old"
        assert cache.stats()["l2"]["errors_by_kind"]["oom"] >= 2
    finally:
        enough_memory(server)


def test_a_delete_redis_refuses_reports_false(make_cache, server, tmp_path):
    """READONLY (a replica): not even DEL works, so the value is still served."""
    cache = machine(make_cache, server, tmp_path / "l3")
    cache.set("kept", "v")
    admin = server.client(0)
    admin.execute_command("REPLICAOF", "127.0.0.1", "1")  # nobody: stays read-only
    try:
        assert cache.delete("kept") is False  # Redis still serves it
        assert cache.stats()["l2"]["errors_by_kind"]["readonly"] >= 1
    finally:
        admin.execute_command("REPLICAOF", "NO", "ONE")
    wait_until(lambda: raw(server, cache, "kept") is None, timeout=10, what="replay")


# -- the journal's bookkeeping of counts -----------------------------------------


def test_counts_add_up_and_a_set_before_makes_a_delete(make_cache, server, tmp_path):
    cache = machine(make_cache, server, tmp_path / "l3")
    journal = cache._chain.journal
    journal.bus = None  # no reconciliation: look at what is recorded
    journal.record([("a", INCR, 5, 1, 11, None), ("a", INCR, 6, 2, 13, 99.0)])
    journal.record([("b", SET, 5, None), ("b", INCR, 6, 1, 4, None)])
    journal.record([("c", INCR, 5, 1, 2, None), ("c", DELETE, 6)])
    assert journal.pending()["e"] == {
        "a": [INCR, 6, 3, 13, 99.0],
        "b": [DELETE, 6],
        "c": [DELETE, 6],
    }


def test_counts_recorded_out_of_stamp_order_add_up(make_cache, server, tmp_path):
    """Two processes of a machine record their counts as they come."""
    cache = machine(make_cache, server, tmp_path / "l3")
    journal = cache._chain.journal
    journal.bus = None
    journal.record([("a", INCR, 9, 1, 12, None)])
    journal.record([("a", INCR, 8, 1, 11, None)])  # older, recorded later
    assert journal.pending()["e"] == {"a": [INCR, 9, 2, 12, None]}


def test_counts_kept_in_memory_and_in_l3_add_up(make_cache, server, tmp_path):
    """L3 busy for one record (memory), then L3 again: both deltas count."""
    cache = machine(make_cache, server, tmp_path / "l3")
    journal = cache._chain.journal
    journal.bus = None
    with journal._lock:
        journal._merge(journal._memory, [("a", INCR, 5, 6, 106, None)])
    journal.record([("a", INCR, 6, 1000, 1106, None)])
    assert journal.pending()["e"] == {"a": [INCR, 6, 1006, 1106, None]}
    assert journal._take("a") == [INCR, 6, 1006, 1106, None]
    assert journal.pending()["e"] == {}


def test_a_count_is_added_once_however_many_processes_reconcile(
    make_cache, server, tmp_path
):
    cache = machine(make_cache, server, tmp_path / "l3")
    journal = cache._chain.journal
    journal.bus = None
    key = cache.stored_key("n")
    server.client(0).set(key, 100)
    journal.record([(key, INCR, 5, 7, 107, None)])
    first, second = journal._replay_count(key), journal._replay_count(key)
    assert first is not None and first[1] is True
    assert second is None  # taken by the first: nothing left to add
    assert raw(server, cache, "n") == b"107"
    journal.record([(key, INCR, 6, 1, 108, None)])  # counted since: kept
    assert journal.pending()["e"] == {key: [INCR, 6, 1, 108, None]}


def test_a_count_l2_does_not_take_goes_back_into_the_journal(
    make_cache, server, tmp_path
):
    cache = machine(make_cache, server, tmp_path / "l3")
    journal = cache._chain.journal
    journal.bus = None
    key = cache.stored_key("n")
    journal.record([(key, INCR, 5, 7, 107, None)])
    server.pause()
    try:
        assert journal._replay_count(key) is UNAVAILABLE
    finally:
        server.resume()
    assert journal.pending()["e"] == {key: [INCR, 5, 7, 107, None]}


@pytest.mark.parametrize(
    "entry",
    [
        ["i", 5, 1, 2, None],
        ["i", 5, -3, 2, 17.5],
    ],
)
def test_count_entries_are_valid_rows(entry):
    assert parse(dump({"e": {"k": entry}, "c": []})) == {"e": {"k": entry}, "c": []}


@pytest.mark.parametrize(
    "entry",
    [
        ["i", 5, 1, 2],
        ["i", 5, "1", 2, None],
        ["i", 5, 1, 2.5, None],
        ["i", 5, True, 2, None],
        ["i", 5, 1, 2, float("inf")],
        ["d", 5, 1, 2, None],
        ["s", 5, 1, 2, None],
    ],
)
def test_malformed_count_entries_are_refused(entry):
    assert parse(dump({"e": {"k": entry}, "c": []})) is None


def test_threads_never_read_a_count_below_their_own(make_cache, server, tmp_path):
    """No fault: four threads incr one key and read it back at once."""
    cache = machine(make_cache, server, tmp_path / "l3")
    cache.set("n", 0, timeout=600)
    below = []

    def work() -> None:
        for _ in range(200):
            count = cache.incr("n")
            value = cache.get("n")
            if value is None or value < count:
                below.append((count, value))

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert below == []
    assert cache.get("n") == 800 and raw(server, cache, "n") == b"800"
