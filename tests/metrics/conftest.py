"""A TieredCache alias in settings.CACHES, as the metrics readers find caches."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import pytest

from tiered_cache.metrics.flusher import Flusher

_prefixes = itertools.count()


@pytest.fixture
def alias(settings) -> Callable[..., str]:
    """Return ``add(tiers, **options)``: puts alias ``"m"`` in settings.CACHES."""

    def add(tiers: list[dict[str, Any]], **options: Any) -> str:
        settings.CACHES = {
            **settings.CACHES,
            "m": {
                "BACKEND": "tiered_cache.TieredCache",
                "KEY_PREFIX": f"metrics{next(_prefixes)}",
                "OPTIONS": {"TIERS": tiers, **options},
            },
        }
        # Tiers are shared by configuration across tests: start from zero.
        from django.core.cache import caches

        cache = caches["m"]
        for slot in cache._chain.slots:
            slot.stats.reset()
        for counter in vars(cache._chain.stats):
            setattr(cache._chain.stats, counter, 0)
        return "m"

    return add


@pytest.fixture
def process() -> Callable[[str], Flusher]:
    """Return ``process(name)``: a flusher standing for one process of a fleet."""

    def make(name: str) -> Flusher:
        flusher = Flusher()
        flusher.process = name
        return flusher

    return make


@pytest.fixture
def forked() -> Callable[[Callable[[], None]], None]:
    """Return ``forked(body)``: run ``body`` in a forked child; fail if it fails."""
    import os

    def run(body: Callable[[], None]) -> None:
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                body()
                code = 0
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0

    return run
