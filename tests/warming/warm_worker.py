"""``manage.py warm_cache`` in a process of its own, for the SIGINT test.

``python tests/warming/warm_worker.py REDIS_URL KEY_PREFIX L3_DIR [ARGS...]``
configures the alias ``w`` as ``tests.warming.conftest.warm_alias`` does
(L1 + that Redis + L3, HISTORY on), registers a ``p`` warmer that prints
``warming <key>`` before it returns, and runs ``warm_cache --cache w ARGS``
through Django's command line (so the exit status is the command's).
"""

from __future__ import annotations

import sys


def main() -> None:
    import django
    from django.conf import settings

    url, prefix, l3 = sys.argv[1:4]
    settings.configure(
        SECRET_KEY="tiered-cache-tests-only",  # as tests/settings.py
        INSTALLED_APPS=["tiered_cache"],
        CACHES={
            "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
            "w": {
                "BACKEND": "tiered_cache.TieredCache",
                "KEY_PREFIX": prefix,
                "OPTIONS": {
                    "TIERS": [
                        {"NAME": "l1", "BACKEND": "tiered_cache.tiers.MemoryTier"},
                        {
                            "NAME": "l2",
                            "BACKEND": "django_redis.cache.RedisCache",
                            "LOCATION": url,
                        },
                        {
                            "NAME": "l3",
                            "BACKEND": "diskcache.DjangoCache",
                            "LOCATION": l3,
                            "OPTIONS": {"OPEN_TIMEOUT": 5},
                        },
                    ],
                    "HISTORY": {"SAMPLE_RATE": 1.0},
                    "INVALIDATION": False,
                },
            },
        },
    )
    django.setup()
    import tiered_cache

    @tiered_cache.warmer("p", cache="w")
    def product(key: str) -> str:
        print(f"warming {key}", flush=True)
        return f"value of {key}"

    from django.core.management import execute_from_command_line

    execute_from_command_line(
        ["manage.py", "warm_cache", "--cache", "w", *sys.argv[4:]]
    )


if __name__ == "__main__":
    main()
