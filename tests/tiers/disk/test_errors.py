"""What the disk tier's failures become: a locked, full, unwritable or corrupt
directory (docs/faults.rst #28 to #31) as ``TierUnavailable``, and the
quarantine of corrupt shards.
"""

from __future__ import annotations

import errno
import logging
import os
import sqlite3
import threading
import time

import diskcache
import pytest

from tests.tiers.disk.support import rec, shard_db
from tiered_cache.envelope import encode
from tiered_cache.exceptions import TierUnavailable
from tiered_cache.sentinels import MISSING
from tiered_cache.tiers.disk.errors import (
    call_failed,
    is_corruption,
    is_unwritable,
    quarantine_if_corrupt,
    rename_aside,
)
from tiered_cache.tiers.disk.store import _handles

# -- locked and unwritable ---------------------------------------------------------


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


def test_unwritable_directory_is_unavailable_with_one_error_log(make, tmp_path, caplog):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")  # root ignores chmod; this fails for real
    tier = make(blocker / "l3", opened=False)
    with caplog.at_level(logging.ERROR, logger="tiered_cache.tiers.disk"):
        for _ in range(3):
            with pytest.raises(TierUnavailable) as info:
                tier.set("k", rec("v"))
            assert isinstance(info.value.__cause__, OSError)
            with pytest.raises(TierUnavailable):
                tier.get("k")
    assert len([r for r in caplog.records if r.levelno == logging.ERROR]) == 1


# -- corruption and quarantine -----------------------------------------------------


def _garble(path: str) -> None:
    size = os.path.getsize(path)
    with open(path, "r+b") as f:
        f.write(os.urandom(max(size, 4096)))


def _garble_page(path: str, page: int) -> None:
    """Overwrite one page of a database: a damaged page, a sound file header."""
    with open(path, "r+b") as f:
        f.seek((page - 1) * 4096)  # diskcache's page size
        f.write(os.urandom(4096))


def _filled(location, shards: int = 1, rows: int = 3000) -> None:
    """A directory of ``shards`` shards whose databases span many pages."""
    seed = diskcache.FanoutCache(str(location), shards=shards)
    for i in range(rows):
        seed.set(f"k{i}", encode(rec("x" * 300), f"k{i}"))
    seed.close()  # the last connection checkpoints the WAL into cache.db


def test_corrupt_database_at_open_is_quarantined_then_recreated(make, location, caplog):
    seed = diskcache.FanoutCache(str(location), shards=2)
    seed.set("k", b"x")
    seed.close()
    _garble(shard_db(location, 0))
    _garble(shard_db(location, 1))
    tier = make(shards=2, opened=False)
    with caplog.at_level(logging.ERROR, logger="tiered_cache.tiers.disk"):
        tier.set("k", rec("v"))  # the open quarantined both, then opened afresh
    assert tier.get_value("k", None) == "v"
    assert len(list(location.glob("00?.corrupt-*"))) == 2
    assert tier.describe()["quarantined"] == 2
    assert sum("is corrupt" in r.getMessage() for r in caplog.records) == 2


def test_a_malformed_page_at_open_is_found_by_quick_check(make, location, caplog):
    """Page-level damage: the file is still a database, one page is not."""
    _filled(location, shards=2)
    _garble_page(shard_db(location, 0), 3)  # the root page of Settings
    with pytest.raises(sqlite3.DatabaseError, match="malformed"):
        diskcache.Cache(str(location / "000"))  # what kept L3 down on every start
    tier = make(shards=2, opened=False)
    with caplog.at_level(logging.ERROR, logger="tiered_cache.tiers.disk"):
        tier.set("new", rec("v"))
    assert tier.get_value("new", None) == "v"
    (aside,) = location.glob("00?.corrupt-*")
    assert aside.name.startswith("000.")
    # Only this tier's lines: a listener left by another test may log too.
    (line,) = [
        r.getMessage()
        for r in caplog.records
        if r.name.startswith("tiered_cache.tiers.disk")
    ]
    assert "is corrupt" in line and "moved to" in line
    shard_1 = {key for key in tier.keys("k") if key != "new"}
    assert len(shard_1) > 1000  # the sound shard kept its rows
    assert all(tier.get(key) is not MISSING for key in shard_1)


def test_a_malformed_page_met_by_a_call_quarantines_its_shard(make, location):
    _filled(location)
    _garble_page(shard_db(location), 150)  # a page of rows or of the key index
    tier = make(shards=1)
    tier.files.open()  # reads do not wait for the open
    failures = []
    for i in range(3000):
        try:
            tier.get(f"k{i}")
        except TierUnavailable as exc:
            failures.append(exc)
            break
    (failure,) = failures
    assert failure.kind == "corrupt" and not failure.alive
    assert "malformed" in str(failure.__cause__)
    assert len(list(location.glob("000.corrupt-*"))) == 1
    tier.set("k0", rec("fresh"))  # a fresh shard opened on the next call
    assert tier.get_value("k0", None) == "fresh"
    assert tier.get("k1") is MISSING  # the damaged shard's rows are gone


def test_corruption_that_cannot_be_moved_aside_is_logged(
    make, location, caplog, monkeypatch
):
    _filled(location)
    _garble_page(shard_db(location), 3)
    tried = []

    def refuse(name, path, cause):  # as when the parent directory is read-only
        tried.append(path)
        return False

    monkeypatch.setattr("tiered_cache.tiers.disk.errors.rename_aside", refuse)
    tier = make(shards=1, opened=False)
    with caplog.at_level(logging.ERROR, logger="tiered_cache.tiers.disk"):
        for _ in range(3):
            with pytest.raises(TierUnavailable) as info:
                tier.set("k", rec("v"))
    assert isinstance(info.value.__cause__, sqlite3.DatabaseError)
    assert tried == [str(location / "000")]  # once: later calls fail fast
    # Only this tier's lines: a listener left by another test may log too.
    (line,) = [
        r.getMessage()
        for r in caplog.records
        if r.name.startswith("tiered_cache.tiers.disk")
    ]
    assert "cannot open cache directory" in line and "malformed" in line


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


def test_corruption_seen_on_a_replaced_store_quarantines_nothing(make, location):
    tier = make(shards=1)
    tier.set("k", rec("v"))
    old = tier.files.open()
    _handles.discard(tier.files.key)  # another thread reopened it meanwhile
    new = tier.files.open()
    exc = sqlite3.DatabaseError("file is not a database")
    try:
        failure = tier.files.failed("get", exc, old, old.shards[0])
    finally:
        for shard in old.shards:
            shard.close()
    assert failure.kind == "corrupt" and not failure.alive
    assert list(location.glob("000.corrupt-*")) == []
    assert tier.files.quarantined == 0
    assert tier.files.open() is new
    assert tier.get_value("k", None) == "v"


def test_a_healthy_or_absent_shard_is_not_quarantined(make, location, tmp_path):
    tier = make(shards=1)
    tier.set("k", rec("v"))
    assert not quarantine_if_corrupt("l3", str(location / "000"))
    assert not quarantine_if_corrupt("l3", str(tmp_path / "never-opened"))
    assert list(location.glob("000.corrupt-*")) == []
    assert tier.get_value("k", None) == "v"


def test_a_shard_that_cannot_be_moved_aside_is_logged(tmp_path, caplog):
    cause = sqlite3.DatabaseError("file is not a database")
    with caplog.at_level(logging.ERROR, logger="tiered_cache.tiers.disk"):
        assert not rename_aside("l3", str(tmp_path / "gone" / "000"), cause)
    (record,) = caplog.records
    assert "cannot quarantine" in record.getMessage()


# -- telling failures apart --------------------------------------------------------


def test_sqlite_result_codes_tell_corrupt_from_unwritable(tmp_path):
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(os.urandom(4096))
    with pytest.raises(sqlite3.DatabaseError) as corrupt:
        sqlite3.connect(garbage).execute("SELECT * FROM sqlite_master").fetchall()
    sound = tmp_path / "sound.db"
    with sqlite3.connect(sound) as con:
        con.execute("CREATE TABLE t (a)")
    con.close()
    readonly = sqlite3.connect(f"file:{sound}?mode=ro", uri=True)
    try:
        with pytest.raises(sqlite3.OperationalError) as unwritable:
            readonly.execute("INSERT INTO t VALUES (1)")
    finally:
        readonly.close()
    assert is_corruption(corrupt.value) and not is_unwritable(corrupt.value)
    assert is_unwritable(unwritable.value) and not is_corruption(unwritable.value)


@pytest.mark.parametrize(
    ("exc", "corrupt", "unwritable"),
    [
        (sqlite3.DatabaseError("file is not a database"), True, False),
        (sqlite3.DatabaseError("database disk image is malformed"), True, False),
        (sqlite3.OperationalError("attempt to write a readonly database"), False, True),
        (sqlite3.OperationalError("unable to open database file"), False, True),
        (sqlite3.OperationalError("disk I/O error"), False, False),
        (OSError(errno.EROFS, "Read-only file system"), False, True),
        (OSError(errno.EACCES, "Permission denied"), False, True),
        (OSError(errno.ENOSPC, "No space left on device"), False, False),
        (diskcache.Timeout(), False, False),
    ],
    ids=[
        "notadb",
        "malformed",
        "readonly",
        "cantopen",
        "ioerr",
        "erofs",
        "eacces",
        "enospc",
        "timeout",
    ],
)
def test_messages_tell_failures_apart_without_result_codes(exc, corrupt, unwritable):
    assert not hasattr(exc, "sqlite_errorcode")  # as before Python 3.11
    assert is_corruption(exc) is corrupt
    assert is_unwritable(exc) is unwritable


@pytest.mark.parametrize(
    ("exc", "kind", "alive"),
    [
        (diskcache.Timeout(), "locked", False),
        (sqlite3.DatabaseError("database disk image is malformed"), "corrupt", False),
        (OSError(errno.ENOSPC, "No space left on device"), "disk_full", True),
        (OSError(errno.EFBIG, "File too large"), "disk_full", True),
        (OSError(errno.EDQUOT, "Disk quota exceeded"), "disk_full", True),
        (OSError(errno.EIO, "Input/output error"), "io", False),
        (sqlite3.OperationalError(), "io", False),
        (sqlite3.OperationalError("database or disk is full"), "disk_full", True),
    ],
    ids=["timeout", "malformed", "enospc", "efbig", "edquot", "eio", "bare", "full"],
)
def test_call_failures_map_to_a_kind(tmp_path, exc, kind, alive):
    shard = diskcache.Cache(str(tmp_path / "000"), timeout=0.05)
    try:
        failure = call_failed("l3", str(tmp_path), "set", exc, shard)
    finally:
        shard.close()
    assert isinstance(failure, TierUnavailable)
    assert (failure.tier, failure.operation) == ("l3", "set")
    assert (failure.kind, failure.alive) == (kind, alive)
    assert str(failure)  # never an empty detail, even for a bare exception


def test_an_unwritable_directory_met_by_calls_is_logged_once(tmp_path, caplog):
    shard = diskcache.Cache(str(tmp_path / "000"))
    exc = OSError(errno.EACCES, "Permission denied")
    try:
        with caplog.at_level(logging.ERROR, logger="tiered_cache.tiers.disk"):
            kinds = {
                call_failed("l3", str(tmp_path), "set", exc, shard).kind
                for _ in range(3)
            }
    finally:
        shard.close()
    assert kinds == {"io"}
    (record,) = caplog.records
    assert "not writable" in record.getMessage()


@pytest.mark.parametrize(
    "refusal",
    [
        OSError(errno.ENOSPC, "No space left on device"),  # a value file
        sqlite3.OperationalError("database or disk is full"),  # a row
    ],
    ids=["file", "row"],
)
def test_a_write_the_full_disk_refused_leaves_no_older_value(
    make, monkeypatch, refusal
):
    tier = make(shards=1)
    tier.set("k", rec("old"))
    tier.set("other", rec("kept"))

    def full(*args, **kwargs):
        raise refusal

    monkeypatch.setattr(diskcache.Cache, "set", full)
    with pytest.raises(TierUnavailable) as info:
        tier.set("k", rec("new"))
    assert (info.value.kind, info.value.alive) == ("disk_full", True)
    assert tier.get("k") is MISSING  # the replaced value is not served again
    assert tier.get_value("other", None) == "kept"  # reads continue
