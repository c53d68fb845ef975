"""RedisTier.incr: INCRBY in 64 bits, an atomic Python step past them.

Counting goes on past 2**63 and back, at the tier and through the backend
(where an overflow used to count as an L2 outage: the value moved to L1 and
L2's copy was deleted); what is not an integer is a clean ``TypeError``.
"""

from __future__ import annotations

import math
import pickle

import pytest
import redis

from tests.matrix import L1, real_l2
from tests.tiers.redis.common import Setup, needs_lua, rec
from tiered_cache.envelope import MAGIC, decode, materialize
from tiered_cache.exceptions import TierUnavailable
from tiered_cache.serializers import PICKLE
from tiered_cache.tiers.redis import error_kind

BIG = 2**63  # one past the largest integer Redis can INCRBY


def test_raw_integers_incr_decr_keep_ttl(setup: Setup):
    needs_lua(setup)
    t, raw, clock = setup.tier, setup.raw, setup.clock
    t.set("n", rec(5, clock() + 100))
    assert raw.get("n") == b"5"
    assert t.incr("n", 3) == 8
    assert t.incr("n", -10) == -2
    record = t.get("n")
    assert record.value == -2 and record.payload is None
    assert record.expires_at == pytest.approx(clock() + 100, abs=1)
    assert 0 < raw.pttl("n") <= 100_000
    assert t.get_many(["n"])["n"].value == -2


def test_incr_on_missing_raises_value_error_and_creates_nothing(setup: Setup):
    needs_lua(setup)
    with pytest.raises(ValueError):
        setup.tier.incr("missing", 1)
    assert not setup.raw.exists("missing")
    setup.tier.set("old", rec("s", setup.clock() + 1))
    setup.clock.advance(2)
    with pytest.raises(ValueError):
        setup.tier.incr("old", 1)  # dead on our clock, though Redis still has it


def test_incr_on_a_non_integer_raises_type_error(setup: Setup):
    needs_lua(setup)
    setup.tier.set("s", rec("text"))
    setup.raw.rpush("list", "x")
    setup.raw.set("foreign", b"not ours")
    for key in ("s", "list", "foreign"):
        with pytest.raises(
            TypeError, match="the stored value is not an integer"
        ) as info:
            setup.tier.incr(key, 1)
        # Our words, not the Lua script's error reply.
        assert "script" not in str(info.value) and "range" not in str(info.value)
        context = info.value.__cause__ or info.value.__context__
        assert context is None or "script" not in str(context)
    assert materialize(setup.tier.get("s")) == "text"
    assert setup.raw.get("foreign") == b"not ours"


# -- past 64 bits ---------------------------------------------------------------


def test_incr_counts_past_64_bits_and_back(setup: Setup):
    needs_lua(setup)
    t, raw, clock = setup.tier, setup.raw, setup.clock
    expires_at = clock() + 100
    t.set("n", rec(BIG - 1, expires_at))
    assert raw.get("n") == str(BIG - 1).encode()  # raw, INCRBY's to add to
    assert t.incr("n", 1) == BIG
    stored = raw.get("n")
    assert stored.startswith(MAGIC)  # an envelope holding the pickled big int
    assert pickle.loads(decode(stored, "n", PICKLE).payload) == BIG
    record = t.get("n")
    assert materialize(record) == BIG
    assert record.expires_at == pytest.approx(expires_at, abs=0.001)  # kept
    assert t.incr("n", 1) == BIG + 1
    assert t.incr("n", -(BIG + 1)) == 0  # a delta INCRBY cannot take either
    assert raw.get("n") == b"0"  # back in 64 bits: raw again
    assert raw.pexpiretime("n") == math.floor(expires_at * 1000)  # still absolute
    assert t.incr("n", 5) == 5  # and INCRBY again
    assert t.incr("n", -(BIG * 4)) == 5 - BIG * 4  # overflow downwards
    assert materialize(t.get_many(["n"])["n"]) == 5 - BIG * 4


def test_incr_past_64_bits_on_a_dead_or_broken_envelope(setup: Setup):
    needs_lua(setup)
    t, raw, clock = setup.tier, setup.raw, setup.clock
    t.set("old", rec(BIG, clock() + 1))
    clock.advance(2)
    with pytest.raises(ValueError, match="not found"):
        t.incr("old", 1)  # dead on our clock, still in Redis
    dead = t.encode("no-ttl", rec(BIG, clock() - 1))
    raw.set("no-ttl", dead)  # only the header knows it is dead
    with pytest.raises(ValueError, match="not found"):
        t.incr("no-ttl", 1)
    assert raw.get("no-ttl") == dead  # left alone
    t.set("bad", rec(BIG))
    raw.setrange("bad", len(raw.get("bad")) - 1, b"\x00")  # pickle's STOP gone
    with pytest.raises(ValueError, match="not found"):
        t.incr("bad", 1)
    assert t.stats.rejected == 1  # a rejected miss, as on get


def test_incr_past_64_bits_is_atomic(setup: Setup, monkeypatch):
    needs_lua(setup)
    t, raw = setup.tier, setup.raw
    t.set("n", rec(BIG))
    set_args = t._set_args
    raced = []

    def racing_writer(key, record, **kwargs):
        if not raced:  # another client adds 10 between our read and our write
            raced.append(1)
            raw.set("n", setup.tier.encode("n", rec(BIG + 10)))
        return set_args(key, record, **kwargs)

    monkeypatch.setattr(t, "_set_args", racing_writer)
    assert t.incr("n", 1) == BIG + 11  # the lost race was run again
    assert materialize(t.get("n")) == BIG + 11


def test_incr_that_keeps_losing_races_is_unavailable_not_wrong(
    setup: Setup, monkeypatch
):
    needs_lua(setup)
    t, raw = setup.tier, setup.raw
    t.set("n", rec(BIG))
    set_args = t._set_args

    def racing_writer(key, record, **kwargs):
        raw.set("n", setup.tier.encode("n", rec(BIG)))  # someone writes every time
        return set_args(key, record, **kwargs)

    monkeypatch.setattr(t, "_set_args", racing_writer)
    with pytest.raises(TierUnavailable) as info:
        t.incr("n", 1)
    assert isinstance(info.value.__cause__, redis.WatchError)
    assert error_kind(info.value) == "contention" and info.value.alive
    assert materialize(t.get("n")) == BIG  # nothing half-written


@pytest.mark.redis_server
def test_backend_incr_past_64_bits_stays_in_l2(make_cache, redis_url, clean_redis):
    cache = make_cache([L1, real_l2(redis_url)])
    cache.set("n", BIG - 1)
    assert cache.incr("n") == BIG
    assert cache.get("n") == BIG
    assert cache.incr("n") == BIG + 1
    assert cache.decr("n", BIG + 1) == 0
    assert cache.get("n") == 0
    assert cache.stats()["l2"]["errors"] == 0  # never an outage
    assert clean_redis.get(cache.stored_key("n")) == "0"  # L2 holds the count


@pytest.mark.redis_server
def test_backend_incr_on_text_is_a_clean_type_error(make_cache, redis_url, clean_redis):
    cache = make_cache([L1, real_l2(redis_url)])
    cache.set("s", "text")
    with pytest.raises(TypeError, match="the stored value is not an integer"):
        cache.incr("s")
    assert cache.get("s") == "text" and cache.stats()["l2"]["errors"] == 0
