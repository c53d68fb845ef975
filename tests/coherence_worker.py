"""A writer or reader process for ``test_coherence`` and ``bench/coherence.py``.

``python tests/coherence_worker.py write OUT SECONDS``: sets ``k`` to 0, 1, 2...
and writes ``version time_set_returned`` lines. ``... read OUT SECONDS``: reads
``k`` as fast as it can and writes ``start_of_last_read_that_saw_it version``
lines. The cache
is L1 + the Redis at ``$REDIS_URL``, with the bus on (the default).
"""

from __future__ import annotations

import os
import sys
import time


def main() -> None:
    import django
    from django.conf import settings

    settings.configure(
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
        }
    )
    django.setup()
    from django.core.cache import cache

    role, out, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
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


if __name__ == "__main__":
    main()
