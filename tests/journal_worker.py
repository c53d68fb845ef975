"""A process of one "machine" for ``test_journal``: its L3 folder, the shared Redis.

``python tests/journal_worker.py ROLE FOLDER [OUT SECONDS]``; the cache is
L1 + the Redis at ``$REDIS_URL`` + an L3 in ``FOLDER``, bus on (the default).

* ``seed``: sets ``gone`` and ``moved`` to ``"old"``.
* ``read OUT SECONDS``: reads both keys over and over; once it has read both
  old values it creates ``OUT.ready``; at the end it writes to ``OUT`` when it
  last *started* a read that returned ``"old"``.
* ``change``: deletes ``gone``, sets ``moved`` to ``"new"``, and exits.
* ``look``: prints ``gone=... moved=...`` as a fresh process reads them.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path


def main() -> None:
    import django
    from django.conf import settings

    role, folder = sys.argv[1], sys.argv[2]
    settings.configure(
        SECRET_KEY="tiered-cache-tests-only",  # as tests/settings.py: shared records
        CACHES={
            "default": {
                "BACKEND": "tiered_cache.TieredCache",
                "KEY_PREFIX": "jw",
                "TIMEOUT": None,
                "OPTIONS": {
                    "TIERS": [
                        {"NAME": "l1", "BACKEND": "tiered_cache.tiers.MemoryTier"},
                        {
                            "NAME": "l2",
                            "BACKEND": "django_redis.cache.RedisCache",
                            "LOCATION": os.environ["REDIS_URL"],
                            # A loaded test machine misses 0.1 s now and then.
                            "OPTIONS": {"SOCKET_TIMEOUT": 0.5},
                        },
                        {
                            "NAME": "l3",
                            "BACKEND": "diskcache.DjangoCache",
                            "LOCATION": folder,
                            "OPTIONS": {"OPEN_TIMEOUT": 5},
                        },
                    ]
                },
            }
        },
    )
    django.setup()
    from django.core.cache import cache

    if role == "seed":
        cache.set_many({"gone": "old", "moved": "old"})
    elif role == "change":
        cache.delete("gone")
        cache.set("moved", "new")
    elif role == "look":
        print(f"gone={cache.get('gone')} moved={cache.get('moved')}")
    elif role == "read":
        out, seconds = Path(sys.argv[3]), float(sys.argv[4])
        end = time.monotonic() + seconds
        last_old = 0.0
        seen: set[str] = set()
        while time.monotonic() < end:
            for key in ("gone", "moved"):
                started = time.time()
                if cache.get(key) == "old":
                    last_old = started
                    if key not in seen:
                        seen.add(key)
                        if len(seen) == 2:
                            out.with_suffix(".ready").touch()
            time.sleep(0.002)
        out.write_text(f"{last_old}\n")


if __name__ == "__main__":
    main()
