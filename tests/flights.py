"""Helpers for tests of concurrent callers and of simulated processes.

A "process" is simulated in-process by a cache whose L1 configuration differs
(so it gets its own chain, hence its own flights) over an L2 on one fakeredis
server shared with the other "processes".
"""

from __future__ import annotations

import threading
import time
from typing import Any

import fakeredis

from tests.matrix import L1
from tests.support.redis_servers import wait_until
from tiered_cache import stampede


def fake_l2(server: fakeredis.FakeServer) -> dict[str, Any]:
    return {
        "NAME": "l2",
        "BACKEND": "django_redis.cache.RedisCache",
        "LOCATION": "redis://fakeredis.invalid:6379/0",
        "OPTIONS": {
            "CONNECTION_POOL_KWARGS": {
                "connection_class": fakeredis.FakeRedisConnection,
                "server": server,
            }
        },
    }


def l1(process: int = 0) -> dict[str, Any]:
    """An L1 of its own per simulated process (a distinct configuration)."""
    return {**L1, "OPTIONS": {"MAX_ENTRIES": 100_000 + process}}


class Work:
    """A computation that counts its calls, may wait for a condition, and fails."""

    def __init__(self, value: Any = "v", *, until=None, seconds=0.0, error=None):
        self.value = value
        self.until = until
        self.seconds = seconds
        self.error = error
        self.calls = 0
        self._lock = threading.Lock()

    def __call__(self) -> Any:
        with self._lock:
            self.calls += 1
        if self.until is not None:
            wait_until(self.until, timeout=10, what="callers to join the flight")
        if self.seconds:
            time.sleep(self.seconds)  # the expensive work being protected
        if self.error is not None:
            raise self.error
        return self.value


def in_threads(count: int, call) -> list[tuple[str, Any, float]]:
    """Run ``call()`` in ``count`` threads at once; ``(kind, result, seconds)``."""
    go = threading.Event()
    outcomes: list[tuple[str, Any, float]] = []
    lock = threading.Lock()

    def run() -> None:
        go.wait()
        started = time.perf_counter()
        try:
            outcome = ("ok", call(), time.perf_counter() - started)
        except BaseException as exc:
            outcome = ("error", exc, time.perf_counter() - started)
        with lock:
            outcomes.append(outcome)

    threads = [threading.Thread(target=run) for _ in range(count)]
    for thread in threads:
        thread.start()
    go.set()
    for thread in threads:
        thread.join(30)
    assert len(outcomes) == count, "a caller hung"
    return outcomes


def flights(cache) -> stampede.Coordinator:
    """Return the coordinator (flights, leases) of ``cache``'s chain."""
    return stampede.coordinator_for(cache._chain)


def lease_of(cache, key: str) -> str:
    """Return the lease key ``get_or_set`` uses for ``key``."""
    return stampede.lease_key(cache.namespace, cache.stored_key(key))


def in_background(call) -> tuple[threading.Thread, list]:
    """Start ``call()`` in a thread; the list gets ``(kind, result, seconds)``."""
    result: list = []

    def run() -> None:
        started = time.perf_counter()
        try:
            result.append(("ok", call(), time.perf_counter() - started))
        except BaseException as exc:
            result.append(("error", exc, time.perf_counter() - started))

    thread = threading.Thread(target=run)
    thread.start()
    return thread, result
