"""Hostile values and timeouts through a real redis-server (docs/faults.rst E35, E36).

Every cache here is L1 + L2 (a redis-server the tests started) + L3, with the
default size caps, and a second cache with an L1 of its own reads what the
first stored from L2 and L3, as another process would.
"""

from __future__ import annotations

import math
import sys

import pytest

from tests.flights import l1
from tests.matrix import l3, real_l2
from tests.support.redis_servers import wait_until
from tiered_cache.envelope import materialize
from tiered_cache.sentinels import MISSING
from tiered_cache.tiers.optional import stream_id

pytestmark = pytest.mark.redis_server

MB = 2**20


@pytest.fixture
def pair(make_cache, redis_server, tmp_path):
    """Two caches sharing L2 and L3, each with its own L1 ("two processes")."""
    # Generous socket timeouts: these tests pin what is stored, not time, and
    # a loaded machine can miss the default 0.1 s (then L2 is skipped).
    l2 = real_l2(redis_server.url(9))
    l2["OPTIONS"] = {"SOCKET_TIMEOUT": 5, "SOCKET_CONNECT_TIMEOUT": 5}
    shared = [l2, l3(str(tmp_path / "l3"))]
    here = make_cache([l1(0), *shared], KEY_PREFIX="hostile")
    there = make_cache([l1(1), *shared], KEY_PREFIX="hostile")
    yield here, there
    here.clear()


def held(cache, key) -> dict[str, bool]:
    """Whether L1 and L2 hold ``key`` (read raw, without promotion).

    (L3 below an L2 holds only copies, served when L2 cannot answer.)
    """
    stored = cache.stored_key(key)
    return {name: cache.tier(name).get(stored) is not MISSING for name in ("l1", "l2")}


def heard(cache) -> None:
    """Wait until ``cache``'s bus listener has read every message sent so far."""
    bus = cache._chain.bus
    newest = stream_id(bus.stream.state().last_id or "0-0")
    wait_until(
        lambda: stream_id(bus.last_id or "0-0") >= newest,
        timeout=5,
        what="the bus read",
    )


# -- E35: values -------------------------------------------------------------------


def test_a_fifty_mb_value_is_stored_nowhere_and_drops_the_old_one(pair):
    here, there = pair
    here.set("big", "old")
    assert there.get("big") == "old"  # a copy in the other L1 too
    assert here.set("big", b"x" * (50 * MB)) is None  # returns, raises nothing
    assert held(here, "big") == {"l1": False, "l2": False}
    assert here.get("big") is None
    heard(there)
    assert there.get("big") is None  # its L1 copy was dropped (bus)
    assert here.stats()["l2"]["refused"] >= 1 and here.stats()["l3"]["refused"] >= 1
    assert here.set_many({"big": b"x" * (50 * MB), "small": 1}) == ["big"]
    heard(there)
    assert there.get("small") == 1 and there.get("big") is None


def test_nan_is_stored_and_read_back_from_every_tier(pair, make_cache, tmp_path):
    here, there = pair
    here.set("nan", math.nan)
    here.set("nans", [math.nan, {"x": -math.inf}])
    assert math.isnan(here.get("nan"))  # L1
    assert math.isnan(there.get("nan"))  # from L2, promoted into its L1
    assert math.isnan(materialize(here.tier("l2").get(here.stored_key("nan"))))
    nans = there.get("nans")
    assert math.isnan(nans[0]) and nans[1] == {"x": -math.inf}
    # L3 as the authority (no L2): read back by another "process".
    disk = [l3(str(tmp_path / "alone"))]
    make_cache([l1(2), *disk], KEY_PREFIX="nan").set("nan", math.nan)
    assert math.isnan(make_cache([l1(3), *disk], KEY_PREFIX="nan").get("nan"))


def _nested(depth: int) -> list:
    value: list = []
    for _ in range(depth):
        value = [value]
    return value


def test_too_deep_a_structure_raises_at_set_and_changes_nothing(pair):
    """As in Django's backends: a value that cannot be pickled raises before
    anything is written, and the cache keeps what it held (the caller knows
    the write failed; nothing is lost)."""
    here, there = pair
    here.set("deep", "old")
    assert there.get("deep") == "old"
    for call in (
        lambda: here.set("deep", _nested(sys.getrecursionlimit() * 50)),
        lambda: here.set_many({"deep": _nested(sys.getrecursionlimit() * 50)}),
        lambda: here.add("deep", _nested(sys.getrecursionlimit() * 50)),
    ):
        with pytest.raises(RecursionError):
            call()
        assert here.get("deep") == "old" and there.get("deep") == "old"


# -- E36: timeouts -----------------------------------------------------------------


def test_nan_timeout_raises_value_error_and_stores_nothing(pair):
    here, _ = pair
    for call in (
        lambda: here.set("k", "v", math.nan),
        lambda: here.add("k", "v", math.nan),
        lambda: here.set_many({"k": "v"}, math.nan),
        lambda: here.touch("k", math.nan),
        lambda: here.get_or_set("k", "v", math.nan),
    ):
        with pytest.raises(ValueError, match="NaN"):
            call()
    assert held(here, "k") == {"l1": False, "l2": False}


@pytest.mark.parametrize(
    "timeout",
    [math.inf, 10**12, 10**13, 10**16, 2**63, 1e300, sys.float_info.max],
    ids=["inf", "1e12", "1e13", "1e16", "2**63", "1e300", "float-max"],
)
def test_lifetimes_beyond_redis_expiry_range_never_expire_early(
    pair, clock, redis_server, timeout
):
    here, there = pair
    here.set("s", "v", timeout)
    here.set("i", 7, timeout)  # a raw integer in Redis (PXAT, not an envelope)
    assert here.incr("i") == 8
    here.set_many({"m": "v"}, timeout)
    assert here.add("a", "v", timeout) is True
    here.set("t", "v", 1)
    assert here.touch("t", timeout) is True
    assert held(here, "s") == {"l1": True, "l2": True}
    raw = redis_server.client(9)
    try:
        for key in ("s", "i", "m", "a", "t"):
            # No expiry, or one in Redis' range: never a refused command.
            pttl = raw.pttl(here.stored_key(key))
            assert pttl == -1 or pttl > 10**12, (key, pttl)
    finally:
        raw.close()
    clock.advance(10**9)  # 31 years later, on the caches' clock
    heard(there)
    for cache in (here, there):
        assert [cache.get(k) for k in ("s", "i", "m", "a", "t")] == [
            "v",
            8,
            "v",
            "v",
            "v",
        ]
