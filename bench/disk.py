#!/usr/bin/env python
"""The disk tier's costs that issue #7 names, measured on a scratch directory.

* ``batch``: ``set_many`` then ``delete_many`` of ``--keys`` keys (100 000 by
  default) through ``DiskTier`` (8 shards, ~100 B values).
* ``first``: what the first ``get`` of a fresh process pays for the open,
  and the ``set`` right after it, in a child process (the import of Django
  and diskcache excluded), on a new directory and on one that exists (a
  restart).
* ``threads``: ``--threads`` threads (50) of one process writing and reading
  through a ``TieredCache`` with L1 + L3 for ``--seconds``: L3 errors by kind,
  breaker openings, the slowest call. No fault is injected, so any error is
  the tier tripping over its own process.
* ``big``: three 50 MB values ``set`` through L1 + L3 in a child process:
  seconds and the growth of its peak RSS.

Run from the repository root: ``python bench/disk.py [batch|first|threads]``.
"""

from __future__ import annotations

import argparse
import collections
import logging
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")

_FIRST_CALL = """
import sys, time
from tiered_cache.envelope import Record
from tiered_cache.tiers.disk import DiskTier
where = sys.argv[1]
tier = DiskTier(where, {"LOCATION": where, "OPTIONS": {"OPEN_TIMEOUT": 30}},
                name="l3", clock=time.time)
start = time.perf_counter()
tier.get("k")
first = time.perf_counter() - start
start = time.perf_counter()
tier.set("k", Record.for_value("v", None))
second = time.perf_counter() - start
print(f"{first * 1e3:.1f} {second * 1e3:.2f}")
"""


def _tier(where: str):
    from tiered_cache.tiers.disk import DiskTier

    return DiskTier(
        where,
        {"LOCATION": where, "OPTIONS": {"OPEN_TIMEOUT": 30}},
        name="l3",
        clock=time.time,
    )


def batch(keys: int) -> None:
    from tiered_cache.envelope import Record

    with tempfile.TemporaryDirectory() as tmp:
        tier = _tier(tmp)
        records = {f"key:{i}": Record.for_value("x" * 100, None) for i in range(keys)}
        tier.get("warm")  # the open is not what is measured
        start = time.perf_counter()
        tier.set_many(records)
        set_s = time.perf_counter() - start
        start = time.perf_counter()
        found = tier.get_many(list(records)[:1000])
        get_s = time.perf_counter() - start
        start = time.perf_counter()
        tier.delete_many(list(records))
        delete_s = time.perf_counter() - start
        left = len(tier.keys("key:"))
        print(
            f"{keys} keys: set_many {set_s:.2f} s, delete_many {delete_s:.2f} s "
            f"(get_many of 1000: {get_s * 1e3:.0f} ms, {len(found)} found; "
            f"{left} left)"
        )


def first(runs: int) -> None:
    for label, existing in (("new directory", False), ("existing directory", True)):
        results = []
        for _ in range(runs):
            with tempfile.TemporaryDirectory() as tmp:
                where = os.path.join(tmp, "l3")
                if existing:
                    _run_child(where)
                results.append(_run_child(where))
        firsts = sorted(r[0] for r in results)
        seconds = sorted(r[1] for r in results)
        print(
            f"{label:>18}: first get {firsts[len(firsts) // 2]:.1f} ms median, "
            f"{firsts[-1]:.1f} ms max; then set {seconds[len(seconds) // 2]:.2f}"
            f" ms median ({runs} processes)"
        )


def _run_child(where: str) -> tuple[float, float]:
    out = subprocess.run(
        [sys.executable, "-c", _FIRST_CALL, where],
        check=True,
        capture_output=True,
        text=True,
        cwd=ROOT,
    ).stdout.split()
    return float(out[0]), float(out[1])


_BIG = """
import os, resource, sys, tempfile, time
sys.path.insert(0, os.getcwd())
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
import django
django.setup()
from tiered_cache.backend import TieredCache
where = tempfile.mkdtemp()
l3 = {"NAME": "l3", "BACKEND": "diskcache.DjangoCache", "LOCATION": where,
      "OPTIONS": {"OPEN_TIMEOUT": 30}}
cache = TieredCache("", {"OPTIONS": {"TIERS": [
    {"NAME": "l1", "BACKEND": "tiered_cache.tiers.MemoryTier"}, l3]}})
cache.set("warm", 1)
values = [os.urandom(50 * 2**20) for _ in range(3)]
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
start = time.perf_counter()
for i, value in enumerate(values):
    cache.set(f"big{i}", value)
took = time.perf_counter() - start
grew = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
stats = cache._chain.by_name["l3"].stats
print(f"3 x 50 MB set: {took:.2f} s, peak RSS +{grew:.0f} MB, "
      f"L3 refused {stats.refused}, stored {stats.sets - 1}")
"""


def big() -> None:
    out = subprocess.run(
        [sys.executable, "-c", _BIG],
        check=True,
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    print(out.stdout.strip())


class _Count(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: collections.Counter[str] = collections.Counter()

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if "circuit breaker" in message and "-> open" in message:
            self.lines["breaker opened"] += 1


def threads(count: int, seconds: float) -> None:
    import django

    django.setup()
    from tiered_cache.backend import TieredCache
    from tiered_cache.slot import Slot

    handler = _Count()
    logging.getLogger("tiered_cache").addHandler(handler)
    kinds: collections.Counter[str] = collections.Counter()
    failed = Slot._failed

    def counting(slot, op, exc):  # every failure, not the throttled log lines
        kinds[exc.kind] += 1
        return failed(slot, op, exc)

    Slot._failed = counting
    with tempfile.TemporaryDirectory() as tmp:
        params = {
            "TIMEOUT": 300,
            "OPTIONS": {
                "TIERS": [
                    {"NAME": "l1", "BACKEND": "tiered_cache.tiers.MemoryTier"},
                    {
                        "NAME": "l3",
                        "BACKEND": "diskcache.DjangoCache",
                        "LOCATION": tmp,
                        "OPTIONS": {"OPEN_TIMEOUT": 30},
                    },
                ]
            },
        }
        caches = [TieredCache("", params) for _ in range(count)]
        caches[0].get("warm")
        slowest = [0.0] * count
        calls = [0] * count
        stop = time.monotonic() + seconds
        barrier = threading.Barrier(count)

        def work(index: int) -> None:
            cache = caches[index]
            barrier.wait()
            i = 0
            while time.monotonic() < stop:
                key = f"t{index}:{i % 50}"
                start = time.perf_counter()
                cache.set(key, i)
                cache.delete(f"t{index}:{(i + 7) % 50}")
                slowest[index] = max(slowest[index], time.perf_counter() - start)
                calls[index] += 2
                i += 1

        workers = [threading.Thread(target=work, args=(n,)) for n in range(count)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        stats = caches[0]._chain.by_name["l3"].stats
        print(
            f"{count} threads x {seconds} s: {sum(calls)} writes, L3 errors "
            f"{stats.errors} {dict(kinds)}, breaker opened "
            f"{handler.lines['breaker opened']} "
            f"times, skipped {stats.skipped}, slowest set+delete "
            f"{max(slowest) * 1e3:.0f} ms"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", nargs="*", default=["batch", "first", "threads"])
    parser.add_argument("--keys", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args(argv)
    for what in args.what:
        if what == "batch":
            batch(args.keys)
        elif what == "first":
            first(args.runs)
        elif what == "threads":
            threads(args.threads, args.seconds)
        elif what == "big":
            big()
        else:
            parser.error(f"unknown measurement {what!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
