"""Run a TieredCache with L1 + L3 on a directory given in argv, as whoever runs
this (the permission tests start it as ``nobody``), and print what happened as
JSON: what reads returned, L3's errors and breaker, the ERROR lines logged.
"""

from __future__ import annotations

import json
import logging
import os
import sys

sys.path.insert(0, os.getcwd())
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")


class _Errors(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def main(location: str) -> None:
    import django

    django.setup()
    from tiered_cache.backend import TieredCache

    errors = _Errors()
    logging.getLogger("tiered_cache").addHandler(errors)
    params = {
        "TIMEOUT": 300,
        "OPTIONS": {
            "TIERS": [
                {"NAME": "l1", "BACKEND": "tiered_cache.tiers.MemoryTier"},
                {
                    "NAME": "l3",
                    "BACKEND": "diskcache.DjangoCache",
                    "LOCATION": location,
                    "OPTIONS": {"OPEN_TIMEOUT": 10.0},
                },
            ]
        },
    }
    cache = TieredCache("", params)
    got = []
    for i in range(20):
        cache.set(f"k{i}", i)
        got.append(cache.get(f"k{i}"))
    slot = cache._chain.by_name["l3"]
    print(
        json.dumps(
            {
                "uid": os.getuid(),
                "got": got,
                "l3_errors": slot.stats.errors,
                "l3_breaker": slot.breaker.state,
                "error_lines": errors.lines,
            }
        )
    )


if __name__ == "__main__":
    main(sys.argv[1])
