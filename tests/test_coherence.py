"""The invalidation bus keeps copies in other processes coherent.

Two configurations in one process have two chains, two L1s and two buses with
origins of their own, so they stand for two processes here; the test with real
processes is ``test_processes_never_read_a_replaced_value``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.matrix import L1, l3, real_l2
from tests.support.redis_servers import RedisServer, wait_until
from tiered_cache.envelope import Record, new_stamp
from tiered_cache.sentinels import MISSING
from tiered_cache.tiers.memory import MemoryTier

pytestmark = pytest.mark.redis_server
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def server(tmp_path):
    """A redis-server of this test's own: tests flush, kill and restart it."""
    with RedisServer.start(tmp_path / "redis") as server:
        yield server


def pair(make_cache, url, **options):
    """Two caches over one Redis, as two processes would have them."""
    tiers = [L1, real_l2(url)]
    a = make_cache(tiers, KEY_PREFIX="co", **options)
    b = make_cache(tiers, KEY_PREFIX="co", BREAKER={"OPEN_SECONDS": 4.9}, **options)
    assert a._chain is not b._chain and a._chain.bus and b._chain.bus
    return a, b


def in_l1(cache, key) -> bool:
    return cache.tier("l1").has_key(cache.stored_key(key))


def test_a_write_reaches_the_other_l1(make_cache, server):
    a, b = pair(make_cache, server.url(1))
    a.set("k", "v1")
    assert b.get("k") == "v1" and in_l1(b, "k")
    a.set("k", "v2")
    wait_until(lambda: not in_l1(b, "k"), timeout=2, what="B's copy dropped")
    assert b.get("k") == "v2"
    assert in_l1(a, "k")  # a process's own echo does not evict its write
    assert b._chain.bus.stats.dropped >= 1


def test_a_delete_reaches_the_other_l1(make_cache, server):
    a, b = pair(make_cache, server.url(1))
    a.set("k", "v")
    assert b.get("k") == "v"
    assert a.delete("k") is True
    wait_until(lambda: not in_l1(b, "k"), timeout=2, what="B's copy dropped")
    assert b.get("k") is None


HOSTILE_KEYS = [
    "with space",
    "line\r\nbreak",
    'quote"and\\backslash',
    'json["k", 1]',
    "nul\x00byte",
    "\u00e9t\u00e9 \U0001f600",
    "star*?[glob]",
    "x" * 300,  # longer than Django's 250: hashed into the stored key
]


@pytest.mark.filterwarnings("ignore::django.core.cache.backends.base.CacheKeyWarning")
@pytest.mark.parametrize("key", HOSTILE_KEYS, ids=range(len(HOSTILE_KEYS)))
def test_hostile_keys_survive_the_bus_framing(make_cache, server, key):
    """docs/faults.rst #34: a message names keys with spaces, line breaks,
    quotes, NUL, glob characters; each reaches exactly its own copy."""
    a, b = pair(make_cache, server.url(1))
    a.set(key, "v1")
    a.set("bystander", "kept")
    assert b.get(key) == "v1" and b.get("bystander") == "kept"
    a.set(key, "v2")
    wait_until(lambda: not in_l1(b, key), timeout=2, what="B's copy dropped")
    assert b.get(key) == "v2"
    assert in_l1(b, "bystander")  # no other copy dropped
    a.delete(key)
    wait_until(lambda: not in_l1(b, key), timeout=2, what="B's copy dropped")
    assert b.get(key) is None and b.get("bystander") == "kept"


@pytest.mark.parametrize(
    "change",
    [
        lambda c: c.touch("k", 1000),
        lambda c: c.incr("n"),
        lambda c: c.delete_many(["k", "n"]),
        lambda c: c.set_many({"k": "x", "n": 5}),
        lambda c: c.clear(),
    ],
)
def test_every_change_is_announced(make_cache, server, change):
    a, b = pair(make_cache, server.url(1))
    before = b._chain.bus.stats.received
    a.set_many({"k": "v", "n": 1})
    # B hears the set_many first, or it could take it for the change's message.
    wait_until(lambda: b._chain.bus.stats.received > before, timeout=2, what="set")
    assert b.get_many(["k", "n"]) == {"k": "v", "n": 1}
    received = b._chain.bus.stats.received
    change(a)
    wait_until(
        lambda: b._chain.bus.stats.received > received, timeout=2, what="a message"
    )
    assert b.get("k") == a.get("k") and b.get("n") == a.get("n")


def test_a_late_message_never_drops_a_newer_copy(clock):
    tier = MemoryTier("", {}, name="l1", clock=clock)
    old = new_stamp()
    tier.set("k", Record.for_value("newer", None))
    assert tier.invalidate("k", old) is False
    assert tier.get_value("k", None) == "newer"
    assert tier.invalidate("k", new_stamp()) is True
    assert tier.get_value("k", None) is None


def test_a_promotion_racing_the_message_cannot_install_the_older_value(clock):
    tier = MemoryTier("", {}, name="l1", clock=clock)
    read_before = Record.for_value("old", None)  # read from L2 before the write
    tier.invalidate("k", new_stamp())  # the write's message arrives first
    tier.set("k", read_before)  # then the promotion
    assert tier.get_value("k", None) is None
    tier.set("k", Record.for_value("new", None))  # a later value is installed
    assert tier.get_value("k", None) == "new"


def test_redis_restarted_empty_drops_every_copy(make_cache, server):
    a, b = pair(make_cache, server.url(1))
    a.set("k", "v")
    assert b.get("k") == "v" and in_l1(b, "k")
    gaps = b._chain.bus.stats.gaps
    server.restart()  # no persistence: the data, the stream and its generation go
    wait_until(lambda: b._chain.bus.stats.gaps > gaps, timeout=5, what="a gap")
    assert not in_l1(b, "k")
    assert b.get("k") is None


def test_a_trimmed_stream_is_a_gap(make_cache, server):
    a, b = pair(make_cache, server.url(1))
    bus = b._chain.bus
    a.set("k", "v1")
    assert b.get("k") == "v1"
    wait_until(lambda: bus.last_id != "0-0", timeout=2, what="B read a message")
    bus.stop()  # B stops reading while A writes on and the stream is trimmed
    for i in range(5):
        a.set(f"other{i}", i)
    server.client(1).xtrim(bus.stream.key, maxlen=1, approximate=False)
    bus._check_position()
    assert bus.stats.gaps == 1 and not in_l1(b, "k")


def test_killed_bus_connections_miss_nothing(make_cache, server):
    a, b = pair(make_cache, server.url(1))
    admin = server.client(0)
    keys = [f"once{i}" for i in range(40)]
    for key in keys:
        a.set(key, "old")
        assert b.get(key) == "old"
    for key in keys:  # each key written once more, while connections die
        admin.client_kill_filter(_type="normal", skipme=True)
        a.set(key, "new")
    wait_until(
        lambda: all(b.get(key) == "new" for key in keys),
        timeout=3,
        what="every replaced value dropped from B's L1",
    )
    assert b._chain.bus.stats.gaps == 0  # replayed from the stream, not guessed


@pytest.mark.parametrize("joined", [True, False], ids=["transaction", "outbox"])
def test_keys_written_once_while_connections_keep_dying(make_cache, server, joined):
    """No message lost when a kill lands between a write and its announcement.

    Connections are killed every few milliseconds while each key is written
    once more: no later write would hide a lost message. A write the kill
    stopped before Redis took it is the outage journal's case; every key
    Redis took must leave B's L1 within the acceptance bound (3 s). Both
    ways: the write and its message in one transaction, and (as on Cluster)
    the message sent after the write, through the outbox when that fails.
    """
    tiers = [L1, real_l2(server.url(1))]
    # A's breaker stays closed: every write is tried, none skipped for a while.
    never = {"FAILURE_THRESHOLD": 10**6, "MIN_CALLS": 10**6}
    a = make_cache(tiers, KEY_PREFIX="co", BREAKER=never)
    b = make_cache(tiers, KEY_PREFIX="co")
    a._chain.bus.stream.joins_writes = joined
    authority = make_cache([real_l2(server.url(1))], KEY_PREFIX="co")  # no L1
    keys = [f"once{i}" for i in range(150)]
    a.set_many(dict.fromkeys(keys, "old"))
    assert b.get_many(keys) == dict.fromkeys(keys, "old")
    stop = threading.Event()

    def kill() -> None:
        admin = server.client(0)
        while not stop.wait(0.002):
            admin.client_kill_filter(_type="normal", skipme=True)

    killer = threading.Thread(target=kill)
    killer.start()
    try:
        for key in keys:
            a.set(key, "new")
    finally:
        stop.set()
        killer.join()
    taken = [key for key in keys if authority.get(key) == "new"]
    assert len(taken) > len(keys) // 2
    wait_until(
        lambda: all(b.get(key) != "old" for key in taken),  # a miss is fine
        timeout=3,
        what="every value Redis took replaced in B's L1",
    )


def test_no_bus_without_a_tier_to_carry_it(make_cache, tmp_path):
    disk = {"NAME": "l3", "BACKEND": "diskcache.DjangoCache", "LOCATION": str(tmp_path)}
    assert make_cache([L1, disk])._chain.bus is None


def test_invalidation_false_turns_the_bus_off(make_cache, server):
    cache = make_cache([L1, real_l2(server.url(1))], INVALIDATION=False)
    assert cache._chain.bus is None


def test_processes_never_read_a_replaced_value(server, tmp_path):
    """1 writer and 4 reader processes: after ``set`` returns, readers follow.

    Each reader records what it read; the writer records when each version's
    ``set`` returned. A reader that reads version ``v`` later than 1 s after
    version ``v + 1`` was written has served a replaced value: a bound far
    above the bus's delay (``bench/coherence.py`` measures it), far below
    ``L1_MAX_STALENESS``.
    """
    script = ROOT / "tests" / "coherence_worker.py"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "REDIS_URL": server.url(2)}
    out = tmp_path / "out"
    out.mkdir()
    readers = [
        subprocess.Popen(
            [sys.executable, str(script), "read", str(out / f"r{i}"), "4"], env=env
        )
        for i in range(4)
    ]
    time.sleep(0.5)  # readers warm their L1s first (no event exists across processes)
    writer = subprocess.run(
        [sys.executable, str(script), "write", str(out / "w"), "3"],
        env=env,
        timeout=60,
    )
    assert writer.returncode == 0
    for reader in readers:
        assert reader.wait(timeout=60) == 0
    written = dict(
        (int(v), float(t)) for v, t in (line.split() for line in (out / "w").open())
    )
    late = []
    for i in range(4):
        for line in (out / f"r{i}").open():
            at, version = line.split()
            replaced_at = written.get(int(version) + 1)
            if replaced_at is not None and float(at) > replaced_at + 1.0:
                late.append((i, version, float(at) - replaced_at))
    assert len(written) > 5
    assert late == []


def test_a_delete_reaches_the_other_machines_l3(make_cache, server, tmp_path):
    """Two L3 folders stand for two machines; the bus drops the other's copy."""

    def machine(folder: str):
        # l3(): a generous OPEN_TIMEOUT, since every bus listener opens its L3
        # at start to look for an outage journal (two folders open at once).
        return make_cache([L1, real_l2(server.url(1)), l3(folder)], KEY_PREFIX="m")

    one, two = machine(str(tmp_path / "one")), machine(str(tmp_path / "two"))
    assert one._chain is not two._chain
    for cache in (one, two):
        wait_until(lambda c=cache: c._chain.bus.settled, timeout=5, what="settled")
    two.set("k", "v")  # machine two's L3 holds a copy
    assert one.get("k") == "v"
    two.tier("l1").delete(two.stored_key("k"))
    assert two.tier("l3").get(two.stored_key("k")) is not MISSING
    one.delete("k")
    wait_until(
        lambda: two.tier("l3").get(two.stored_key("k")) is MISSING,
        timeout=2,
        what="machine two's L3 copy dropped",
    )
    assert two.get("k") is None


def test_an_outage_of_the_bus_drops_copies_and_shortens_trust(make_cache, server):
    a, b = pair(make_cache, server.url(1))
    a.set("k", "v")
    assert b.get("k") == "v" and in_l1(b, "k")
    bus = b._chain.bus
    assert bus.heartbeat == 1.0
    server.pause()  # hung: connections stay open, nothing answers
    try:
        # Within two heartbeats of the hang (the acceptance bound of #6).
        wait_until(lambda: not bus.healthy, timeout=2.0, what="the outage noticed")
        assert not in_l1(b, "k")
        assert b.tier("l1").max_staleness == 2 * bus.heartbeat + 1
    finally:
        server.resume()
    wait_until(lambda: bus.healthy, timeout=5, what="the bus reading again")
    assert b.tier("l1").max_staleness == 60.0


#: Stream entries anyone who can write to Redis might append (red team F1, F2).
POISON = {
    "not JSON": {"w": "not json"},
    "wrong shape": {"w": json.dumps({"a": 1})},
    "string stamp": {"w": json.dumps([["co:1:k", "abc"]])},
    "stamp past u64": {"w": json.dumps([["co:1:k", 2**64]])},
    "Infinity": {"w": '[["co:1:k", Infinity]]'},
    "float stamp": {"w": '[["co:1:k", 1e30]]'},
    "x not a list": {"x": json.dumps(5)},
    "not UTF-8": {"w": b"\xff\xfe"},
}


@pytest.mark.parametrize("poison", POISON.values(), ids=POISON.keys())
def test_a_malformed_message_is_skipped_and_treated_as_a_gap(
    make_cache, server, poison
):
    a, b = pair(make_cache, server.url(1))
    bus = b._chain.bus
    a.set("k", "v1")
    assert b.get("k") == "v1" and in_l1(b, "k")
    server.client(1).xadd(bus.stream.key, {"o": "evil", **poison})
    # What it said changed is unknown: every copy goes.
    wait_until(lambda: not in_l1(b, "k"), timeout=2, what="B's copies dropped")
    assert b.get("k") == "v1"
    a.set("k", "v2")  # read past it: the next write is heard
    wait_until(lambda: b.get("k") == "v2", timeout=2, what="the next write heard")
    assert bus.stats.malformed == 1 and bus._thread.is_alive()


def test_a_stamp_far_ahead_drops_the_copy_but_not_the_clock(make_cache, server):
    a, b = pair(make_cache, server.url(1))
    bus = b._chain.bus
    a.set("k", "v1")
    assert b.get("k") == "v1" and in_l1(b, "k")
    forged = [[b.stored_key("k"), 2**64 - 1]]  # a valid u64, centuries ahead
    server.client(1).xadd(bus.stream.key, {"o": "evil", "w": json.dumps(forged)})
    wait_until(lambda: not in_l1(b, "k"), timeout=2, what="B's copy dropped")
    assert bus.stats.stamps_ignored == 1 and bus.stats.malformed == 0
    assert new_stamp() < time.time_ns() + 10**9  # this process's clock stayed
    b.set("n", {"a": 1})  # an envelope still packs the stamp
    assert a.get("n") == {"a": 1}


@pytest.mark.parametrize("empty", ["xtrim", "del"])
def test_an_emptied_stream_is_a_gap_for_a_lagging_reader(make_cache, server, empty):
    a, b = pair(make_cache, server.url(1))
    bus = b._chain.bus
    a.set("k", "v1")
    assert b.get("k") == "v1"
    bus.stop()  # B lags (a pause) while A writes on and the stream is emptied
    a.set("k", "v2")
    if empty == "xtrim":
        server.client(1).xtrim(bus.stream.key, maxlen=0, approximate=False)
    else:
        server.client(1).delete(bus.stream.key)
    bus._check_position()
    assert bus.stats.gaps == 1 and not in_l1(b, "k")
    assert b.get("k") == "v2"


def test_an_emptied_stream_is_no_gap_for_a_reader_that_read_it_all(make_cache, server):
    a, b = pair(make_cache, server.url(1))
    bus = b._chain.bus
    a.set("k", "v1")
    assert b.get("k") == "v1"
    newest = bus.stream.state().last_id
    wait_until(lambda: bus.last_id == newest, timeout=2, what="B read everything")
    bus.stop()
    server.client(1).xtrim(bus.stream.key, maxlen=0, approximate=False)
    bus._check_position()
    assert bus.stats.gaps == 0 and in_l1(b, "k")


def test_a_hole_before_the_first_entry_read_after_a_lag_is_a_gap(make_cache, server):
    """The listener reads on before its next position check: the first entry
    after the hole must not pass for the next one (red team F6)."""
    a, b = pair(make_cache, server.url(1))
    bus = b._chain.bus
    a.set("k", "v1")
    assert b.get("k") == "v1"
    wait_until(lambda: bus.last_id != "0-0", timeout=2, what="B read a message")
    paused, go = threading.Event(), threading.Event()
    read = bus.stream.read

    def lagging(*args):
        if not go.is_set():  # B lags just before a read: past its position check
            paused.set()
            go.wait(5)
        return read(*args)

    bus.stream.read = lagging
    assert paused.wait(2)
    a.set("k", "v2")  # missed: emptied before B reads it
    server.client(1).xtrim(bus.stream.key, maxlen=0, approximate=False)
    a.set("other", "x")  # the first entry B reads after the hole
    go.set()
    wait_until(lambda: not in_l1(b, "k"), timeout=2, what="B's copies dropped")
    assert bus.stats.gaps == 1 and b.get("k") == "v2"
