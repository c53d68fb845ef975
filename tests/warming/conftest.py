"""A TieredCache alias over L1 + a redis-server of the test's own (+ L3)."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.history.conftest import no_background_flush  # noqa: F401  (autouse)
from tests.matrix import L1, l3, real_l2
from tests.support.redis_servers import RedisServer
from tiered_cache.warming import registry

_prefixes = itertools.count()


@pytest.fixture
def server(tmp_path) -> Iterator[RedisServer]:
    srv = RedisServer.start(tmp_path / "redis")
    yield srv
    srv.stop()


@pytest.fixture
def warm_alias(settings, server, tmp_path) -> Callable[..., str]:
    """Return ``add(**options)``: alias ``"w"`` over L1 + L2 (+ L3), history on."""

    def add(with_l3: bool = True, **options: Any) -> str:
        tiers = [L1, real_l2(server.url(0))]
        if with_l3:
            tiers.append(l3(str(tmp_path / "l3")))
        settings.CACHES = {
            **settings.CACHES,
            "w": {
                "BACKEND": "tiered_cache.TieredCache",
                "KEY_PREFIX": f"warm{next(_prefixes)}",
                "OPTIONS": {
                    "TIERS": tiers,
                    "HISTORY": {"SAMPLE_RATE": 1.0},
                    "INVALIDATION": False,
                    **options,
                },
            },
        }
        return "w"

    return add


@pytest.fixture
def warmers() -> Iterator[dict]:
    """The warmer registry, emptied of this test's warmers afterwards."""
    before = dict(registry.warmers)
    yield registry.warmers
    registry.warmers.clear()
    registry.warmers.update(before)


def record_reads(alias: str, reads: dict[str, int]) -> None:
    """Read each key ``reads[key]`` times (misses) and flush the history."""
    from django.core.cache import caches

    from tiered_cache.history.flush import flush_history

    cache = caches[alias]
    for key, times in reads.items():
        for _ in range(times):
            cache.get(key)
    flush_history()


@pytest.fixture
def product_warmer(warm_alias, warmers) -> Callable[..., tuple[str, list[str]]]:
    """Return ``add(then=None)``: a new alias and the keys its ``p`` warmer ran for.

    ``then(n)`` runs after the n-th call (it may stop Redis, or raise).
    """

    def add(then: Callable[[int], None] | None = None) -> tuple[str, list[str]]:
        alias = warm_alias()
        calls: list[str] = []

        def product(key: str) -> str:
            calls.append(key)
            if then is not None:
                then(len(calls))
            return f"value of {key}"

        registry.warmer("p", cache=alias)(product)
        return alias, calls

    return add
