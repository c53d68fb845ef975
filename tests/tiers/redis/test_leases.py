"""Leases on the Redis tier: SET NX PX, compare-and-delete, fail-open errors.

Run on fakeredis and on a real redis-server (the ``setup`` fixture), and once
on a real cluster. Expiry is waited for by polling with a deadline, never by
a fixed sleep.
"""

from __future__ import annotations

import time

import pytest

from tests.support.redis_servers import find_free_port, wait_until
from tests.tiers.redis.common import FAST, Setup, make_tier, needs_lua
from tiered_cache.exceptions import TierUnavailable
from tiered_cache.tiers.base import BaseTier
from tiered_cache.tiers.memory import MemoryTier
from tiered_cache.tiers.redis import RedisClusterTier, RedisTier
from tiered_cache.tiers.redis.errors import error_kind

LEASE = "ns:#lease:0123"


def test_only_the_redis_tiers_hold_leases():
    assert RedisTier.holds_leases and RedisClusterTier.holds_leases
    assert not BaseTier.holds_leases and not MemoryTier.holds_leases


def test_lease_is_held_once_until_its_holder_releases_it(setup: Setup):
    needs_lua(setup)
    t, raw = setup.tier, setup.raw
    token = t.acquire_lease(LEASE, 5)
    assert isinstance(token, str) and token
    assert t.acquire_lease(LEASE, 5) is None
    assert 0 < raw.pttl(LEASE) <= 5000
    t.release_lease(LEASE, "not-the-holder")
    assert raw.exists(LEASE) == 1  # compare-and-delete: not ours, kept
    t.release_lease(LEASE, token)
    assert raw.exists(LEASE) == 0
    again = t.acquire_lease(LEASE, 5)
    assert again not in (None, token)
    t.release_lease(LEASE, again)


def test_lease_ends_by_itself_and_a_late_release_keeps_the_next_holders(
    setup: Setup,
):
    needs_lua(setup)
    t, raw = setup.tier, setup.raw
    first = t.acquire_lease(LEASE, 0.05)
    assert first is not None
    wait_until(lambda: raw.exists(LEASE) == 0, timeout=5, what="lease expiry")
    second = t.acquire_lease(LEASE, 5)
    assert second is not None
    t.release_lease(LEASE, first)  # the first holder comes back too late
    assert raw.get(LEASE).decode() == second
    t.release_lease(LEASE, second)


def test_lease_time_is_real_time_not_the_injected_clock(setup: Setup):
    setup.clock.advance(10_000)  # the backend's clock says nothing of leases
    t = setup.tier
    assert t.acquire_lease(LEASE, 3) is not None
    assert 0 < setup.raw.pttl(LEASE) <= 3000


def test_lease_of_no_time_is_a_programming_error(setup: Setup):
    for seconds in (0, -1, float("nan")):
        with pytest.raises(ValueError):
            setup.tier.acquire_lease(LEASE, seconds)


def test_lease_on_a_refused_port_is_unavailable_at_once(clock):
    t = make_tier(f"redis://127.0.0.1:{find_free_port()}/0", clock)
    for call in (
        lambda: t.acquire_lease(LEASE, 5),
        lambda: t.release_lease(LEASE, "x"),
    ):
        started = time.monotonic()
        with pytest.raises(TierUnavailable) as info:
            call()
        assert time.monotonic() - started < FAST
        assert error_kind(info.value) == "connection"


@pytest.mark.redis_server
def test_lease_on_a_hung_server_is_unavailable_within_the_timeout(own_server, clock):
    t = make_tier(own_server.url(), clock)
    assert t.acquire_lease("warm", 5) is not None  # a pooled connection
    own_server.pause()
    try:
        started = time.monotonic()
        with pytest.raises(TierUnavailable) as info:
            t.acquire_lease(LEASE, 5)
        assert time.monotonic() - started < FAST
        assert error_kind(info.value) == "timeout"
    finally:
        own_server.resume()


@pytest.mark.redis_server
def test_cluster_leases_go_to_the_slot_owner(redis_cluster, clock):
    t = RedisClusterTier(
        ",".join(redis_cluster.startup_urls), {}, name="l2", clock=clock
    )
    keys = [f"ns:#lease:{i}" for i in range(20)]
    tokens = {key: t.acquire_lease(key, 5) for key in keys}
    assert all(tokens.values())
    assert all(t.acquire_lease(key, 5) is None for key in keys)
    for key, token in tokens.items():
        t.release_lease(key, token)
    assert all(t.acquire_lease(key, 0.5) is not None for key in keys)
    t.clear("ns:")
