"""``DiskTier`` against the tier contract: storage, expiry on the backend's clock,
raw ints, touch, clear and keys, and its configuration.
"""

from __future__ import annotations

import importlib.util
import sqlite3
import threading

import diskcache
import pytest
from django.core.exceptions import ImproperlyConfigured

from tests.tiers.disk.support import EXECUTED, Poison, plain, rec
from tiered_cache.envelope import decode, encode
from tiered_cache.exceptions import TierUnavailable
from tiered_cache.sentinels import MISSING
from tiered_cache.serializers import PICKLE
from tiered_cache.tiers.disk import DiskTier

HAS_ZSTD = importlib.util.find_spec("zstandard") is not None

# -- the contract ------------------------------------------------------------------


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
    assert plain(location).get("k") == encode(record, "k")


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


def test_incr_on_an_unreadable_payload_is_a_rejected_miss(make, location):
    tier = make(shards=1, COMPRESS_MIN_BYTES=None)
    plain(location).set("n", encode(rec(2**7000), "n")[:-7])  # an envelope, truncated
    with pytest.raises(ValueError, match="not found"):
        tier.incr("n", 1)
    assert tier.stats.rejected == 1
    assert "n" not in plain(location)


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


# -- touch -------------------------------------------------------------------------


def test_touch_rewrites_the_envelope_expiry(make, location, clock):
    tier = make(shards=1)
    record = rec("v", clock() + 10)
    tier.set("k", record)
    assert tier.touch("k", clock() + 100)
    assert decode(plain(location).get("k"), "k", PICKLE).expires_at == clock() + 100
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


# -- clear -------------------------------------------------------------------------


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


def test_clear_deletes_in_batches(make, location):
    tier = make(shards=1)
    other = plain(location)
    with other.transact():
        for i in range(600):
            other.set(f"ns:{i}", b"v")
    other.set("keep", b"v")
    assert tier.clear("ns:") == 600
    assert list(other) == ["keep"]


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


# -- keys --------------------------------------------------------------------------


def test_keys_lists_the_namespace_across_shards(make, clock):
    tier = make()
    names = {f"ns1:{i}" for i in range(20)}
    for key in names:
        tier.set(key, rec(key))
    tier.set("ns1:n", rec(3))  # a raw int
    for key in ("ns2:a", "ns1", "a*1", "ab"):
        tier.set(key, rec(key))
    tier.set("ns1:gone", rec("v", clock() + 1))
    clock.advance(1)
    store = tier.files.open()
    assert len({store.shard(key) for key in names}) > 1
    listed = tier.keys("ns1:")
    assert len(listed) == len(set(listed))
    assert set(listed) - {"ns1:gone"} == names | {"ns1:n"}  # expired: either way
    assert tier.keys("a*") == ["a*1"]  # literal, not a pattern
    assert tier.keys("zzz") == []
    assert set(tier.keys("")) >= names | {"ns2:a", "ns1", "a*1", "ab"}


def test_keys_never_unpickle_foreign_keys_or_values(make, location):
    tier = make(shards=1)
    tier.set("ns:a", rec("a"))
    other = plain(location)
    other.set(Poison(), b"value under a pickled key")
    other.set(b"ns:bytes", b"a bytes key")
    other.set(7, b"an int key")
    other.set("ns:foreign", Poison())  # a str key: listed, its value never read
    assert tier.keys("ns:") == ["ns:a", "ns:foreign"]
    assert tier.keys("") == ["ns:a", "ns:foreign"]
    assert EXECUTED == []
    assert len(other) == 5  # listing changed nothing


def test_keys_map_an_error_met_while_listing(make, monkeypatch):
    tier = make(shards=1)
    tier.set("ns:a", rec("a"))

    def failing(self, reverse=False):
        yield "ns:a"
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(diskcache.Cache, "iterkeys", failing)
    with pytest.raises(TierUnavailable) as info:
        tier.keys("ns:")
    assert info.value.operation == "keys" and info.value.kind == "io"
    assert isinstance(info.value.__cause__, sqlite3.OperationalError)


def test_keys_of_a_directory_that_does_not_open_raise_tier_unavailable(make, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    with pytest.raises(TierUnavailable):
        make(blocker / "l3").keys("")


def test_a_cache_on_l3_alone_iterates_its_keys(make_cache, location):
    spec = {
        "NAME": "l3",
        "BACKEND": "diskcache.DjangoCache",
        "LOCATION": str(location),
        "OPTIONS": {"OPEN_TIMEOUT": 10.0},
    }
    cache = make_cache([spec])
    cache.set_many({"a": 1, "b": "two"})
    other = make_cache([spec])  # same directory, other KEY_PREFIX
    other.set("c", 3)
    assert sorted(cache._expire_info) == sorted(
        cache.stored_key(key) for key in ("a", "b")
    )


# -- configuration -----------------------------------------------------------------


def test_defaults_are_explicit(make):
    tier = make()
    assert tier._kwargs == {
        "shards": 8,
        "timeout": 0.05,
        "size_limit": 2**30,
        "cull_limit": 10,
        "sqlite_cache_size": 1024,
        "sqlite_mmap_size": 2 * 2**20,
    }
    assert tier.compress_min_bytes == 1024 and tier.compressor == "zlib"
    tier.set("k", rec("v"))
    shard = tier.files.open().shards[0]
    assert shard.timeout == 0.05
    assert shard.size_limit == 2**30 / 8  # as FanoutCache
    # SQLite's memory per shard and process is bounded (bench/memory.py)
    assert shard._sql("PRAGMA cache_size").fetchone()[0] == 1024
    assert shard._sql("PRAGMA mmap_size").fetchone()[0] == 2 * 2**20


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
        ({"size_limit": [1]}, r"size_limit.] must be an integer >= 0"),
        ({"sqlite_journal_mode": [1]}, "plain values"),
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
