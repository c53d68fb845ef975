"""Fixtures shared by the whole suite.

``make_cache`` builds a TieredCache from a list of tier specs with the session's
fake clock and a fresh KEY_PREFIX, so tests never see each other's keys even
though the tiers (like Django's per-thread backends) are shared by configuration.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.clock import FakeClock
from tests.matrix import CELLS

pytest_plugins = ["tests.support.fixtures"]

_SESSION_CLOCK = FakeClock()
_prefixes = itertools.count()


@pytest.fixture
def clock() -> Iterator[FakeClock]:
    """The fake clock every ``make_cache`` cache uses; reset to real time per test."""
    import time

    _SESSION_CLOCK.now = time.time()
    yield _SESSION_CLOCK


@pytest.fixture
def make_cache(clock: FakeClock) -> Iterator[Callable[..., Any]]:
    """Return a factory ``make_cache(tiers, **options)`` -> TieredCache."""
    from tiered_cache.backend import TieredCache

    built = []

    def factory(tiers: list[dict[str, Any]] | None, **options: Any) -> TieredCache:
        location = options.pop("LOCATION", "")
        params: dict[str, Any] = {
            "TIMEOUT": options.pop("TIMEOUT", 300),
            "KEY_PREFIX": options.pop("KEY_PREFIX", f"t{next(_prefixes)}"),
            "OPTIONS": {"CLOCK": clock, **options},
        }
        for name in ("VERSION", "KEY_FUNCTION"):
            if name.lower() in options:
                params[name] = params["OPTIONS"].pop(name.lower())
        if tiers is not None:
            params["OPTIONS"]["TIERS"] = tiers
        cache = TieredCache(location, params)
        for slot in cache._slots:  # tiers are shared by configuration: start clean
            slot.stats.reset()
            if slot.breaker is not None:
                slot.breaker.reset()
        cache._chain.log_throttle.reset()
        built.append(cache)
        return cache

    yield factory
    for cache in built:
        assert cache.check() == [], cache.check()
    _retire(built)


def _retire(built: list[Any]) -> None:
    """Stop the bus listeners of this test's chains whose Redis is gone.

    A listener outlives its test otherwise, retrying the redis-server the test
    started and stopped ten times a second: hundreds of them slowed every
    later test of the process (the whole suite took 11 minutes instead of 4).
    Chains over servers that still answer (the session's, fakeredis) stay:
    later tests share their tiers, as processes do.
    """
    from tiered_cache import chain as chains
    from tiered_cache.exceptions import TierUnavailable

    retired = {id(cache._chain) for cache in built if getattr(cache, "_chain", None)}
    for key, chain in chains._chains.items():
        bus = chain.bus
        if id(chain) not in retired or bus is None:
            continue
        try:
            chain._via.tier.has_key("-")
        except TierUnavailable:
            bus.stop(wait=False)
            chains._chains.discard(key)


@pytest.fixture(scope="session")
def l3_dir(tmp_path_factory: pytest.TempPathFactory):
    """One L3 directory per session, so matrix caches share their tiers."""
    return tmp_path_factory.mktemp("l3")


@pytest.fixture(params=CELLS)
def cell(request: pytest.FixtureRequest) -> str:
    """Name of the matrix cell under test."""
    if "real" in request.param:
        request.applymarker(pytest.mark.redis_server)
    return request.param


@pytest.fixture
def tiers(cell: str, request: pytest.FixtureRequest) -> list[dict[str, Any]]:
    """Tier specs of the current matrix cell."""
    from tests.matrix import tiers_for

    return tiers_for(cell, request)


@pytest.fixture
def cache(make_cache: Callable[..., Any], tiers: list[dict[str, Any]]):
    """A TieredCache over the current matrix cell."""
    return make_cache(tiers)
