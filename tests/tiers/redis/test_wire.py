"""What RedisTier stores: envelopes with PX, raw integers with PXAT.

The command builders and judges of ``wire`` take the time as an argument, so
most of this needs no server; the round trips run on fakeredis and on a real
redis-server (the ``setup`` fixture).
"""

from __future__ import annotations

import pytest

from tests.tiers.redis.common import Setup, needs_lua, rec
from tiered_cache.envelope import HEADER_SIZE, MAGIC, encode, retime
from tiered_cache.exceptions import UntrustedRecord
from tiered_cache.sentinels import MISSING
from tiered_cache.serializers import PICKLE
from tiered_cache.tiers.redis import glob_escape, wire

NOW = 1_000_000.0


def _never(key, record):  # pragma: no cover - the test fails if this runs
    raise AssertionError("an expired record must not be encoded")


def signed(key, record):
    """What ``RedisTier.encode`` does: sign ``record`` for ``key``."""
    return encode(record, key)


def test_set_args_px_for_envelopes_pxat_for_raw_ints():
    envelope = rec("v", NOW + 1.5)
    args = wire.set_args("k", envelope, signed, NOW, nx=False)
    assert args[:2] == ("SET", "k") and args[2].startswith(MAGIC)
    assert args[3:] == ("PX", 1500)
    raw_int = wire.set_args("n", rec(7, NOW + 1.5), signed, NOW, nx=True)
    assert raw_int == ("SET", "n", 7, "PXAT", 1_000_001_500, "NX")
    assert wire.set_args("n", rec(7), signed, NOW, nx=False) == ("SET", "n", 7)
    far = wire.set_args("n", rec(7, NOW + 10**13), signed, NOW, nx=False)
    assert far == ("SET", "n", 7)  # beyond what Redis accepts: no expiry there
    assert wire.set_args("k", rec("v", NOW), _never, NOW, nx=False) == ("DEL", "k")


def test_parse_and_judge_what_was_read():
    live = encode(rec("v", NOW + 1), "k")
    assert wire.parse("k", live, NOW, PICKLE).expires_at == NOW + 1
    assert wire.parse("k", live, NOW + 1, PICKLE) is MISSING  # dead on our clock
    assert wire.parse("k", b"-12", NOW, PICKLE) == -12
    for bad in (b"+12", b"012", b"text", MAGIC + b"\x01"):
        with pytest.raises(UntrustedRecord):
            wire.parse("k", bad, NOW, PICKLE)
    with pytest.raises(UntrustedRecord):  # signed for another key
        wire.parse("other", live, NOW, PICKLE)

    assert wire.int_record(5, -2, NOW) is MISSING
    assert wire.int_record(5, -1, NOW).expires_at is None
    assert wire.int_record(5, 1_000_001_000, NOW).expires_at == NOW + 1
    assert wire.int_record(5, 1_000_000_000, NOW) is MISSING

    head = live[:HEADER_SIZE]
    assert wire.state("k", head, NOW) is wire.LIVE
    assert wire.state("k", head, NOW + 1) is wire.DEAD
    assert wire.state("other", live, NOW, whole=True) is wire.BAD  # another key's
    assert wire.state("k", live, NOW, whole=True) is wire.LIVE
    forever = retime(live, None, "k")[:HEADER_SIZE]
    assert wire.state("k", forever, NOW + 10**9) is wire.LIVE
    assert wire.state("k", None, NOW) is wire.BAD  # not a string at all
    assert wire.state("k", b"", NOW) is wire.ABSENT
    assert wire.state("k", b"text", NOW) is wire.BAD
    assert wire.state("k", MAGIC + b"\x63" + b"\x00" * 60, NOW) is wire.BAD
    assert wire.state("k", b"5", NOW, -1) is wire.LIVE
    assert wire.state("k", b"5", NOW, -2) is wire.ABSENT
    assert wire.state("k", b"5", NOW, 1_000_000_000) is wire.DEAD


def test_glob_escape_matches_only_itself():
    assert glob_escape("a*b?[c]\\") == "a\\*b\\?\\[c\\]\\\\"


def test_raw_integers_expire_by_the_injected_clock_too(setup: Setup):
    needs_lua(setup)
    t, raw, clock = setup.tier, setup.raw, setup.clock
    expires_at = clock() + 10
    t.set("n", rec(1, expires_at))
    # No envelope to carry the expiry: Redis keeps it, absolute (PXAT).
    assert raw.pexpiretime("n") == pytest.approx(expires_at * 1000, abs=1)
    assert t.get("n").expires_at == pytest.approx(expires_at, abs=0.001)
    clock.advance(10.5)
    assert raw.exists("n")
    assert t.get("n") is MISSING and not t.has_key("n")
    assert t.get_many(["n"]) == {}
    with pytest.raises(ValueError):
        t.incr("n", 1)
    assert t.touch("n", clock() + 10) is False and t.delete("n") is False
    assert t.add("n", rec(2)) is True and t.get("n").value == 2
