"""Writes in bulk and writes from many threads: ``set_many``/``delete_many`` in
one transaction per shard and batch, one writer per shard and process (busy
is back-pressure, not a fault), and the size cap on values (docs/faults.rst
#28, #35).
"""

from __future__ import annotations

import logging
import threading

import pytest

from tests.tiers.disk.support import rec
from tiered_cache.exceptions import TierUnavailable
from tiered_cache.sentinels import MISSING
from tiered_cache.tiers.disk.batches import BATCH as _BATCH


def _count_transactions(tier) -> list[str]:
    """Record the BEGINs this thread's connections to the shards run."""
    begun: list[str] = []
    for shard in tier.files.open().shards:
        shard._con.set_trace_callback(  # this thread's connection
            lambda sql: begun.append(sql) if sql.startswith("BEGIN") else None
        )
    return begun


def test_set_many_takes_one_transaction_per_shard_and_batch(make, clock):
    tier = make(shards=2)
    records = {f"k{i}": rec(f"v{i}") for i in range(1000)}
    records["n"] = rec(5)  # a raw int
    records["gone"] = rec("x", clock() - 1)  # already expired: deleted
    tier.set("gone", rec("old"))
    begun = _count_transactions(tier)
    tier.set_many(records)
    assert 2 <= len(begun) <= 2 * (1002 // _BATCH + 1)  # not one per key
    assert tier.get_value("k999", None) == "v999"
    assert tier.incr("n", 1) == 6
    assert tier.get("gone") is MISSING
    begun.clear()
    tier.delete_many([*records, "never-set"])
    assert 2 <= len(begun) <= 2 * (1003 // _BATCH + 1)
    assert tier.keys("") == []


def test_a_failed_batch_raises_tier_unavailable(make, exclusive_lock):
    tier = make(shards=1)
    tier.set("k", rec("v"))
    exclusive_lock()  # another process holds the shard's write lock
    with pytest.raises(TierUnavailable) as info:
        tier.set_many({"a": rec(1), "b": rec(2)})
    assert info.value.kind == "locked" and info.value.operation == "set_many"
    with pytest.raises(TierUnavailable):
        tier.delete_many(["k"])
    assert tier.get_value("k", None) == "v"


def test_a_write_queued_too_long_behind_its_process_is_busy_not_a_fault(
    make_cache, location
):
    cache = make_cache([_L1, _l3(location)])
    cache.set("k", "v")
    tier = cache.tier("l3")
    store = tier.files.open()
    writers = store.writers
    for lock in writers:  # every shard's writer is busy in this process
        lock.acquire()
    try:
        for i in range(10):
            cache.set(f"w{i}", i)  # each waits queue_wait, then skips L3
    finally:
        for lock in writers:
            lock.release()
    assert (tier.stats.busy, tier.stats.errors) == (10, 0)
    assert cache.breaker_state("l3") == "closed"  # back-pressure is no fault
    writer = writers[store.hash("x") % store.count]
    with writer, pytest.raises(TierUnavailable) as info:
        tier.set("x", rec(1))
    assert (info.value.kind, info.value.busy) == ("busy", True)
    cache.tier("l1").delete(cache.stored_key("k"))
    assert cache.get("k") == "v"  # read from L3


def test_fifty_threads_of_one_process_never_trip_the_breaker(
    make_cache, location, caplog
):
    cache_of = [make_cache([_L1, _l3(location)]) for _ in range(50)]
    barrier = threading.Barrier(50)
    errors: list[BaseException] = []

    def work(index: int) -> None:
        cache = cache_of[index]
        try:
            barrier.wait()
            for i in range(40):
                cache.set(f"t{index}:{i % 5}", i)
                cache.delete(f"t{index}:{(i + 2) % 5}")
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    with caplog.at_level(logging.WARNING):
        threads = [threading.Thread(target=work, args=(n,)) for n in range(50)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert errors == []
    assert cache_of[0].breaker_state("l3") == "closed"
    assert cache_of[0].tier("l3").stats.skipped == 0
    lines = [r.getMessage() for r in caplog.records]
    assert not [line for line in lines if "[locked]" in line or "breaker" in line]


def test_values_over_sixteen_mib_skip_l3_by_default(make, make_cache, location):
    assert make().max_value_bytes == 16 * 2**20
    assert make(MAX_VALUE_BYTES=None).accepts(rec(b"x" * (17 * 2**20)))
    cache = make_cache([_L1, _l3(location)])
    cache.set("big", b"x" * (17 * 2**20))
    assert cache.tier("l3").stats.refused == 1
    assert list(location.rglob("*.val")) == []
    cache.set("small", b"x" * 2**20)
    assert cache.tier("l3").get(cache.stored_key("small")) is not MISSING


_L1 = {"NAME": "l1", "BACKEND": "tiered_cache.tiers.MemoryTier"}


def _l3(location) -> dict:
    return {
        "NAME": "l3",
        "BACKEND": "diskcache.DjangoCache",
        "LOCATION": str(location),
        "OPTIONS": {"OPEN_TIMEOUT": 10.0},
    }
