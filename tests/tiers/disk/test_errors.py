"""What the disk tier's failures become: a locked, unwritable or corrupt
directory (docs/faults.rst #28, #30, #31) as ``TierUnavailable``, and the
quarantine of corrupt shards.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time

import diskcache
import pytest

from tests.tiers.disk.support import rec, shard_db
from tiered_cache.exceptions import TierUnavailable
from tiered_cache.sentinels import MISSING

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
    tier = make(blocker / "l3")
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
