#!/usr/bin/env python
"""Where a ``set``'s wall time goes: TieredCache with and without the bus and L3.

Four TieredCache configurations (L1+L2 with L3 or not, with the invalidation
bus or not) and django-redis, interleaved: 40 rounds of 50 ``set`` calls each,
printing the median per-call wall time and this thread's CPU time. Wall time
well above CPU time means the thread waited: for Redis, or for the GIL held by
a background thread (the bus listener, L3's write-behind).

    python bench/set_anatomy.py
"""

from __future__ import annotations

import gc
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the test suite's redis-server launcher

VALUE = {"id": 1, "name": "x" * 60, "tags": ["a", "b"]}
ROUNDS, CALLS = 40, 50


def main() -> int:
    from django.conf import settings

    from tests.support.redis_servers import RedisServer

    with (
        tempfile.TemporaryDirectory() as tmp,
        RedisServer.start(Path(tmp) / "redis") as server,
    ):
        url = server.url(1)

        def tiered(prefix: str, l3: bool, bus: bool) -> dict:
            tiers = [
                {"NAME": "l1", "BACKEND": "tiered_cache.tiers.MemoryTier"},
                {
                    "NAME": "l2",
                    "BACKEND": "django_redis.cache.RedisCache",
                    "LOCATION": url,
                },
            ]
            if l3:
                where = f"{tmp}/l3-{prefix}"
                tiers.append(
                    {
                        "NAME": "l3",
                        "BACKEND": "diskcache.DjangoCache",
                        "LOCATION": where,
                    }
                )
            options = {"TIERS": tiers, "INVALIDATION": bus}
            return {
                "BACKEND": "tiered_cache.TieredCache",
                "KEY_PREFIX": prefix,
                "OPTIONS": options,
            }

        caches_conf = {
            "bus, L3": tiered("a", True, True),
            "no bus, L3": tiered("b", True, False),
            "bus, no L3": tiered("c", False, True),
            "no bus, no L3": tiered("d", False, False),
            "django-redis": {
                "BACKEND": "django_redis.cache.RedisCache",
                "LOCATION": server.url(2),
            },
        }
        settings.configure(SECRET_KEY="bench-not-secret", CACHES=caches_conf)
        import django

        django.setup()
        from django.core.cache import caches

        for name in caches_conf:
            for i in range(100):
                caches[name].set(f"warm{i}", VALUE)
        samples: dict[str, list[tuple[float, float]]] = {n: [] for n in caches_conf}
        gc.disable()
        for _ in range(ROUNDS):
            for name in caches_conf:
                cache = caches[name]
                wall, cpu = time.perf_counter(), time.thread_time()
                for i in range(CALLS):
                    cache.set(f"k{i}", VALUE)
                wall = (time.perf_counter() - wall) / CALLS * 1e6
                cpu = (time.thread_time() - cpu) / CALLS * 1e6
                samples[name].append((wall, cpu))
        gc.enable()
        for name, pairs in samples.items():
            wall = sorted(p[0] for p in pairs)[len(pairs) // 2]
            cpu = sorted(p[1] for p in pairs)[len(pairs) // 2]
            print(f"{name:<16}wall p50 {wall:8.1f} us   cpu p50 {cpu:8.1f} us")
        for name in caches_conf:
            caches[name].close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
