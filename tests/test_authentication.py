"""Poisoned values planted in a real Redis and in diskcache rows (faults.rst #33).

A hostile writer of the shared tiers plants a pickle whose unpickling would
run code (``Poison``: it appends to ``EXECUTED``), raw and spliced after the
first *n* bytes of a record this deployment signed, for every *n* up to 64
(the header is ``HEADER_SIZE`` = 53 bytes, so the splices cut it everywhere
and then the payload). Every read through TieredCache must be a miss, with no
exception, the payload never run, the rejection counted (``poison_rejected``)
and nothing promoted. A record signed for another key is a miss too; one
signed with a SECRET_KEY_FALLBACKS key is a hit.
"""

from __future__ import annotations

import logging
import pickle

import pytest
import redis
from django.test import override_settings

from tests.matrix import L1, l3, real_l2
from tests.tiers.disk.support import EXECUTED, Poison, plain
from tiered_cache.envelope import HEADER_SIZE
from tiered_cache.tiers import base

pytestmark = pytest.mark.redis_server

EVIL = pickle.dumps(Poison("x" * 40), pickle.HIGHEST_PROTOCOL)
SPLICES = range(65)  # n = 0 .. 64


@pytest.fixture(autouse=True)
def _nothing_ran():
    EXECUTED.clear()
    yield
    assert EXECUTED == [], "a planted pickle was unpickled"


@pytest.fixture
def raw(redis_url, clean_redis):
    """A bytes client on the test's (emptied) Redis database."""
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


def one_shard_l3(tmp_path):
    spec = l3(str(tmp_path / "l3"))
    spec["OPTIONS"] = {**spec["OPTIONS"], "shards": 1}
    return spec


def forget_l1(cache, key):
    cache.tier("l1").delete(cache.stored_key(key))


def reads_are_misses(cache, key):
    """Every read of ``key`` is a miss, without an exception."""
    forget_l1(cache, key)
    assert cache.get(key) is None
    assert cache.get(key, "dflt") == "dflt"
    assert cache.get_many([key]) == {}
    assert cache.has_key(key) is False
    assert cache.touch(key, 30) is False


def test_pickles_planted_in_redis_never_run(make_cache, redis_url, raw):
    cache = make_cache([L1, real_l2(redis_url)])
    planted = 0
    for n in [None, *SPLICES]:
        key = f"k{n}"
        cache.set(key, {"legit": n, "pad": "p" * 40})
        final = cache.stored_key(key)
        legit = raw.get(final)
        assert len(legit) > 64  # the splice points all fall inside it
        raw.set(final, EVIL if n is None else legit[:n] + EVIL)
        planted += 1
        reads_are_misses(cache, key)
    stats = cache.stats()["l2"]
    assert stats["poison_rejected"] >= planted
    assert stats["hits"] == 0


def test_rows_planted_in_diskcache_never_run(make_cache, tmp_path):
    cache = make_cache([L1, one_shard_l3(tmp_path)])
    rows = plain(tmp_path / "l3")
    planted = 0
    for n in [None, *SPLICES]:
        key = f"k{n}"
        cache.set(key, {"legit": n, "pad": "p" * 40})
        final = cache.stored_key(key)
        legit = rows.get(final)
        assert type(legit) is bytes and len(legit) > 64
        rows.set(final, EVIL if n is None else legit[:n] + EVIL)
        planted += 1
        reads_are_misses(cache, key)
    # diskcache's own pickle mode: the row is refused, never unpickled.
    cache.set("mode", "legit")
    rows.set(cache.stored_key("mode"), Poison())
    reads_are_misses(cache, "mode")
    stats = cache.stats()["l3"]
    assert stats["poison_rejected"] >= planted + 1
    assert stats["hits"] == 0


def test_a_poisoned_l3_row_is_never_promoted(make_cache, redis_url, raw, tmp_path):
    cache = make_cache([L1, real_l2(redis_url), one_shard_l3(tmp_path)])
    rows = plain(tmp_path / "l3")
    cache.set("k", "legit")
    cache.tier("l3").drain()  # L3's copy is written behind the call
    final = cache.stored_key("k")
    legit = rows.get(final)
    for n in SPLICES:
        rows.set(final, legit[:n] + EVIL)
        raw.delete(final)  # only L3 holds it
        forget_l1(cache, "k")
        assert cache.get("k") is None
        assert raw.exists(final) == 0  # not copied into Redis
    assert cache.stats()["l3"]["promotions"] == 0


def test_a_record_copied_from_another_key_is_a_miss(
    make_cache, redis_url, raw, tmp_path
):
    cache = make_cache([L1, real_l2(redis_url), one_shard_l3(tmp_path)])
    rows = plain(tmp_path / "l3")
    cache.set("admin_session", "secret")
    cache.set("guest_session", "guest")
    cache.tier("l3").drain()
    admin, guest = cache.stored_key("admin_session"), cache.stored_key("guest_session")
    raw.set(guest, raw.get(admin))
    rows.set(guest, rows.get(admin))
    forget_l1(cache, "guest_session")
    assert cache.get("guest_session") is None
    assert cache.stats()["l2"]["poison_rejected"] == 1
    assert cache.stats()["l3"]["poison_rejected"] == 1
    assert cache.get("admin_session") == "secret"  # the original still verifies


def test_rejections_are_logged_once_per_burst(make_cache, redis_url, raw, caplog):
    cache = make_cache([L1, real_l2(redis_url)])
    base._throttle.reset()  # earlier tests' lines fall in the same interval
    for i in range(20):
        raw.set(cache.stored_key(f"p{i}"), EVIL)
    with caplog.at_level(logging.WARNING):
        for i in range(20):
            assert cache.get(f"p{i}") is None
    lines = [r for r in caplog.records if "not signed for" in r.getMessage()]
    assert len(lines) == 1
    assert cache.stats()["l2"]["poison_rejected"] == 20


def test_secret_key_rotation_keeps_values_readable(
    make_cache, redis_url, raw, tmp_path
):
    cache = make_cache([L1, real_l2(redis_url), one_shard_l3(tmp_path)])
    with override_settings(SECRET_KEY="old-secret-0123456789"):
        cache.set("k", "written before the rotation")
        cache.set("k2", "never rewritten")
        cache.set("n", 2**70)  # big ints are envelopes too
    with override_settings(
        SECRET_KEY="new-secret-0123456789",
        SECRET_KEY_FALLBACKS=["old-secret-0123456789"],
    ):
        forget_l1(cache, "k")
        assert cache.get("k") == "written before the rotation"
        assert cache.incr("n", 1) == 2**70 + 1
        assert cache.touch("k", 100)  # re-signs the header with the key that verified
        forget_l1(cache, "k")
        assert cache.get("k") == "written before the rotation"
    with override_settings(SECRET_KEY="new-secret-0123456789"):  # old key dropped
        forget_l1(cache, "k2")
        assert cache.get("k2") is None
    assert cache.stats()["l2"]["poison_rejected"] >= 1


def test_raw_integers_stay_raw_and_readable(make_cache, redis_url, raw):
    cache = make_cache([L1, real_l2(redis_url)])
    cache.set("n", 5)
    assert raw.get(cache.stored_key("n")) == b"5"  # not executable
    assert cache.incr("n", 2) == 7
    forget_l1(cache, "n")
    assert cache.get("n") == 7


def test_header_size_leaves_room_for_every_splice():
    assert max(SPLICES) > HEADER_SIZE  # the splices also cut the payload
