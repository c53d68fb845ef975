"""The disk tier's store: safe rows (docs/faults.rst #33), one shared handle per
configuration, the lazy and bounded open (#28, #31), fork safety (#32).
"""

from __future__ import annotations

import errno
import os
import pickle
import resource
import signal
import time

import diskcache
import pytest

from tests.tiers.disk.support import EXECUTED, Poison, plain, rec
from tiered_cache.envelope import encode
from tiered_cache.exceptions import TierUnavailable
from tiered_cache.sentinels import MISSING
from tiered_cache.tiers.disk.store import _handles

# -- the shared handle -------------------------------------------------------------


def test_nothing_touches_the_disk_before_the_first_call(make, location):
    tier = make(opened=False)
    assert not location.exists()
    assert tier.describe()["volume"] is None
    tier.set("k", rec("v"))
    assert location.is_dir()
    assert tier.get_value("k", None) == "v"
    assert tier.describe()["volume"] > 0


def test_tiers_with_one_configuration_share_one_handle(make, location):
    first, second = make(), make()
    first.set("k", rec("v"))
    assert second.get_value("k", None) == "v"
    assert second.files.open() is first.files.open()
    other = make(size_limit=2**25)
    assert other.files.open() is not first.files.open()
    assert other.get_value("k", None) == "v"  # same files, other options


# -- bad stored data (docs/faults.rst #33) -----------------------------------------


@pytest.mark.parametrize("padding", ["", "x" * 100_000], ids=["in-row", "in-file"])
def test_planted_pickle_is_rejected_and_never_executes(make, location, padding):
    tier = make(shards=1)
    other = plain(location)
    other.set("k", Poison(padding))
    assert tier.get("k") is MISSING
    assert tier.get_value("k", "dflt") == "dflt"
    assert not tier.has_key("k")
    assert tier.stats.rejected == 1  # the first read deleted the row
    assert EXECUTED == []
    for plant in (other.set, other.add):
        plant("k", Poison(padding))
        assert tier.add("k", rec("mine"))  # the planted row is dropped, not read
        assert tier.get_value("k", None) == "mine"
        assert tier.delete("k")
        plant("k", Poison(padding))
        assert not tier.delete("k")
        plant("k", Poison(padding))
        assert not tier.touch("k", None)
        plant("k", Poison(padding))
        with pytest.raises(ValueError):
            tier.incr("k", 1)
    assert EXECUTED == []
    assert tier.stats.rejected == 1 + 2 * 4  # add, delete, touch and incr, twice
    other.set("k", Poison(padding))
    other.get("k")  # proof that the payload is live: plain diskcache runs it
    assert EXECUTED == ["ran"]


@pytest.mark.parametrize("value", ["text", 1.5, 2**64, {"a": 1}, bytearray(b"x")])
def test_the_store_writes_only_bytes_and_64_bit_ints(make, value):
    tier = make(shards=1)
    (shard,) = tier.files.open().shards
    with pytest.raises(TypeError, match="bytes or int64"):
        shard.set("k", value)
    assert "k" not in shard
    shard.set("k", b"bytes")
    shard.set("n", -(2**63))
    assert shard.get("k") == b"bytes" and shard.get("n") == -(2**63)


@pytest.mark.parametrize(
    "stored",
    [
        pickle.dumps(Poison()),  # a raw pickle stored as bytes
        b"short",
        b"\xa7TC\x63" + bytes(20),  # unknown envelope format version
        b"\xa7TC\x01\x01" + bytes(16) + b"not zlib",  # bad compressed payload
        "text",
        1.5,
    ],
    ids=["raw-pickle", "short", "version", "zlib", "str", "float"],
)
def test_unreadable_rows_are_rejected_and_deleted(make, location, stored):
    tier = make(shards=1)
    plain(location).set("k", stored)
    assert tier.get("k") is MISSING
    assert tier.stats.rejected == 1
    assert "k" not in plain(location)
    assert EXECUTED == []


def test_truncated_payload_is_a_rejected_miss_for_get_value(make, location):
    tier = make(shards=1, COMPRESS_MIN_BYTES=None)
    plain(location).set("k", encode(rec(list(range(100))), "k")[:-7])
    assert tier.get_value("k", "dflt") == "dflt"
    assert tier.stats.rejected == 1
    assert tier.get("k") is MISSING


def test_missing_value_file_is_a_miss(make, location):
    tier = make(shards=1, COMPRESS_MIN_BYTES=None)
    tier.set("k", rec(os.urandom(100_000)))
    (value_file,) = location.rglob("*.val")
    value_file.unlink()
    assert tier.get("k") is MISSING


# -- the bounded open (docs/faults.rst #28, #31) -----------------------------------


def test_open_while_another_process_holds_the_lock_is_bounded(
    make, location, exclusive_lock
):
    diskcache.Cache(str(location / "000")).close()
    exclusive_lock()
    tier = make(shards=1, OPEN_TIMEOUT=0.2, opened=False)
    start = time.perf_counter()
    assert tier.get("k") is MISSING  # reads never wait for the open
    assert not tier.has_key("k")
    assert time.perf_counter() - start < 0.2  # less than OPEN_TIMEOUT
    with pytest.raises(TierUnavailable, match="not open after") as info:
        tier.set("k", rec("v"))  # writes wait, up to OPEN_TIMEOUT
    assert time.perf_counter() - start < 1.0
    assert (info.value.kind, info.value.alive) == ("opening", True)  # no breaker
    start = time.perf_counter()
    with pytest.raises(TierUnavailable):
        tier.set("k", rec("v"))  # past the deadline: fails without a new wait
    assert time.perf_counter() - start < 0.2  # less than one more OPEN_TIMEOUT


def test_open_completes_in_the_background_once_the_lock_is_gone(
    make, location, exclusive_lock
):
    diskcache.Cache(str(location / "000")).close()
    holder = exclusive_lock()
    tier = make(shards=1, OPEN_TIMEOUT=0.05, opened=False)
    with pytest.raises(TierUnavailable):
        tier.set("k", rec("v"))
    holder.execute("ROLLBACK")
    assert _handles.get(tier.files.key).done.wait(5)  # the open was never abandoned
    tier.set("k", rec("v"))
    assert tier.get_value("k", None) == "v"


def test_the_first_read_of_a_process_starts_the_open_and_does_not_wait(make, location):
    make(shards=2).set("k", rec("v"))  # an existing directory, a value in it
    _handles.discard(make(opened=False, shards=2).files.key)  # a new process
    tier = make(shards=2, opened=False)
    assert tier.get("k") is MISSING  # answered at once: a miss
    handle = _handles.get(tier.files.key)
    assert handle is not None and handle.done.wait(5)
    assert tier.get_value("k", None) == "v"


def test_an_open_at_interpreter_exit_opens_the_shards_without_a_pool(make, monkeypatch):
    from tiered_cache.tiers.disk import opening

    class AtExit:
        """ThreadPoolExecutor once the interpreter is shutting down."""

        def __init__(self, *args, **kwargs) -> None:
            pass

        def __enter__(self):
            return self

        def __exit__(self, *exc) -> None:
            pass

        def map(self, *args):
            raise RuntimeError("cannot schedule new futures after interpreter shutdown")

    monkeypatch.setattr(opening, "ThreadPoolExecutor", AtExit)
    tier = make(shards=2)  # a short command's listener, asking at exit (issue 8)
    tier.set("k", rec("v"))
    assert tier.get_value("k", None) == "v"
    assert tier.stats.errors == 0


# -- partial value files (docs/faults.rst #29) -------------------------------------


def test_file_too_large_fails_the_write_and_leaves_no_partial_file(make, location):
    tier = make(shards=1, COMPRESS_MIN_BYTES=None)
    tier.set("small", rec("v"))
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (2**20, hard))
    try:
        with pytest.raises(TierUnavailable) as info:
            tier.set("big", rec(os.urandom(3 * 2**20)))
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)
    assert info.value.__cause__.errno == errno.EFBIG
    assert list(location.rglob("*.val")) == []
    assert tier.get_value("small", None) == "v"
    tier.set("big", rec(b"fits now"))
    assert tier.get_value("big", None) == b"fits now"


# -- fork safety (docs/faults.rst #32) ---------------------------------------------


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded")
def test_forked_child_opens_its_own_handle(make):
    tier = make(shards=2)
    tier.set("k", rec("from parent"))
    parent_store = tier.files.open()
    pid = os.fork()
    if pid == 0:  # the child: report through the exit code, never return
        code = 1
        try:
            store = tier.files.open()
            if store is parent_store:
                code = 2
            elif tier.get_value("k", None) != "from parent":
                code = 3
            else:
                tier.set("c", rec("from child"))
                code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert tier.files.open() is parent_store
    assert tier.get_value("c", None) == "from child"


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_eight_forked_workers_share_the_directory_without_damage(location):
    """A pre-forking server: the parent used L3, then 8 workers write at once.

    The parent is a fresh process (``fork_worker.py``): SQLite's process-wide
    state must not be copied while another thread of the test run uses it.
    """
    import json
    import subprocess
    import sys
    from pathlib import Path

    worker = Path(__file__).with_name("fork_worker.py")
    root = Path(__file__).resolve().parents[3]
    done = subprocess.run(
        [sys.executable, str(worker), str(location)],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    outcome = json.loads(done.stdout.splitlines()[-1])
    reports = outcome["reports"]
    assert [r["other"] for r in reports] == [[]] * 8
    kinds = {kind for r in reports for kind in r["kinds"]}
    assert kinds <= {"locked", "busy"}, reports
    assert [r["parent"] for r in reports] == ["p"] * 8
    assert outcome["quick_check"] == [[["ok"]], [["ok"]]]
    assert outcome["missing"] == []  # every worker's last writes are readable
    assert outcome["parent"] == "p"


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded")
def test_fork_waits_for_a_running_open(make):
    tier = make(shards=8, opened=False)
    assert tier.get("k") is MISSING  # starts the open in the background
    handle = _handles.get(tier.files.key)
    pid = os.fork()  # at once: the open has barely started
    if pid == 0:  # the child: report through the exit code, never return
        code = 1
        try:
            code = 0 if handle.done.is_set() and handle.store is not None else 2
            if code == 0:
                tier.set("k", rec("from child"))
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert handle.done.wait(10)  # the parent's own open may still be running:
    assert tier.get_value("k", None) == "from child"  # reads do not wait for it
