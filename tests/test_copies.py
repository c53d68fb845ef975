"""Two machines, one Redis: a key deleted on one never comes back on the other.

Each "machine" is an L3 folder; every process is a real one
(``tests/machine_worker.py``), long-lived or started fresh on a folder that
earlier processes left behind. docs/faults.rst I3, #6; docs/design.rst "No
resurrection".
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.clock import FakeClock
from tests.support.redis_servers import RedisServer
from tests.tiers.disk.support import rec
from tiered_cache.copies import Anchor
from tiered_cache.resilience import LogThrottle
from tiered_cache.sentinels import MISSING
from tiered_cache.slot import Slot
from tiered_cache.tiers.base import StreamState
from tiered_cache.tiers.disk import DiskTier

ROOT = Path(__file__).resolve().parents[1]
WORKER = ROOT / "tests" / "machine_worker.py"


class Process:
    """A worker process on one machine, driven one command at a time."""

    def __init__(self, url: str, folder: Path, **env: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(WORKER)],
            env={
                **os.environ,
                "PYTHONPATH": str(ROOT),
                "REDIS_URL": url,
                "L3_DIR": str(folder),
                **env,
            },
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def __call__(self, *command: str) -> object:
        assert self.proc.stdin and self.proc.stdout
        self.proc.stdin.write(" ".join(command) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        assert line, f"worker died on {command}"
        return json.loads(line)

    def settled(self) -> Process:
        assert self("settle") is True
        return self

    def quit(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write("quit\n")
        self.proc.stdin.close()
        assert self.proc.wait(timeout=30) == 0


@pytest.fixture
def server(tmp_path):
    with RedisServer.start(tmp_path / "redis") as server:
        yield server


@pytest.fixture
def machines(tmp_path, server):
    started: list[Process] = []

    def start(machine: str, settle: bool = True, **env: str) -> Process:
        process = Process(server.url(0), tmp_path / machine, **env)
        started.append(process)
        return process.settled() if settle else process

    yield start
    for process in started:
        if process.proc.poll() is None:
            process.proc.kill()
            process.proc.wait()


def stored(key: str) -> str:
    return f"machines:1:{key}"


def wait_for(deadline: float) -> None:
    """The bar is a time after the delete returned: wait for that time."""
    time.sleep(max(0.0, deadline - time.time()))


@pytest.mark.redis_server
def test_a_key_deleted_on_one_machine_is_never_served_on_the_other(machines, server):
    one, two = machines("one"), machines("two")
    two("set", "k", "v")
    two("set", "kept", "v")
    assert two("get", "k") == "v" and two("l3", "k") == "v"  # in L1 and L3
    deleted_at = one("delete", "k")
    wait_for(deleted_at + 0.5)
    assert two("get", "k") is None  # the long-lived process
    assert two("l3", "k") is None
    fresh = machines("two")  # a fresh process reading machine two's L3
    assert fresh("get", "k") is None
    assert fresh("l3", "k") is None
    fresh("l2-down")  # even when it cannot ask L2, L3 has nothing to serve
    assert fresh("get", "k") is None
    assert fresh("get", "kept") == "v"  # while the unchanged copy is served
    assert server.client(0).exists(stored("k")) == 0  # never promoted back


@pytest.mark.redis_server
def test_a_machine_whose_processes_were_all_down_replays_what_it_missed(
    machines, server
):
    one, two = machines("one"), machines("two")
    for key in ("k", "k2", "kept"):
        two("set", key, "v")
    time.sleep(1.2)  # its listener persists its place once a heartbeat
    two.quit()  # machine two has no process left
    one("delete", "k")
    one("delete", "k2")
    fresh = machines("two", settle=False)
    # At once, before anything is replayed: L2's miss disowns the L3 copy,
    # which is neither served nor promoted back into L2.
    assert fresh("get", "k2") is None
    assert server.client(0).exists(stored("k2")) == 0
    fresh.settled()  # replays the delete of k from machine two's mark
    assert fresh("l3", "k") is None
    assert fresh("l3", "kept") == "v"  # replayed, not dropped wholesale
    fresh("l2-down")
    assert fresh("get", "k") is None
    assert fresh("get", "kept") == "v"
    assert server.client(0).exists(stored("k")) == 0


@pytest.mark.redis_server
def test_after_a_gap_a_fresh_process_trusts_no_older_copy(machines, server):
    two = machines("two")
    two("set", "k", "v")
    time.sleep(1.2)  # its place is persisted
    two.quit()
    server.restart()  # empty: the generation changes, the stream is gone
    fresh = machines("two")
    assert fresh("l3", "k") is None  # a floor: older copies are not trusted
    fresh("set", "new", "v")
    fresh("l2-down")
    assert fresh("get", "k") is None
    assert fresh("get", "new") == "v"  # copies made after the floor are
    assert fresh("bus")["gaps"] == 0  # dropped at start, not by a later gap


@pytest.mark.redis_server
@pytest.mark.parametrize("empty", ["xtrim", "del"])
def test_a_stream_emptied_while_a_machine_was_down_is_a_gap(machines, server, empty):
    """Emptied (``XTRIM MAXLEN 0``) or deleted, generation unchanged: the
    delete this machine missed cannot be replayed, so its copies all go."""
    one, two = machines("one"), machines("two")
    two("set", "k", "v")
    time.sleep(1.2)  # its place is persisted
    two.quit()
    one("delete", "k")
    stream = "{tiered_cache:bus}"
    if empty == "xtrim":
        server.client(0).xtrim(stream, maxlen=0, approximate=False)
    else:
        server.client(0).delete(stream)
    fresh = machines("two")
    assert fresh("l3", "k") is None
    fresh("l2-down")
    assert fresh("get", "k") is None  # not resurrected from machine two's L3


@pytest.mark.redis_server
def test_the_gap_is_seen_by_the_long_lived_process_too(machines, server):
    two = machines("two")
    two("set", "k", "v")
    server.client(0).set("{tiered_cache:bus}:generation", "another")
    deadline = time.monotonic() + 5
    while two("bus")["gaps"] == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert two("l3", "k") is None
    assert machines("two")("l3", "k") is None  # persisted for the next process


@pytest.mark.redis_server
def test_l3_copies_expire_as_copies_after_the_bound(machines):
    two = machines("two", L1_MAX_STALENESS="1")
    two("set", "k", "v")  # lives 300 s as a value, 1 s as a copy
    two("l2-down")
    assert two("l3", "k") == "v"
    time.sleep(1.1)
    assert two("l3", "k") is None
    assert two("get", "k") is None


# -- the anchor, in one process -----------------------------------------------------


@pytest.fixture
def disk(tmp_path):
    clock = FakeClock(1_000_000.0)
    spec = {"BACKEND": "diskcache.DjangoCache", "OPTIONS": {"OPEN_TIMEOUT": 10}}
    tier = DiskTier(str(tmp_path / "l3"), spec, name="l3", clock=clock)
    tier.copies_of(lambda record: True)
    tier.bound_staleness(60.0)
    tier.set("old", rec("v"))  # a copy an earlier process made
    clock.advance(1)
    return tier, clock


def anchored(tier, mark=None):
    if mark is not None:
        tier.save_position("bus", *mark)
    slot = Slot(tier, None, fail_open=True, log_throttle=LogThrottle())
    return Anchor([slot], "bus")


STATE = StreamState(generation="g", last_id="9-0", first_id="3-0")
#: No entry left (XTRIM MAXLEN 0), though it generated ids up to 9-0.
EMPTIED = StreamState(generation="g", last_id="9-0", first_id="0-0")
#: Deleted: XINFO finds no stream (made again, it would start behind the mark).
REMADE = StreamState(generation="g", last_id="0-0", first_id="0-0")


@pytest.mark.parametrize(
    "mark",
    [
        None,  # no process of this machine ever listened
        ("other", "5-0"),  # the server lost its data since
        ("g", "2-0"),  # trimmed past the mark
        ("g", "0-0"),  # read nothing, and the stream holds entries now
        ("g", "10-0"),  # a mark from after the stream's end: not this stream
        ("g", "5-0", EMPTIED),  # emptied since: ids past the mark are gone
        ("g", "0-0", EMPTIED),  # read nothing; entries came and went
        ("g", "5-0", REMADE),  # deleted (and made again): its ids start over
    ],
)
def test_a_mark_that_cannot_be_replayed_drops_the_copies(disk, mark):
    tier, clock = disk
    state = mark[2] if mark and len(mark) > 2 else STATE
    anchor = anchored(tier, mark and mark[:2])
    assert tier.get("old") is MISSING  # nothing is trusted before it settles
    assert anchor.resume(state, early=True) is None
    assert tier.get("old") is MISSING  # dropped: made before the process started
    tier.set("new", rec("v"))
    assert tier.get_value("new", None) == "v"


def test_a_mark_the_stream_still_holds_is_replayed_before_copies_are_trusted(disk):
    tier, clock = disk
    anchor = anchored(tier, ("g", "5-0"))
    assert anchor.resume(STATE, early=True) == "5-0"
    assert tier.get("old") is MISSING  # until the listener has caught up
    anchor.caught_up()
    assert tier.get_value("old", None) == "v"


def test_an_emptied_stream_that_generated_nothing_past_the_mark_is_replayed(disk):
    tier, clock = disk
    anchor = anchored(tier, ("g", "9-0"))  # it had read everything
    assert anchor.resume(EMPTIED, early=True) == "9-0"
    anchor.caught_up()
    assert tier.get_value("old", None) == "v"


def test_another_generation_at_settling_drops_them_even_with_a_good_mark(disk):
    tier, clock = disk
    anchor = anchored(tier, ("g", "5-0"))
    assert anchor.resume(None, early=True) is None
    anchor.caught_up()
    assert tier.get("old") is MISSING
