"""A process on a "machine" for ``tests/test_copies.py``: one L3 folder is one machine.

``python tests/machine_worker.py``, with ``$REDIS_URL`` and ``$L3_DIR`` (and
optionally ``$L1_MAX_STALENESS``), builds L1 + the Redis + the L3 folder, then
answers one command per line on stdin with one JSON line on stdout:

``settle``              wait until the bus has judged this machine's L3 copies
``set KEY VALUE``       ``cache.set``
``delete KEY``          ``cache.delete``; answers the time it returned
``get KEY``             ``cache.get`` (``null`` when missing)
``l3 KEY``              the L3 tier's own answer (``null`` when it serves nothing)
``l2-down``             open L2's breaker for good: reads fall through to L3
``bus``                 the bus's counters
``quit``
"""

from __future__ import annotations

import json
import os
import sys
import time


def main() -> None:
    import django
    from django.conf import settings

    staleness = os.environ.get("L1_MAX_STALENESS")
    settings.configure(
        SECRET_KEY="tiered-cache-tests-only",  # as tests/settings.py: shared records
        CACHES={
            "default": {
                "BACKEND": "tiered_cache.TieredCache",
                "KEY_PREFIX": "machines",
                "OPTIONS": {
                    "L1_MAX_STALENESS": float(staleness) if staleness else 60.0,
                    "BREAKER": {"OPEN_SECONDS": 3600},
                    "TIERS": [
                        {"NAME": "l1", "BACKEND": "tiered_cache.tiers.MemoryTier"},
                        {
                            "NAME": "l2",
                            "BACKEND": "django_redis.cache.RedisCache",
                            "LOCATION": os.environ["REDIS_URL"],
                        },
                        {
                            "NAME": "l3",
                            "BACKEND": "diskcache.DjangoCache",
                            "LOCATION": os.environ["L3_DIR"],
                            "OPTIONS": {"OPEN_TIMEOUT": 10},
                        },
                    ],
                },
            }
        },
    )
    django.setup()
    from django.core.cache import cache

    from tiered_cache.envelope import materialize
    from tiered_cache.sentinels import MISSING

    chain = cache._chain
    for line in sys.stdin:
        command, *args = line.split()
        answer: object = "ok"
        if command == "settle":
            deadline = time.monotonic() + 20
            while not chain.bus.settled and time.monotonic() < deadline:
                time.sleep(0.01)
            answer = chain.bus.settled
        elif command == "set":
            cache.set(args[0], args[1])
        elif command == "delete":
            cache.delete(args[0])
            answer = time.time()
        elif command == "get":
            answer = cache.get(args[0])
        elif command == "l3":
            record = cache.tier("l3").get(cache.stored_key(args[0]))
            answer = None if record is MISSING else materialize(record)
        elif command == "l2-down":
            breaker = chain.by_name["l2"].breaker
            for _ in range(5):
                breaker.record_failure()
        elif command == "bus":
            answer = chain.bus.stats.snapshot()
        elif command == "quit":
            break
        print(json.dumps(answer), flush=True)


if __name__ == "__main__":
    main()
