"""Writes during an L2 outage are journaled and reconciled when L2 answers.

Two caches over one Redis with two L3 folders stand for two machines (their
chains, buses and journals are their own, as two processes' would be); the
test with real processes is ``test_processes_on_two_machines_after_an_outage``.
Redis is paused (SIGSTOP: connections stay open, nothing answers) or killed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import zlib
from pathlib import Path

import pytest

from tests.matrix import L1, l3, real_l2
from tests.support.redis_servers import RedisServer, wait_until
from tiered_cache.envelope import Record, materialize, new_stamp
from tiered_cache.journal import DELETE, SET
from tiered_cache.journal_rows import parse
from tiered_cache.sentinels import MISSING

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def server(tmp_path):
    """A redis-server of this test's own: tests pause, kill and restart it."""
    with RedisServer.start(tmp_path / "redis") as server:
        yield server


def l2(url):
    """L2 with a socket timeout a loaded test machine meets (0.1 s by default)."""
    return {**real_l2(url), "OPTIONS": {"SOCKET_TIMEOUT": 0.5}}


def machine(make_cache, url, folder, **options):
    return make_cache([L1, l2(url), l3(str(folder))], KEY_PREFIX="j", **options)


def l2_value(cache, key):
    """Return the value L2 holds for ``key`` (``None``: nothing)."""
    record = cache.tier("l2").get(cache.stored_key(key))
    return None if record is MISSING else materialize(record)


def journaled(cache) -> dict:
    return cache._chain.journal.pending()["e"]


def outage(server, *changes):
    """Run ``changes`` with Redis paused; resume it whatever happens."""
    server.pause()
    try:
        for change in changes:
            change()
    finally:
        server.resume()


# -- the journal's own bookkeeping ----------------------------------------------


def test_last_change_wins_per_key(make_cache, server, tmp_path):
    one = machine(make_cache, server.url(1), tmp_path / "one")
    journal = one._chain.journal
    journal.bus = None  # no reconciliation: look at what is recorded
    journal.record([("k", SET, 5), ("k", DELETE, 7), ("k", SET, 6)])
    assert journaled(one) == {"k": [DELETE, 7]}


def test_forgotten_keys_are_covered_by_their_namespace(make_cache, server, tmp_path):
    one = machine(make_cache, server.url(1), tmp_path / "one")
    other = make_cache(
        [L1, l2(server.url(1)), l3(str(tmp_path / "one"))], KEY_PREFIX="jx"
    )  # another cache over the same tiers
    assert other._chain is one._chain
    journal = one._chain.journal
    journal.bus = None
    journal.max_entries, journal.max_prefixes = 1, 2
    journal.record([("j:1:a", SET, 1), ("j:1:b", SET, 2), ("jx:1:c", SET, 3)])
    journal.record([("j:1:d", SET, 4), ("nobody", SET, 5), ("j:1:a", SET, 6)])
    doc = journal.pending()
    assert doc == {"e": {"j:1:a": [SET, 6]}, "c": ["j:", "jx:"]}
    assert journal.stats.overflowed == 4 and journal.stats.lost == 1


def plant(cache, row: str) -> None:
    """Write ``row`` (JSON) where the journal of ``cache``'s machine is kept."""
    journal = cache._chain.journal
    journal.keeper.tier.update_journal(
        journal.name, lambda data: zlib.compress(row.encode())
    )


@pytest.mark.parametrize(
    "row",
    [
        '{"e": {"j:1:zz": 5}}',
        '{"e": {"j:1:zz": ["s"]}}',
        '{"e": {"j:1:zz": ["x", 1]}}',
        '{"e": {"j:1:zz": ["d", "1"]}}',
        '{"e": {"j:1:zz": ["d", 1, null]}}',
        '{"e": {"j:1:zz": ["s", 1, "soon"]}}',
        '{"e": {"j:1:zz": ["s", true]}}',
        '{"e": {"j:1:zz": ["s", 18446744073709551616]}}',
        '{"e": [], "c": []}',
        '{"c": [5]}',
        '{"c": "j:"}',
        "[1, 2]",
        "not json",
    ],
)
def test_a_malformed_journal_row_is_refused(row):
    data = row.encode() if row == "not json" else zlib.compress(row.encode())
    assert parse(data) is None


def test_well_formed_rows_old_and_new():
    row = (
        '{"e": {"a": ["s", 1], "b": ["s", 2, null], "c": ["s", 3, 9.5], "d": ["d", 4]}}'
    )
    assert parse(zlib.compress(row.encode())) == {
        "e": {"a": ["s", 1], "b": ["s", 2, None], "c": ["s", 3, 9.5], "d": ["d", 4]},
        "c": [],
    }
    assert parse(None) == {"e": {}, "c": []}


def test_a_malformed_row_is_replaced_by_a_clear_of_the_namespaces(
    make_cache, server, tmp_path
):
    """F4: a row of the wrong shape once stopped every listener of the machine."""
    one = machine(make_cache, server.url(1), tmp_path / "one")
    two = machine(make_cache, server.url(1), tmp_path / "two")
    two.set_many({"k": "v1", "other": "x"})
    assert one.get("k") == "v1"  # kept in one's L1
    server.client(1).set("foreign", "y")  # another application's key
    plant(one, '{"e": {"j:1:zz": 5}, "c": []}')
    journal = one._chain.journal
    wait_until(
        lambda: one.tier("l3").read_journal(journal.name) is None,
        timeout=5,
        what="the row replaced by a clear of the namespace, reconciled",
    )
    assert journal.stats.malformed == 1 and l2_value(two, "other") is None
    assert server.client(1).get("foreign") == "y"
    two.set("k", "v2")  # the listener reads the stream again
    wait_until(lambda: one.get("k") == "v2", timeout=5, what="one hears of v2")
    assert journal.stats.malformed == 1  # reported once


def test_a_failing_tick_never_stops_the_listener(make_cache, server, tmp_path):
    one = machine(make_cache, server.url(1), tmp_path / "one")
    two = machine(make_cache, server.url(1), tmp_path / "two")
    ticks = []

    def boom():
        ticks.append(1)
        raise RuntimeError("a bug in tick")

    one._chain.bus._tick = boom
    two.set("k", "v1")
    assert one.get("k") == "v1"
    wait_until(lambda: len(ticks) >= 2, timeout=5, what="tick failed twice")
    two.set("k", "v2")
    wait_until(lambda: one.get("k") == "v2", timeout=5, what="one hears of v2")


def test_a_journal_row_never_clears_a_prefix_that_is_not_a_namespace(
    make_cache, server, tmp_path
):
    """F13: a row's prefixes were cleared at L2 whatever they were."""
    one = machine(make_cache, server.url(1), tmp_path / "one")
    client = server.client(1)
    client.mset({"other:1": "x", "orders:42": "y", "jam": "z"})
    one.set("mine", "v")
    plant(one, '{"e": {}, "c": ["o", "j", "", "j:"]}')
    journal = one._chain.journal
    wait_until(
        lambda: journal.stats.cleared == 1, timeout=5, what="the namespace cleared"
    )
    assert l2_value(one, "mine") is None  # "j:" is this cache's namespace
    assert [client.get(k) for k in ("other:1", "orders:42", "jam")] == list("xyz")
    assert journal.stats.refused == 3
    assert journal.pending() == {"e": {}, "c": []}


# -- reconciliation ---------------------------------------------------------------


def test_a_delete_and_a_set_during_an_outage_reach_the_other_machine(
    make_cache, server, tmp_path
):
    one = machine(make_cache, server.url(1), tmp_path / "one")
    two = machine(make_cache, server.url(1), tmp_path / "two")
    one.set_many({"gone": "old", "moved": "old"})
    assert two.get_many(["gone", "moved"]) == {"gone": "old", "moved": "old"}
    two.tier("l1").invalidate_all()  # machine two keeps its L3 copies only
    outage(
        server,
        lambda: one.delete("gone"),
        lambda: one.set("moved", "new"),
        lambda: wait_until(
            lambda: (
                set(journaled(one)) == {one.stored_key("gone"), one.stored_key("moved")}
            ),
            timeout=5,
            what="both changes journaled",
        ),
    )
    wait_until(lambda: not journaled(one), timeout=5, what="the journal reconciled")
    wait_until(
        lambda: (
            two.tier("l3").get(two.stored_key("gone")) is MISSING
            and two.tier("l3").get(two.stored_key("moved")) is MISSING
        ),
        timeout=3,
        what="machine two's L3 copies dropped",
    )
    assert two.get("gone") is None and one.get("gone") is None
    assert two.get("moved") in ("new", None) and one.get("moved") == "new"
    assert one._chain.journal.stats.recorded == 2


@pytest.mark.parametrize(
    "change",
    [
        lambda c: c.delete_many(["k", "other"]),
        lambda c: c.set_many({"k": 3, "other": 4}),
        lambda c: c.incr("k"),
        lambda c: c.clear(),
    ],
    ids=["delete_many", "set_many", "incr", "clear"],
)
def test_every_change_l2_missed_is_reconciled(make_cache, server, tmp_path, change):
    one = machine(make_cache, server.url(1), tmp_path / "one")
    two = machine(make_cache, server.url(1), tmp_path / "two")
    one.set("k", 1)
    assert two.get("k") == 1
    recorded = one._chain.journal.stats.recorded
    outage(
        server,
        lambda: change(one),
        lambda: wait_until(
            lambda: journaled(one) or one._chain.journal.pending()["c"],
            timeout=5,
            what="the change journaled",
        ),
    )
    assert one._chain.journal.stats.recorded > recorded
    wait_until(
        lambda: one._chain.journal.pending() == {"e": {}, "c": []},
        timeout=5,
        what="the journal reconciled",
    )
    wait_until(lambda: two.get("k") != 1, timeout=3, what="two drops the old value")
    assert one.get("k") != 1 and l2_value(one, "k") != 1


def test_a_journal_outlives_the_process_that_wrote_it(make_cache, server, tmp_path):
    """A restart during the outage: the journal is in L3, a new process finds it."""
    one = machine(make_cache, server.url(1), tmp_path / "one")
    one.set("gone", "old")
    one._chain.bus.stop()  # this "process" dies during the outage
    # Its breaker is open: the delete is never sent (a command sent to a
    # SIGSTOPped Redis would still land when it resumes).
    open_breaker(one)
    one.delete("gone")
    name = one._chain.journal.name
    assert one.tier("l3").read_journal(name) is not None
    assert l2_value(one, "gone") == "old"  # nobody replayed it yet
    # A fresh process of machine one: same folder, a chain of its own.
    fresh = machine(make_cache, server.url(1), tmp_path / "one", BREAKER={"WINDOW": 9})
    assert fresh._chain is not one._chain and fresh._chain.journal.name == name
    wait_until(
        lambda: fresh.tier("l3").read_journal(name) is None,
        timeout=5,
        what="the fresh process reconciled the journal",
    )
    assert l2_value(fresh, "gone") is None and fresh.get("gone") is None


def open_breaker(cache) -> None:
    """Open L2's breaker: calls are skipped, never sent (Redis keeps the old value)."""
    breaker = cache._chain.by_name["l2"].breaker
    while breaker.state != "open":
        breaker.record_failure()


def test_without_l3_the_journal_is_kept_in_memory(make_cache, server):
    a = make_cache([L1, l2(server.url(1))], KEY_PREFIX="m")
    b = make_cache([L1, l2(server.url(1))], KEY_PREFIX="m", BREAKER={"WINDOW": 9})
    assert a._chain.journal.keeper is None
    a.set_many({"gone": "old", "moved": "old"})
    assert b.get_many(["gone", "moved"]) == {"gone": "old", "moved": "old"}
    open_breaker(a)  # the listener's next tick closes it again
    a.delete("gone")
    a.set("moved", "new")
    wait_until(lambda: not journaled(a), timeout=5, what="the journal reconciled")
    assert l2_value(a, "gone") is None and l2_value(a, "moved") == "new"
    wait_until(
        lambda: b.get("gone") is None and b.get("moved") == "new",
        timeout=3,
        what="the other process follows",
    )
    assert a._chain.journal.stats.replayed == 2


def test_two_processes_may_replay_the_same_journal(make_cache, server, tmp_path):
    one, *others = (
        machine(make_cache, server.url(1), tmp_path / "one", BREAKER={"WINDOW": w})
        for w in (7, 8, 9)
    )
    for process in (one, *others):
        process._chain.bus.stop()  # they reconcile when told to, below
    one.set_many({"gone": "old", "moved": "old"})
    open_breaker(one)
    one.delete("gone")
    one.set("moved", "new")
    docs = [other._chain.journal.pending() for other in others]
    assert docs[0] == docs[1] and len(docs[0]["e"]) == 2
    for other, doc in zip(others, docs, strict=True):  # both read it, then replay
        assert other._chain.journal.reconcile(doc) is True
    assert l2_value(one, "gone") is None and l2_value(one, "moved") == "new"
    assert one.tier("l3").read_journal(one._chain.journal.name) is None


def test_a_write_l2_missed_is_on_disk_before_the_call_returns(
    make_cache, server, tmp_path
):
    """L3's copies are written behind the call, but not one L2 did not take:
    it is the value the journal replays, from any process of the machine."""
    behind = l3(str(tmp_path / "one"))
    behind["OPTIONS"] = {**behind["OPTIONS"], "WRITE_BEHIND_MAX_BYTES": 2**25}
    one, other = (
        make_cache(
            [L1, l2(server.url(1)), behind], KEY_PREFIX="j", BREAKER={"WINDOW": w}
        )
        for w in (7, 8)
    )
    open_breaker(one)
    one.set("k", "v")
    behind = one.tier("l3").describe()["write_behind"]
    assert behind["pending"] == 0  # settled by the set itself, not by a drain
    assert other.stored_key("k") in other.tier("l3").keys("")  # on disk


def test_a_replayed_set_never_replaces_a_newer_value(make_cache, server, tmp_path):
    one = machine(make_cache, server.url(1), tmp_path / "one")
    two = machine(make_cache, server.url(1), tmp_path / "two")
    one._chain.journal.bus, bus = None, one._chain.journal.bus  # no tick yet
    one.set("k", "v0")
    server.kill()  # a SET sent to a stopped server could still land: a dead one
    one.set("k", "v1")
    assert set(journaled(one)) == {one.stored_key("k")}
    server.restart()
    wait_until(lambda: two._chain.bus.healthy, timeout=5, what="the bus back")
    two._chain.by_name["l2"].breaker.reset()
    two.set("k", "v2")  # written later, straight to L2
    one._chain.journal.bus = bus
    assert one._chain.journal.reconcile() is True
    assert l2_value(one, "k") == "v2"
    assert one.get("k") == "v2"  # our own copy of v1 was dropped
    assert one._chain.journal.stats.invalidated == 1


def test_a_replayed_set_replaces_an_older_value(make_cache, server, tmp_path):
    one = machine(make_cache, server.url(1), tmp_path / "one")
    two = machine(make_cache, server.url(1), tmp_path / "two")
    journal = one._chain.journal
    journal.bus, bus = None, journal.bus
    one.set("k", "v0")
    assert two.get("k") == "v0"
    stamp = new_stamp()
    # As if the write of v1 had not reached L2: only the local tiers have it.
    record = Record.for_value("v1", None)
    for name in ("l1", "l3"):
        one.tier(name).set(one.stored_key("k"), record)
    journal.record([(one.stored_key("k"), SET, record.stamp)])
    assert record.stamp > stamp
    journal.bus = bus
    assert journal.reconcile() is True
    assert l2_value(one, "k") == "v1"
    wait_until(lambda: two.get("k") == "v1", timeout=3, what="two reads the new value")
    # The listener's tick may replay it too while this one waits on L3 (the
    # copy being written behind): replaying is idempotent (same stamp).
    assert journal.stats.replayed in (1, 2)
    assert journal.pending()["e"] == {}


@pytest.mark.parametrize("timeout", [None, 600])
def test_a_replayed_set_keeps_the_expiry_it_was_given(
    make_cache, server, tmp_path, timeout
):
    """F12: the replay took the expiry its L3 copy is served with (bounded by
    how long a copy is trusted): L2 dropped the value a minute later.
    """
    one = machine(make_cache, server.url(1), tmp_path / "one")
    one._chain.bus.stop()  # reconciled when told to, below
    one.set("k", "v0")
    open_breaker(one)
    one.set("k", "v1", timeout=timeout)
    one.tier("l1").invalidate_all()  # the replay reads the L3 copy
    assert one._chain.journal.reconcile() is True
    assert l2_value(one, "k") == "v1"
    pttl = server.client(1).pttl(one.stored_key("k"))
    if timeout is None:
        assert pttl == -1
    else:
        assert 590_000 < pttl <= 600_000


@pytest.mark.parametrize("first", ["older", "newer"])
def test_of_two_machines_sets_during_an_outage_the_newer_wins(
    make_cache, server, tmp_path, first
):
    """Whichever machine reconciles first, L2 ends with the newer value."""
    one = machine(make_cache, server.url(1), tmp_path / "one")
    two = machine(make_cache, server.url(1), tmp_path / "two", BREAKER={"WINDOW": 9})
    for process in (one, two):
        process._chain.bus.stop()  # reconciled when told to, below
    one.set("k", "v0")
    open_breaker(one)
    open_breaker(two)
    one.set("k", "older", timeout=None)
    two.set("k", "newer", timeout=None)
    order = (one, two) if first == "older" else (two, one)
    for process in order:
        assert process._chain.journal.reconcile() is True
    assert l2_value(one, "k") == "newer"
    assert server.client(1).pttl(one.stored_key("k")) == -1
    assert two.get("k") == "newer"


def test_a_journal_entry_without_an_expiry_is_still_replayed(
    make_cache, server, tmp_path
):
    """Rows written before the expiry was carried: ``[op, stamp]``."""
    one = machine(make_cache, server.url(1), tmp_path / "one")
    journal = one._chain.journal
    journal.bus, bus = None, journal.bus
    one.set("k", "v0")
    record = Record.for_value("v1", None)
    for name in ("l1", "l3"):
        one.tier(name).set(one.stored_key("k"), record)
    plant(one, json.dumps({"e": {one.stored_key("k"): [SET, record.stamp]}}))
    journal.bus = bus
    assert journal.reconcile() is True
    assert l2_value(one, "k") == "v1"


def test_a_set_whose_key_is_gone_from_l2_becomes_a_miss(make_cache, server, tmp_path):
    """Redis restarted empty: nothing tells a later delete from no write at all."""
    one = machine(make_cache, server.url(1), tmp_path / "one")
    journal = one._chain.journal
    journal.bus, bus = None, journal.bus
    one.set("k", "v0")
    server.kill()
    one.set("k", "v1")
    server.restart()
    wait_until(lambda: one._chain.bus.healthy, timeout=5, what="the bus back")
    journal.bus = bus
    assert journal.reconcile() is True
    assert l2_value(one, "k") is None and one.get("k") is None


def test_an_overflowing_journal_clears_the_namespace_of_what_it_forgot(
    make_cache, server, tmp_path
):
    one = machine(make_cache, server.url(1), tmp_path / "one")
    two = machine(make_cache, server.url(1), tmp_path / "two")
    # Another cache over machine one's tiers (the same chain), and a key of
    # another application in the same Redis: neither is cleared.
    neighbour = make_cache(
        [L1, l2(server.url(1)), l3(str(tmp_path / "one"))], KEY_PREFIX="jx"
    )
    assert neighbour._chain is one._chain
    foreign = server.client(1)
    journal = one._chain.journal
    journal.max_entries = 2
    journal.bus, bus = None, journal.bus
    keys = [f"key{i}" for i in range(6)]
    one.set_many(dict.fromkeys(keys, "old"))
    assert two.get_many(keys) == dict.fromkeys(keys, "old")
    server.kill()
    for key in keys:
        one.set(key, "new")
    doc = journal.pending()
    assert len(doc["e"]) == 2 and doc["c"] == ["j:"]
    assert journal.stats.overflowed == 4
    server.restart()
    one._chain.by_name["l2"].breaker.reset()
    one.set_many(dict.fromkeys(keys, "old"))  # as if the old values had survived
    assert l2_value(one, "key5") == "old"
    neighbour.set("kept", "v")
    foreign.set("j", "not a cache key")  # starts like the namespace, is not in it
    journal.bus = bus
    assert journal.reconcile() is True
    assert journal.stats.cleared == 1
    wait_until(
        lambda: all(two.get(key) in (None, "new") for key in keys),
        timeout=3,
        what="machine two drops every old value",
    )
    assert all(one.get(key) in (None, "new") for key in keys)
    assert l2_value(neighbour, "kept") == "v" and foreign.get("j") is not None


# -- real processes -------------------------------------------------------------------


def test_processes_on_two_machines_after_an_outage(server, tmp_path):
    """The acceptance scenario of issue 6, item 4, with real processes.

    Two L3 folders (machines), one Redis. A long-lived reader per machine
    reads ``gone`` and ``moved`` all along. With Redis SIGSTOPped, a short-lived
    process of machine one deletes ``gone`` and replaces ``moved``, then exits.
    Redis resumes; after 6 s of that ordinary traffic, no reader reads either
    old value again, and fresh processes on both machines miss ``gone`` and
    never read the old ``moved``.
    """
    script = ROOT / "tests" / "journal_worker.py"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "REDIS_URL": server.url(3)}

    def run(role, folder, *args, timeout=60):
        done = subprocess.run(
            [sys.executable, str(script), role, str(folder), *map(str, args)],
            env=env,
            timeout=timeout,
            capture_output=True,
            text=True,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    one, two = tmp_path / "one", tmp_path / "two"
    run("seed", one)
    readers = [
        subprocess.Popen(
            [
                sys.executable,
                str(script),
                "read",
                str(folder),
                str(tmp_path / name),
                "14",
            ],
            env=env,
        )
        for folder, name in ((one, "r1"), (two, "r2"))
    ]
    try:
        wait_until(
            lambda: all((tmp_path / f"{n}.ready").exists() for n in ("r1", "r2")),
            timeout=20,
            what="both readers read the old values",
        )
        server.pause()
        try:
            run("change", one)
        finally:
            server.resume()
        resumed = time.time()
        for reader in readers:
            assert reader.wait(timeout=60) == 0
    finally:
        for reader in readers:
            reader.kill()
    assert time.time() > resumed + 6
    for folder in (one, two):
        assert run("look", folder) in ("gone=None moved=new", "gone=None moved=None")
    for name in ("r1", "r2"):
        last_old = float((tmp_path / name).read_text())
        assert last_old < resumed + 6, (name, last_old - resumed)
