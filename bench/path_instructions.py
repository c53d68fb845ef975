#!/usr/bin/env python
"""Instructions per write, miss and ``incr``: TieredCache against its parts.

The write and miss paths of issue-10 kind: ``set`` through L1+L2+L3 against
django-redis's ``set`` alone, a miss through every tier against django-redis's
miss plus diskcache's, ``set_many(10)`` and ``incr`` against django-redis's.
Like ``l2_instructions.py`` it counts instructions under callgrind (repeatable
on a busy machine) and takes the difference of a ``--few`` and a ``--many`` run
after the same start-up. Threads are counted apart: ``caller`` is the thread
that made the calls (the request's cost), ``all`` adds the background threads
(L3's write-behind, the bus listener): the machine's cost. The bus is on, as
deployed: a write announces itself in the same transaction.

    python bench/path_instructions.py                  # every pair
    python bench/path_instructions.py --pairs set,miss
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import callgrind  # bench/callgrind.py: run as a script, bench/ is on sys.path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the test suite's redis-server launcher

VALUE = {"id": 1, "name": "x" * 60, "tags": ["a", "b"], "score": 1.5, "ok": True}

#: pair -> (TieredCache mode, anchor modes whose costs add up).
PAIRS = {
    "set": ("tc.set", ("dr.set",)),
    "miss": ("tc.miss", ("dr.miss", "dc.miss")),
    "set_many": ("tc.set_many", ("dr.set_many",)),
    "incr": ("tc.incr", ("dr.incr",)),
}


def operations(cache: Any, op: str) -> Callable[[int], None]:
    """Return ``run(i)``: the ``i``-th call of ``op`` on ``cache``."""
    if op == "set":
        return lambda i: cache.set(f"k{i % 500}", VALUE)
    if op == "miss":
        return lambda i: cache.get(f"absent{i}")
    if op == "set_many":
        batch = {f"m{j}": VALUE for j in range(10)}
        return lambda i: cache.set_many(batch)
    if op == "incr":
        cache.set("counter", 0)
        return lambda i: cache.incr("counter")
    raise ValueError(op)


def child(mode: str, calls: int, port: int, tmp: str) -> None:
    from django.conf import settings

    tiers = [
        {"NAME": "l1", "BACKEND": "tiered_cache.tiers.MemoryTier"},
        {
            "NAME": "l2",
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": f"redis://127.0.0.1:{port}/1",
        },
        {"NAME": "l3", "BACKEND": "diskcache.DjangoCache", "LOCATION": f"{tmp}/l3"},
    ]
    settings.configure(
        SECRET_KEY="bench-not-secret",
        CACHES={
            "tc": {
                "BACKEND": "tiered_cache.TieredCache",
                "KEY_PREFIX": "bench",
                "OPTIONS": {"TIERS": tiers},
            },
            "dr": {
                "BACKEND": "django_redis.cache.RedisCache",
                "LOCATION": f"redis://127.0.0.1:{port}/2",
                "KEY_PREFIX": "bench",
            },
            "dc": {
                "BACKEND": "diskcache.DjangoCache",
                "LOCATION": f"{tmp}/dc",
                "KEY_PREFIX": "bench",
            },
        },
    )
    import django

    django.setup()
    from django.core.cache import caches

    alias, op = mode.split(".")
    cache = caches[alias]
    run = operations(cache, op)
    for i in range(20):  # warm: connections, files, the first promotions
        run(i)
    for i in range(calls):
        run(i)
    if alias == "tc":  # the write-behind's work belongs to this run
        cache.tier("l3").drain()


def instructions(mode: str, calls: int, port: int, tmp: str) -> tuple[int, int]:
    """Return (instructions of the calling thread, of every thread)."""
    out = Path(tmp) / f"callgrind.{mode}.{calls}"
    counts = callgrind.thread_instructions(
        __file__, ["--child", mode, str(calls), str(port)], out
    )
    return counts[0], sum(counts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--few", type=int, default=200)
    parser.add_argument("--many", type=int, default=1200)
    parser.add_argument("--pairs", default=",".join(PAIRS))
    parser.add_argument("--child", nargs=3, metavar=("MODE", "CALLS", "PORT"))
    args = parser.parse_args(argv)
    if args.child:
        mode, calls, port = args.child
        with tempfile.TemporaryDirectory() as tmp:
            child(mode, int(calls), int(port), tmp)
        return 0
    if shutil.which("valgrind") is None:
        print("valgrind is required (apt-get install valgrind)", file=sys.stderr)
        return 1
    from tests.support.redis_servers import RedisServer

    pairs = args.pairs.split(",")
    extra = args.many - args.few
    with (
        tempfile.TemporaryDirectory() as tmp,
        RedisServer.start(Path(tmp) / "redis") as server,
    ):
        port = server.addr[1]
        cost: dict[str, tuple[float, float]] = {}  # (caller, all) per call
        for pair in pairs:
            ours, anchors = PAIRS[pair]
            for mode in (ours, *anchors):
                if mode not in cost:
                    few = instructions(mode, args.few, port, tmp)
                    many = instructions(mode, args.many, port, tmp)
                    cost[mode] = tuple((m - f) / extra for m, f in zip(many, few))  # noqa: B905
    print(f"{'pair':<10}{'TieredCache caller/all':>26}{'anchors':>12}{'ratio':>16}")
    for pair in pairs:
        ours, anchors = PAIRS[pair]
        anchor = sum(cost[mode][1] for mode in anchors)
        caller, every = cost[ours]
        print(
            f"{pair:<10}{caller / 1000:12.1f}k /{every / 1000:8.1f}k"
            f"{anchor / 1000:11.1f}k{caller / anchor:8.3f}x /{every / anchor:6.3f}x"
            f"   ({' + '.join(anchors)})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
