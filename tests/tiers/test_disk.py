"""The disk tier (L3) against the tier contract, and the faults of RELIABILITY.md D.

Rows are planted or inspected with a plain ``diskcache.Cache`` on the shard
directory (``shards=1``), the way another program sharing the directory would.
Expiry is driven by a fake clock far from ``time.time()``: the tier must never
mix the two. Nothing sleeps.
"""

from __future__ import annotations

import errno
import importlib.util
import logging
import os
import pickle
import resource
import signal
import sqlite3
import threading
import time
from pathlib import Path

import diskcache
import pytest
from django.core.exceptions import ImproperlyConfigured

from tests.clock import FakeClock
from tiered_cache.envelope import Record, decode, encode
from tiered_cache.exceptions import TierUnavailable
from tiered_cache.sentinels import MISSING
from tiered_cache.tiers import disk
from tiered_cache.tiers.disk import DiskTier

HAS_ZSTD = importlib.util.find_spec("zstandard") is not None

# -- a payload that must never run ------------------------------------------------

EXECUTED: list[str] = []


def _payload_ran(*args: object) -> str:
    EXECUTED.append("ran")
    return "pwned"


class Poison:
    """Unpickling this calls ``_payload_ran`` (a stand-in for ``os.system``)."""

    def __init__(self, padding: str = "") -> None:
        self.padding = padding

    def __reduce__(self):
        return (_payload_ran, (self.padding,))


# -- helpers ------------------------------------------------------------------------


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(1_000_000.0)  # decades behind time.time()


@pytest.fixture
def location(tmp_path: Path) -> Path:
    return tmp_path / "l3"


@pytest.fixture
def make(location: Path, clock: FakeClock):
    def factory(directory: Path | None = None, **options) -> DiskTier:
        options.setdefault("OPEN_TIMEOUT", 10.0)  # slow CI disks: not under test
        where = str(directory or location)
        params = {"BACKEND": "diskcache.DjangoCache", "LOCATION": where}
        return DiskTier(where, {**params, "OPTIONS": options}, name="l3", clock=clock)

    return factory


@pytest.fixture(autouse=True)
def _forget_handles(tmp_path: Path):
    """Close this test's shared handles so open files do not pile up."""
    EXECUTED.clear()
    yield
    for key, handle in list(disk._handles.items()):
        if key[0].startswith(str(tmp_path)):
            if handle.done.wait(5) and handle.store is not None:
                for shard in handle.store.shards:
                    shard.close()
            disk._handles.discard(key)


def rec(value, expires_at=None) -> Record:
    return Record.for_value(value, expires_at)


def plain(location: Path, shard: int = 0) -> diskcache.Cache:
    """A plain diskcache on one shard: another program sharing the directory."""
    return diskcache.Cache(str(location / f"{shard:03d}"))


def shard_db(location: Path, shard: int = 0) -> str:
    return str(location / f"{shard:03d}" / "cache.db")


# -- the contract -------------------------------------------------------------------


def test_nothing_touches_the_disk_before_the_first_call(make, location):
    tier = make()
    assert not location.exists()
    assert tier.describe()["volume"] is None
    tier.set("k", rec("v"))
    assert location.is_dir()


def test_set_get_round_trip_keeps_expiry_and_stamp(make, clock):
    tier = make()
    record = rec({"a": [1, 2]}, clock() + 60)
    tier.set("k", record)
    got = tier.get("k")
    assert got.expires_at == record.expires_at
    assert got.stamp == record.stamp
    assert tier.get_value("k", None) == {"a": [1, 2]}
    assert tier.has_key("k")


def test_missing_key(make):
    tier = make()
    assert tier.get("nope") is MISSING
    assert tier.get_value("nope", "dflt") == "dflt"
    assert not tier.has_key("nope")


def test_keys_are_stored_exactly_as_given(make, location):
    tier = make(shards=1)
    tier.set(":1:k", rec("v"))
    assert list(plain(location).iterkeys()) == [":1:k"]


def test_set_replaces_and_an_expired_record_deletes(make, clock):
    tier = make()
    tier.set("k", rec("old"))
    tier.set("k", rec("new"))
    assert tier.get_value("k", None) == "new"
    tier.set("k", rec("dead", clock() - 1))
    assert tier.get("k") is MISSING


def test_expiry_follows_the_injected_clock(make, clock):
    tier = make()
    tier.set("k", rec("v", clock() + 10))
    tier.set("forever", rec("v"))
    clock.advance(9.9)
    assert tier.has_key("k")
    clock.advance(0.1)
    assert tier.get("k") is MISSING
    assert not tier.has_key("k")
    clock.advance(10**6)
    assert tier.get_value("forever", None) == "v"


def test_many_variants(make):
    tier = make()
    tier.set_many({"a": rec(1), "b": rec("two"), "c": rec([3])})
    found = tier.get_many(["a", "b", "x"])
    assert set(found) == {"a", "b"} and found["a"].value == 1
    tier.delete_many(["a", "x"])
    assert set(tier.get_many(["a", "b", "c"])) == {"b", "c"}


def test_add_is_refused_while_a_live_entry_exists(make, clock):
    tier = make()
    assert tier.add("k", rec("first", clock() + 5))
    assert not tier.add("k", rec("second"))
    assert tier.get_value("k", None) == "first"
    clock.advance(5)
    assert tier.add("k", rec("third"))
    assert tier.get_value("k", None) == "third"


def test_add_is_atomic_across_threads(make):
    tier = make(timeout=5)  # contention, not the lock timeout, is under test
    results = []
    barrier = threading.Barrier(8)

    def worker(n: int) -> None:
        barrier.wait()
        results.append(tier.add("k", rec(n)))

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results.count(True) == 1


def test_delete_reports_live_entries_only(make, clock):
    tier = make()
    tier.set("k", rec("v"))
    tier.set("short", rec("v", clock() + 1))
    assert tier.delete("k")
    assert not tier.delete("k")
    assert tier.get("k") is MISSING
    clock.advance(1)
    assert not tier.delete("short")


def test_describe(make):
    tier = make(size_limit=2**20, shards=2)
    tier.set("k", rec("v"))
    info = tier.describe()
    assert info["name"] == "l3" and info["class"] == "DiskTier"
    assert info["scope"] == "machine" and info["may_be_authority"]
    assert info["directory"] == tier.directory
    assert info["size_limit"] == 2**20 and info["shards"] == 2
    assert info["volume"] > 0


def test_tiers_with_one_configuration_share_one_handle(make, location):
    first, second = make(), make()
    first.set("k", rec("v"))
    assert second.get_value("k", None) == "v"
    assert second._store() is first._store()
    other = make(size_limit=2**25)
    assert other._store() is not first._store()
    assert other.get_value("k", None) == "v"  # same files, other options


# -- storage: compression, raw ints ------------------------------------------------


@pytest.mark.parametrize(
    "compressor",
    [
        "zlib",
        pytest.param("zstd", marks=pytest.mark.skipif(not HAS_ZSTD, reason="zstd")),
    ],
)
def test_compression_shrinks_the_stored_bytes_and_round_trips(
    make, tmp_path, compressor
):
    value = "tiered cache " * 2000
    packed = make(tmp_path / "on", shards=1, COMPRESSOR=compressor)
    loose = make(tmp_path / "off", shards=1, COMPRESS_MIN_BYTES=None)
    packed.set("k", rec(value))
    loose.set("k", rec(value))
    stored_packed = plain(tmp_path / "on").get("k")
    stored_loose = plain(tmp_path / "off").get("k")
    assert type(stored_packed) is bytes and type(stored_loose) is bytes
    assert len(stored_packed) * 10 < len(stored_loose)
    assert packed.get_value("k", None) == value
    assert loose.get_value("k", None) == value
    assert packed.describe()["compressor"] == compressor


def test_small_payloads_are_not_compressed(make, location):
    tier = make(shards=1, COMPRESS_MIN_BYTES=10_000)
    record = rec("x" * 5000)
    tier.set("k", record)
    assert plain(location).get("k") == encode(record)


def test_ints_are_stored_raw_so_diskcache_can_add(make, location, clock):
    tier = make(shards=1)
    tier.set("n", rec(41, clock() + 30))
    assert plain(location).get("n") == 41  # an SQLite integer, not an envelope
    assert tier.incr("n", 1) == 42
    assert tier.incr("n", -50) == -8
    got = tier.get("n")
    assert got.value == -8 and got.payload is None
    assert got.expires_at == clock() + 30  # incr keeps the expiry
    clock.advance(30)
    assert tier.get("n") is MISSING
    with pytest.raises(ValueError):
        tier.incr("n", 1)


def test_incr_missing_key_raises_value_error(make):
    with pytest.raises(ValueError, match="not found"):
        make().incr("nope", 1)


def test_incr_on_a_non_integer_raises_type_error(make):
    tier = make()
    tier.set("s", rec("text"))
    with pytest.raises(TypeError, match="not an int"):
        tier.incr("s", 1)
    assert tier.get_value("s", None) == "text"


def test_incr_across_the_64_bit_limit(make):
    tier = make()
    tier.set("n", rec(2**63 - 1))
    assert tier.incr("n", 1) == 2**63
    assert tier.get_value("n", None) == 2**63
    assert tier.incr("n", 1) == 2**63 + 1
    tier.set("big", rec(-(2**70)))
    assert tier.get_value("big", None) == -(2**70)
    assert tier.incr("big", 2**70) == 0


def test_incr_is_atomic_across_threads(make):
    tier = make(timeout=5)
    tier.set("n", rec(0))

    def worker() -> None:
        for _ in range(50):
            tier.incr("n", 1)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert tier.get_value("n", None) == 200


def test_foreign_int_expiry_is_mapped_to_the_injected_clock(make, location, clock):
    tier = make(shards=1)
    plain(location).set("n", 7, expire=100)  # no tag: diskcache's own timeline
    got = tier.get("n")
    assert got.value == 7
    assert got.expires_at == pytest.approx(clock() + 100, abs=5)


# -- touch --------------------------------------------------------------------------


def test_touch_rewrites_the_envelope_expiry(make, location, clock):
    tier = make(shards=1)
    record = rec("v", clock() + 10)
    tier.set("k", record)
    assert tier.touch("k", clock() + 100)
    assert decode(plain(location).get("k")).expires_at == clock() + 100
    got = tier.get("k")
    assert got.expires_at == clock() + 100 and got.stamp == record.stamp
    clock.advance(50)
    assert tier.get_value("k", None) == "v"
    assert tier.touch("k", None)
    clock.advance(10**6)
    assert tier.get("k").expires_at is None


def test_touch_raw_int(make, clock):
    tier = make()
    tier.set("n", rec(5, clock() + 10))
    assert tier.touch("n", clock() + 20)
    clock.advance(15)
    assert tier.incr("n", 1) == 6


def test_touch_missing_and_into_the_past(make, clock):
    tier = make()
    assert not tier.touch("nope", clock() + 10)
    tier.set("k", rec("v"))
    assert tier.touch("k", clock() - 1)
    assert tier.get("k") is MISSING
    assert not tier.touch("k", clock() + 10)


# -- clear ----------------------------------------------------------------------------


def test_clear_removes_only_the_namespace(make, location):
    tier = make()
    for key in ("ns1:a", "ns1:b", "ns2:a", "a*1", "a*", "ab", "b"):
        tier.set(key, rec(key))
    tier.set("ns1:n", rec(3))
    assert tier.clear("ns1:") == 3
    assert tier.get("ns1:a") is MISSING and tier.get("ns1:n") is MISSING
    assert tier.get_value("ns2:a", None) == "ns2:a"
    assert tier.clear("a*") == 2  # literal, not a pattern
    assert tier.get("a*1") is MISSING
    assert tier.get_value("ab", None) == "ab"
    assert tier.get_value("b", None) == "b"
    assert tier.clear("zzz") == 0


def test_clear_never_unpickles_foreign_keys_or_values(make, location):
    tier = make(shards=1)
    tier.set("ns:a", rec("a"))
    other = plain(location)
    other.set(Poison(), b"value under a pickled key")
    other.set("ns:foreign", Poison())
    other.set("other:x", Poison())
    assert tier.clear("ns:") == 2
    assert EXECUTED == []
    assert len(other) == 2  # the pickled key and other:x are left alone


# -- bad stored data (RELIABILITY.md #33) ------------------------------------------


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
        assert not tier.add("k", rec("mine")) or tier.get_value("k", None) == "mine"
        tier.delete("k")
        plant("k", Poison(padding))
        assert not tier.delete("k")
        plant("k", Poison(padding))
        assert not tier.touch("k", None)
        plant("k", Poison(padding))
        with pytest.raises(ValueError):
            tier.incr("k", 1)
    assert EXECUTED == []
    other.set("k", Poison(padding))
    other.get("k")  # proof that the payload is live: plain diskcache runs it
    assert EXECUTED == ["ran"]


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
    plain(location).set("k", encode(rec(list(range(100))))[:-7])
    assert tier.get_value("k", "dflt") == "dflt"
    assert tier.stats.rejected == 1
    assert tier.get("k") is MISSING


def test_missing_value_file_is_a_miss(make, location):
    tier = make(shards=1, COMPRESS_MIN_BYTES=None)
    tier.set("k", rec(os.urandom(100_000)))
    (value_file,) = location.rglob("*.val")
    value_file.unlink()
    assert tier.get("k") is MISSING


# -- faults (RELIABILITY.md D) ----------------------------------------------------


@pytest.fixture
def exclusive_lock(location: Path):
    """Hold the write lock of shard 0 from another connection, like another process."""
    held = []

    def take() -> sqlite3.Connection:
        con = sqlite3.connect(shard_db(location), isolation_level=None)
        con.execute("BEGIN EXCLUSIVE")
        held.append(con)
        return con

    yield take
    for con in held:
        if con.in_transaction:
            con.execute("ROLLBACK")
        con.close()


def test_locked_database_writes_fail_fast_reads_continue(make, exclusive_lock):
    tier = make(shards=1)
    tier.set("k", rec("v"))
    tier.set("n", rec(1))
    exclusive_lock()
    for call, args in [
        (tier.set, ("k2", rec("w"))),
        (tier.add, ("k3", rec("w"))),
        (tier.incr, ("n", 1)),
        (tier.touch, ("k", None)),
        (tier.delete, ("k",)),
    ]:
        start = time.perf_counter()
        with pytest.raises(TierUnavailable) as info:
            call(*args)
        assert time.perf_counter() - start < 1.0
        assert isinstance(info.value.__cause__, diskcache.Timeout)
    start = time.perf_counter()
    assert tier.get_value("k", None) == "v"
    assert time.perf_counter() - start < 0.5


def test_open_while_another_process_holds_the_lock_is_bounded(
    make, location, exclusive_lock
):
    diskcache.Cache(str(location / "000")).close()
    exclusive_lock()
    tier = make(shards=1, OPEN_TIMEOUT=0.2)
    start = time.perf_counter()
    with pytest.raises(TierUnavailable, match="not open after"):
        tier.get("k")
    assert time.perf_counter() - start < 1.0
    start = time.perf_counter()
    with pytest.raises(TierUnavailable):
        tier.set("k", rec("v"))  # past the deadline: fails at once
    assert time.perf_counter() - start < 0.1


def test_open_completes_in_the_background_once_the_lock_is_gone(
    make, location, exclusive_lock
):
    diskcache.Cache(str(location / "000")).close()
    holder = exclusive_lock()
    tier = make(shards=1, OPEN_TIMEOUT=0.05)
    with pytest.raises(TierUnavailable):
        tier.get("k")
    holder.execute("ROLLBACK")
    assert disk._handles.get(tier._key).done.wait(5)  # the open was never abandoned
    tier.set("k", rec("v"))
    assert tier.get_value("k", None) == "v"


def test_unwritable_directory_is_unavailable_with_one_error_log(make, tmp_path, caplog):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")  # root ignores chmod; this fails for real
    tier = make(blocker / "l3")
    with caplog.at_level(logging.ERROR, logger="tiered_cache.tiers.disk"):
        for _ in range(3):
            with pytest.raises(TierUnavailable) as info:
                tier.set("k", rec("v"))
            assert isinstance(info.value.__cause__, OSError)
            with pytest.raises(TierUnavailable):
                tier.get("k")
    assert len([r for r in caplog.records if r.levelno == logging.ERROR]) == 1


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


def _garble(path: str) -> None:
    size = os.path.getsize(path)
    with open(path, "r+b") as f:
        f.write(os.urandom(max(size, 4096)))


def test_corrupt_database_at_open_is_quarantined_then_recreated(make, location):
    seed = diskcache.FanoutCache(str(location), shards=2)
    seed.set("k", b"x")
    seed.close()
    _garble(shard_db(location, 0))
    _garble(shard_db(location, 1))
    tier = make(shards=2)
    with pytest.raises(TierUnavailable) as info:
        tier.get("k")
    assert isinstance(info.value.__cause__, sqlite3.DatabaseError)
    assert len(list(location.glob("00?.corrupt-*"))) == 2
    assert tier.get("k") is MISSING  # recovered: a fresh, empty store
    tier.set("k", rec("v"))
    assert tier.get_value("k", None) == "v"
    assert tier.describe()["quarantined"] == 2


def test_database_corrupted_while_open_is_quarantined(make, location):
    tier = make(shards=1)
    tier.set("k", rec("v"))
    _garble(shard_db(location))
    outcome = []

    def reader() -> None:  # a new thread opens a new SQLite connection
        try:
            outcome.append(tier.get("k"))
        except TierUnavailable as exc:
            outcome.append(exc)

    thread = threading.Thread(target=reader)
    thread.start()
    thread.join()
    (exc,) = outcome
    assert isinstance(exc, TierUnavailable)
    assert isinstance(exc.__cause__, sqlite3.DatabaseError)
    assert len(list(location.glob("000.corrupt-*"))) == 1
    assert tier.get("k") is MISSING
    tier.set("k", rec("w"))
    assert tier.get_value("k", None) == "w"


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded")
def test_forked_child_opens_its_own_handle(make):
    tier = make(shards=2)
    tier.set("k", rec("from parent"))
    parent_store = tier._store()
    pid = os.fork()
    if pid == 0:  # the child: report through the exit code, never return
        code = 1
        try:
            store = tier._store()
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
    assert tier._store() is parent_store
    assert tier.get_value("c", None) == "from child"


# -- configuration -------------------------------------------------------------------


def test_defaults_are_explicit(make):
    tier = make()
    assert tier._kwargs == {
        "shards": 8,
        "timeout": 0.05,
        "size_limit": 2**30,
        "cull_limit": 10,
    }
    assert tier.compress_min_bytes == 1024 and tier.compressor == "zlib"
    tier.set("k", rec("v"))
    assert tier._store().shards[0].timeout == 0.05


def test_djangocache_top_level_params_are_accepted(location, clock):
    params = {"LOCATION": str(location), "SHARDS": 2, "DATABASE_TIMEOUT": 0.1}
    tier = DiskTier(str(location), params, name="l3", clock=clock)
    assert tier._kwargs["shards"] == 2 and tier._kwargs["timeout"] == 0.1
    params["OPTIONS"] = {"shards": 4}
    with pytest.raises(ImproperlyConfigured, match="differ"):
        DiskTier(str(location), params, name="l3", clock=clock)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"size_limt": 1}, "unknown diskcache"),
        ({"disk": diskcache.Disk}, "unknown diskcache"),
        ({"COMPRESSOR": "lz4"}, "COMPRESSOR"),
        ({"size_limit": [1]}, "plain values"),
    ],
)
def test_bad_options_are_improperly_configured(make, options, message):
    with pytest.raises(ImproperlyConfigured, match=message):
        make(**options)


def test_zstd_without_zstandard_is_improperly_configured(make, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "zstandard" else real(name, *a),
    )
    with pytest.raises(ImproperlyConfigured, match="zstandard"):
        make(COMPRESSOR="zstd")


def test_location_is_required(clock):
    with pytest.raises(ImproperlyConfigured, match="LOCATION"):
        DiskTier("", {}, name="l3", clock=clock)
