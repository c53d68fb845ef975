"""COMPRESS_MIN_BYTES / COMPRESSOR as stored in a real Redis and in diskcache.

A payload is compressed only from the threshold on, and only kept compressed
when that made it smaller; the envelope flags (bits 0-1) say which. Read back
through the backend, each comes out as it went in.
"""

from __future__ import annotations

import os

import pytest
import redis

from tests.matrix import L1, l3, real_l2
from tests.tiers.disk.support import plain

FLAGS = 3 + 16 + 1  # magic, tag, version
HTML = "<li class='item'><a href='/p/1'>Product</a> 9.99</li>" * 40  # ~2 KB


def compressor_of(stored: bytes) -> int:
    return stored[FLAGS] & 3  # 0 none, 1 zlib, 2 zstd


def cases(threshold: int):
    return {
        "below": ("x" * (threshold // 2), 0),
        "compressible": (HTML, None),  # compressed, by the configured compressor
        "incompressible": (os.urandom(threshold * 4), 0),
    }


@pytest.fixture
def raw(redis_url, clean_redis):
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.mark.redis_server
@pytest.mark.parametrize(("compressor", "flag"), [("zlib", 1), ("zstd", 2)])
def test_redis_compresses_only_above_the_threshold_and_when_it_pays(
    make_cache, redis_url, raw, compressor, flag
):
    spec = real_l2(redis_url)
    spec["OPTIONS"] = {"COMPRESS_MIN_BYTES": 256, "COMPRESSOR": compressor}
    cache = make_cache([L1, spec])
    for name, (value, expected) in cases(256).items():
        cache.set(name, value)
        stored = raw.get(cache.stored_key(name))
        assert compressor_of(stored) == (flag if expected is None else expected), name
        if expected is None:
            assert len(stored) < len(value) / 3
        cache.tier("l1").delete(cache.stored_key(name))
        assert cache.get(name) == value


@pytest.mark.redis_server
def test_redis_does_not_compress_by_default(make_cache, redis_url, raw):
    cache = make_cache([L1, real_l2(redis_url)])
    cache.set("page", HTML)
    assert compressor_of(raw.get(cache.stored_key("page"))) == 0


@pytest.mark.parametrize("serializer", ["pickle", "json"])
def test_disk_compresses_from_1_kib_by_default(make_cache, tmp_path, serializer):
    spec = l3(str(tmp_path / "l3"))
    spec["OPTIONS"] = {**spec["OPTIONS"], "shards": 1}
    cache = make_cache([L1, spec], SERIALIZER=serializer)
    rows = plain(tmp_path / "l3")
    values = {"below": "x" * 900, "compressible": HTML}
    if serializer == "pickle":
        values["incompressible"] = os.urandom(4096)
    for name, value in values.items():
        cache.set(name, value)
        stored = rows.get(cache.stored_key(name))
        assert compressor_of(stored) == (1 if name == "compressible" else 0), name
        cache.tier("l1").delete(cache.stored_key(name))
        assert cache.get(name) == value


def test_disk_compression_off(make_cache, tmp_path):
    spec = l3(str(tmp_path / "l3"))
    spec["OPTIONS"] = {**spec["OPTIONS"], "shards": 1, "COMPRESS_MIN_BYTES": None}
    cache = make_cache([L1, spec])
    cache.set("page", HTML)
    assert compressor_of(plain(tmp_path / "l3").get(cache.stored_key("page"))) == 0
