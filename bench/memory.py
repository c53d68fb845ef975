#!/usr/bin/env python
"""Memory per entry: RSS growth of a process that fills one cache.

Each backend runs in a process of its own (so one's freed memory is not the
next one's), which measures its RSS (``/proc/self/statm``), stores ``--entries``
small entries (the ~100 B dict of ``latency.py``, under keys like a site's)
and measures again; bytes per entry is the growth over the entries. Backends:
``locmem`` (LocMemCache, the anchor), ``l1`` (TieredCache with L1 only, lru),
``l1-<policy>`` (another eviction policy) and ``l3`` (TieredCache L1+L3, the
RSS that L3's SQLite page cache adds to a process that wrote them, L1 kept
small). Also printed: what L1 itself accounts (``MAX_BYTES`` is honoured
against that figure), so the two can be compared.

    python bench/memory.py --entries 1000000
    python bench/memory.py --entries 200000 --backends locmem,l1,l1-s3fifo
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

from latency import SMALL as VALUE  # bench/ is on sys.path: the same small entry


def rss() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def child(backend: str, entries: int, tmp: str) -> dict:
    from django.conf import settings

    huge = 64 * 2**30  # no eviction: every entry stays
    if backend == "locmem":
        spec = {
            "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
            "OPTIONS": {"MAX_ENTRIES": entries * 2, "CULL_FREQUENCY": 0},
        }
    else:
        policy = backend.partition("-")[2] or "lru"
        l1 = {
            "NAME": "l1",
            "BACKEND": "tiered_cache.tiers.MemoryTier",
            "OPTIONS": {"MAX_BYTES": huge, "POLICY": policy},
        }
        tiers = [l1]
        if backend == "l3":
            l1["OPTIONS"] = {"MAX_ENTRIES": 1000}
            tiers.append(
                {"NAME": "l3", "BACKEND": "diskcache.DjangoCache", "LOCATION": tmp}
            )
        spec = {"BACKEND": "tiered_cache.TieredCache", "OPTIONS": {"TIERS": tiers}}
    settings.configure(
        SECRET_KEY="bench-memory-not-secret",
        CACHES={"default": {**spec, "TIMEOUT": 3600, "KEY_PREFIX": "bench"}},
    )
    import django

    django.setup()
    from django.core.cache import cache

    cache.set("warm", VALUE)
    cache.get("warm")
    keys = [f"product:{n}:detail" for n in range(entries)]  # made before: not measured
    before = rss()
    if backend == "l3":
        batch = 1000
        for start in range(0, entries, batch):
            cache.set_many({key: VALUE for key in keys[start : start + batch]})
        cache.tier("l3").drain()
        for key in keys[:: max(1, entries // 10_000)]:
            cache.get(key)  # reads fill the page cache too
    else:
        for key in keys:
            cache.set(key, VALUE)
    grown = rss() - before
    result = {"backend": backend, "entries": entries, "rss_growth": grown}
    result["bytes_per_entry"] = round(grown / entries, 1)
    if backend.startswith("l1"):
        result["accounted_per_entry"] = round(cache.tier("l1").size_bytes / entries, 1)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--backends", default="locmem,l1,l1-s3fifo,l1-tinylfu,l3")
    parser.add_argument("--json", help="append the results to this JSON-lines file")
    parser.add_argument("--child", nargs=2, metavar=("BACKEND", "ENTRIES"))
    args = parser.parse_args(argv)
    if args.child:
        with tempfile.TemporaryDirectory() as tmp:
            print(json.dumps(child(args.child[0], int(args.child[1]), tmp)))
        return 0
    rows = []
    for backend in args.backends.split(","):
        out = subprocess.run(
            [sys.executable, __file__, "--child", backend, str(args.entries)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        rows.append(json.loads(out.strip().splitlines()[-1]))
    anchor = next((r for r in rows if r["backend"] == "locmem"), None)
    print(f"{'backend':<12}{'entries':>10}{'RSS growth':>14}{'B/entry':>10}"
          f"{'vs locmem':>11}{'L1 accounts':>13}")  # fmt: skip
    for row in rows:
        ratio = row["bytes_per_entry"] / anchor["bytes_per_entry"] if anchor else None
        grown_mb = row["rss_growth"] / 2**20
        print(
            f"{row['backend']:<12}{row['entries']:>10}{grown_mb:>11.1f} MB"
            f"{row['bytes_per_entry']:>10.1f}"
            f"{'' if ratio is None else f'{ratio:.2f}x':>11}"
            f"{row.get('accounted_per_entry', ''):>13}"
        )
    if args.json:
        with open(args.json, "a") as out:
            for row in rows:
                out.write(json.dumps(row) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
