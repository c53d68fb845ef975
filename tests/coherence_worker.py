"""A writer or reader process for ``test_coherence`` and ``bench/coherence.py``.

``python tests/coherence_worker.py write OUT SECONDS``: sets ``k`` to 0, 1, 2...
and writes ``version time_set_returned`` lines. ``... read OUT SECONDS``: reads
``k`` as fast as it can and writes ``start_of_last_read_that_saw_it version``
lines. The cache
is L1 + the Redis at ``$REDIS_URL``, with the bus on (the default).

Keys written once (``bench/coherence.py``): ``... write-once OUT KEYS PAUSE``
sets ``o0``..``o{KEYS-1}`` to 1, waits ``PAUSE`` s (readers copy them into L1),
then sets each to 2 once, every 10 ms, writing ``key time_set_returned
reached_l2`` lines (0 when L2 did not take the write). ``... read-once OUT
SECONDS KEYS`` reads the keys round and round and writes ``key
start_of_last_read_that_saw_1`` lines. A lost announcement shows as a reader
reading 1 long after 2 was set: no later write can hide it.
"""

from __future__ import annotations

import os
import sys
import time


def main() -> None:
    import django
    from django.conf import settings

    settings.configure(
        SECRET_KEY="tiered-cache-tests-only",  # as tests/settings.py: shared records
        CACHES={
            "default": {
                "BACKEND": "tiered_cache.TieredCache",
                "KEY_PREFIX": "coherence",
                "OPTIONS": {
                    "TIERS": [
                        {"NAME": "l1", "BACKEND": "tiered_cache.tiers.MemoryTier"},
                        {
                            "NAME": "l2",
                            "BACKEND": "django_redis.cache.RedisCache",
                            "LOCATION": os.environ["REDIS_URL"],
                        },
                    ]
                },
            }
        },
    )
    django.setup()
    from django.core.cache import cache

    # Build the chain (imports, connections, the bus) before any clock starts:
    # on a loaded machine that alone can outlast a 3 s run.
    cache.get("k")
    role, out, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
    if role in ("write-once", "read-once"):
        return once(cache, role, out, seconds, int(sys.argv[4]))
    end = time.monotonic() + seconds
    if role == "write":
        with open(out, "w") as log:
            version = 0
            while time.monotonic() < end:
                cache.set("k", version, timeout=None)
                log.write(f"{version} {time.time()}\n")
                version += 1
                time.sleep(0.02)
        return
    last_seen: dict[int, float] = {}
    while time.monotonic() < end:
        # When the read *started*: a reader descheduled after reading must not
        # look as if it had read the value later than it did.
        started = time.time()
        version = cache.get("k")
        if version is not None:
            last_seen[version] = started
    with open(out, "w") as log:
        for version, at in sorted(last_seen.items()):
            log.write(f"{at} {version}\n")


def once(cache, role: str, out: str, seconds: float, count: int) -> None:
    keys = [f"o{i}" for i in range(count)]
    if role == "write-once":  # ``seconds`` is the pause before the second writes
        cache.set_many(dict.fromkeys(keys, 1), timeout=None)
        time.sleep(seconds)
        l2 = cache._chain.by_name["l2"].stats
        with open(out, "w") as log:
            for key in keys:
                errors = l2.errors
                cache.set(key, 2, timeout=None)
                log.write(f"{key} {time.time()} {int(l2.errors == errors)}\n")
                time.sleep(0.01)
        return
    last_old: dict[str, float] = {}
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        for key in keys:
            started = time.time()
            if cache.get(key) == 1:
                last_old[key] = started
    with open(out, "w") as log:
        for key, at in last_old.items():
            log.write(f"{key} {at}\n")


if __name__ == "__main__":
    main()
