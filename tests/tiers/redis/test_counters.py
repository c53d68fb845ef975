"""RedisTier.incr: INCRBY on raw integers, judged on the backend's clock."""

from __future__ import annotations

import pytest

from tests.tiers.redis.common import Setup, needs_lua, rec


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
    with pytest.raises(TypeError, match="not an integer"):
        setup.tier.incr("s", 1)
    setup.raw.rpush("list", "x")
    with pytest.raises(TypeError):
        setup.tier.incr("list", 1)
