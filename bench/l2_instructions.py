#!/usr/bin/env python
"""Client instructions per L1-miss/L2-hit, TieredCache against django-redis.

With ``--modes l1,lm``: instructions per L1 hit, TieredCache against
LocMemCache (the L1 hit path the metrics must not slow down).

Wall-clock ratios on a shared 2-core machine move by several percent from one
run to the next; instruction counts do not (``valgrind --tool=callgrind``
counts instructions, whatever else the machine does). Each mode runs twice
under callgrind, with ``--few`` and ``--many`` gets after the same start-up, and
the difference divided by the number of extra gets is the cost of one get in
this process: the Python work of the client, redis-py and hiredis included; the
server's work and the wait for the reply are not. The bus is off (a listener
thread would add time-dependent work), as is L3's part (a hit in L2 never reads
it).

    python bench/l2_instructions.py            # both modes, needs valgrind
    python bench/l2_instructions.py --modes l1,lm   # the L1 hit instead
    python bench/l2_instructions.py --child tc 300 PORT   # (what it runs)
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

import callgrind  # bench/callgrind.py: run as a script, bench/ is on sys.path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the test suite's redis-server launcher

VALUE = {"id": 1, "name": "x" * 20, "tags": ["a", "b"], "score": 1.5, "ok": True}


def child(mode: str, gets: int, port: int, tmp: str) -> None:
    """Configure Django, warm up, then do ``gets`` L2 hits (the measured part)."""
    from django.conf import settings

    tiers = [
        {"NAME": "l1", "BACKEND": "tiered_cache.tiers.MemoryTier"},
        {
            "NAME": "l2",
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": f"redis://127.0.0.1:{port}/1",
        },
        {"NAME": "l3", "BACKEND": "diskcache.DjangoCache", "LOCATION": tmp},
    ]
    settings.configure(
        SECRET_KEY="bench-not-secret",
        CACHES={
            "default": {
                "BACKEND": "tiered_cache.TieredCache",
                "KEY_PREFIX": "bench",
                "OPTIONS": {"INVALIDATION": False, "TIERS": tiers},
            },
            # An L1 hit over L2, as deployed: L1 holds copies, so its hit
            # checks the staleness deadline. (No L3: its writes finishing in
            # the background would race the temp folder's removal at exit.)
            "l1l2": {
                "BACKEND": "tiered_cache.TieredCache",
                "KEY_PREFIX": "bench",
                "OPTIONS": {"INVALIDATION": False, "TIERS": tiers[:2]},
            },
            "locmem": {
                "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
                "KEY_PREFIX": "bench",
            },
            "redis": {
                "BACKEND": "django_redis.cache.RedisCache",
                "LOCATION": f"redis://127.0.0.1:{port}/2",
                "KEY_PREFIX": "bench",
            },
        },
    )
    import django

    django.setup()
    from django.core.cache import caches

    if mode == "tc":
        cache = caches["default"]
        cache.set("k", VALUE)
        l1, final = cache.tier("l1"), cache.stored_key("k")
        for _ in range(2):  # warm: one L1 hit, one L2 hit
            cache.get("k")
            l1.delete(final)
        for _ in range(gets):
            l1.delete(final)
            cache.get("k")
    elif mode in ("l1", "lm"):  # L1 hits: TieredCache, LocMemCache
        cache = caches["l1l2" if mode == "l1" else "locmem"]
        cache.set("k", VALUE)
        cache.get("k")
        for _ in range(gets):
            cache.get("k")
    else:
        cache = caches["redis"]
        cache.set("k", VALUE)
        cache.get("k")
        for _ in range(gets):
            cache.get("k")


def instructions(mode: str, gets: int, port: int, tmp: str) -> int:
    out = Path(tmp) / f"callgrind.{mode}.{gets}"
    return callgrind.instructions(
        __file__, ["--child", mode, str(gets), str(port)], out
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--few", type=int, default=300)
    parser.add_argument("--many", type=int, default=2300)
    parser.add_argument(
        "--modes",
        default="tc,dr",
        help="tc,dr: L2 hit vs django-redis (default); l1,lm: L1 hit vs LocMemCache",
    )
    parser.add_argument("--child", nargs=3, metavar=("MODE", "GETS", "PORT"))
    args = parser.parse_args(argv)
    if args.child:
        mode, gets, port = args.child
        with tempfile.TemporaryDirectory() as tmp:
            child(mode, int(gets), int(port), os.path.join(tmp, "l3"))
        return 0
    if shutil.which("valgrind") is None:
        print("valgrind is required (apt-get install valgrind)", file=sys.stderr)
        return 1
    from tests.support.redis_servers import RedisServer

    with (
        tempfile.TemporaryDirectory() as tmp,
        RedisServer.start(Path(tmp) / "redis") as server,
    ):
        port = server.addr[1]
        per_get = {}
        modes = args.modes.split(",")
        for mode in modes:
            few = instructions(mode, args.few, port, tmp)
            many = instructions(mode, args.many, port, tmp)
            per_get[mode] = (many - few) / (args.many - args.few)
    names = {
        "tc": "TieredCache L1-miss/L2-hit",
        "dr": "django-redis get hit",
        "l1": "TieredCache L1 hit",
        "lm": "LocMemCache get hit",
    }
    for mode in modes:
        print(f"{names[mode]:<28}{per_get[mode] / 1000:8.2f}k instructions")
    if len(modes) == 2:
        first, second = modes
        print(f"{'ratio':<28}{per_get[first] / per_get[second]:8.3f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
