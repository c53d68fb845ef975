"""Fixtures of the disk tier tests.

Expiry is driven by a fake clock far from ``time.time()``: the tier must never
mix the two. Nothing sleeps.
"""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

import pytest

from tests.clock import FakeClock
from tests.tiers.disk import support
from tests.tiers.disk.support import EXECUTED, shard_db
from tiered_cache.exceptions import TierUnavailable
from tiered_cache.tiers.disk import DiskTier
from tiered_cache.tiers.disk.store import _handles


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(1_000_000.0)  # decades behind time.time()


@pytest.fixture
def location(tmp_path: Path) -> Path:
    return tmp_path / "l3"


@pytest.fixture
def make(location: Path, clock: FakeClock):
    def factory(
        directory: Path | None = None, *, opened: bool = True, **options
    ) -> DiskTier:
        """Build a tier; ``opened``: wait for its open (reads do not wait)."""
        options.setdefault("OPEN_TIMEOUT", 10.0)  # slow CI disks: not under test
        where = str(directory or location)
        params = {"BACKEND": "diskcache.DjangoCache", "LOCATION": where}
        tier = DiskTier(where, {**params, "OPTIONS": options}, name="l3", clock=clock)
        if opened:
            with contextlib.suppress(TierUnavailable):
                support.opened(tier)
        return tier

    return factory


@pytest.fixture(autouse=True)
def _forget_handles(tmp_path: Path):
    """Close this test's shared handles so open files do not pile up."""
    EXECUTED.clear()
    yield
    for key, handle in list(_handles.items()):
        if key[0].startswith(str(tmp_path)):
            if handle.done.wait(5) and handle.store is not None:
                for shard in handle.store.shards:
                    shard.close()
                handle.store.marked.wait(5)
                if handle.store.marks is not None:
                    handle.store.marks.close()
            _handles.discard(key)


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
