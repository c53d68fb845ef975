"""The production faults of issue 7, measured on redis-servers of our own.

Scenarios (``--only NAME`` runs one):

* ``hung``: Redis SIGSTOPped; every ``get`` of a key held in L3 (L1 emptied
  before each call) is timed until the breaker opens. A read served from L3
  must pay the L2 timeout once (the read), not twice (a promotion written back
  into the Redis that just timed out): worst call / ``SOCKET_TIMEOUT``.
* ``pool``: a healthy Redis, 200 threads on a pool of 20 connections, each
  reading through L2 for ``--seconds``: breaker openings, pool waits counted
  as ``busy``, errors, log lines, the slowest call.
* ``counter``: a counter counted through L1 + L2 + L3 while Redis is paused,
  killed and restarted empty, or out of memory: ``incr`` calls that raised,
  reads below the last count returned, the count Redis holds once it answers
  again against the true number of increments.
* ``oom``: Redis out of memory (``maxmemory 1``, ``noeviction``): after
  ``delete()`` and ``set()`` return, does anything still serve the older value
  (this process with its L1 emptied, and Redis itself)?

Run ``python bench/faults.py`` from the repository root (needs redis-server on
PATH); it prints one table per scenario.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the test suite's redis-server launcher
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")

import django  # noqa: E402

django.setup()

from tests.support.redis_servers import RedisServer, wait_until  # noqa: E402
from tiered_cache.backend import TieredCache  # noqa: E402

TIMEOUT = 0.1  # SOCKET_TIMEOUT of L2, the tier's default
_prefixes = iter(range(10**6))


def build(server: RedisServer, folder: Path, **l2_options) -> TieredCache:
    tiers = [
        {"NAME": "l1", "BACKEND": "tiered_cache.tiers.memory.MemoryTier"},
        {
            "NAME": "l2",
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": server.url(0),
            "OPTIONS": {"SOCKET_TIMEOUT": TIMEOUT, **l2_options},
        },
        {
            "NAME": "l3",
            "BACKEND": "diskcache.DjangoCache",
            "LOCATION": str(folder),
        },
    ]
    params = {"KEY_PREFIX": f"f{next(_prefixes)}", "OPTIONS": {"TIERS": tiers}}
    cache = TieredCache("", params)
    wait_until(lambda: cache._chain.bus.settled, timeout=10, what="bus settled")
    return cache


def hung(server: RedisServer, scratch: Path) -> None:
    cache = build(server, scratch / "hung")
    cache.set("k", "v")
    final = cache.stored_key("k")
    times = []
    server.pause()
    try:
        while cache.breaker_state("l2") == "closed" and len(times) < 20:
            cache.tier("l1").delete(final)
            started = time.perf_counter()
            value = cache.get("k")
            times.append(time.perf_counter() - started)
            assert value == "v", value
    finally:
        server.resume()
    worst = max(times)
    print("\n== hung: Redis SIGSTOPped, reads served from L3")
    print(f"reads timed until the breaker opened: {len(times)}")
    print("per read (ms): " + ", ".join(f"{t * 1000:.1f}" for t in times))
    print(f"worst {worst * 1000:.1f} ms = {worst / TIMEOUT:.2f} x SOCKET_TIMEOUT")
    print(f"l2 stats: {cache.stats()['l2']}")


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def pool(server: RedisServer, scratch: Path, seconds: float) -> None:
    cache = build(
        server,
        scratch / "pool",
        CONNECTION_POOL_KWARGS={"max_connections": 20},
    )
    cache.set("k", "v")
    final = cache.stored_key("k")
    lines = Lines()
    logging.getLogger("tiered_cache").addHandler(lines)
    go, stop = threading.Event(), threading.Event()
    slowest = [0.0]
    calls = [0]

    def reader() -> None:
        go.wait()
        while not stop.is_set():
            cache.tier("l1").delete(final)
            started = time.perf_counter()
            cache.get("k")
            took = time.perf_counter() - started
            calls[0] += 1
            slowest[0] = max(slowest[0], took)

    threads = [threading.Thread(target=reader) for _ in range(200)]
    for thread in threads:
        thread.start()
    go.set()
    time.sleep(seconds)
    stop.set()
    for thread in threads:
        thread.join(30)
    logging.getLogger("tiered_cache").removeHandler(lines)
    stats = cache.stats()["l2"]
    print(f"\n== pool: 200 threads, pool of 20, healthy Redis, {seconds:.0f} s")
    print(f"reads {calls[0]}, slowest {slowest[0] * 1000:.0f} ms")
    print(
        f"breaker opened {stats['breaker_opened']}, busy {stats['busy']}, "
        f"errors {stats['errors']} {stats['errors_by_kind']}, "
        f"warning lines {len(lines.messages)}"
    )


def counter(server: RedisServer, scratch: Path) -> None:
    print("\n== counter: incr through L1 + L2 + L3 while Redis fails")
    print(
        f"{'fault':<16}{'incr':>6}{'raised':>8}{'below':>7}{'last':>7}"
        f"{'redis':>7}{'settled (s)':>13}{'incr during (ms)':>18}"
    )
    for fault in ("paused", "killed", "out_of_memory"):
        cache = build(server, scratch / f"counter-{fault}")
        cache.set("n", 0, timeout=600)
        last = 0
        for _ in range(5):
            last = cache.incr("n")
        if fault == "paused":
            server.pause()
        elif fault == "killed":
            server.kill()
        else:
            admin = server.client(0)
            admin.config_set("maxmemory-policy", "noeviction")
            admin.config_set("maxmemory", "1")
        raised = below = 0
        durations = []
        try:
            for _ in range(50):
                started = time.perf_counter()
                try:
                    last = cache.incr("n")
                except Exception:
                    raised += 1
                durations.append(time.perf_counter() - started)
                value = cache.get("n")
                below += value is not None and value < last
        finally:
            if fault == "paused":
                server.resume()
            elif fault == "killed":
                server.restart()
            else:
                server.client(0).config_set("maxmemory", "0")
        started = time.monotonic()
        client = server.client(0)
        key = cache.stored_key("n")
        wait_until(
            lambda c=client, k=key, n=last: int(c.get(k) or 0) >= n,
            timeout=30,
            what="Redis holds the count",
        )
        settled = time.monotonic() - started
        held = int(client.get(key))
        durations.sort()
        print(
            f"{fault:<16}{55:>6}{raised:>8}{below:>7}{last:>7}{held:>7}"
            f"{settled:>13.2f}"
            f"{durations[len(durations) // 2] * 1000:>9.2f} p50"
            f" {durations[-1] * 1000:.0f} max"
        )


def oom(server: RedisServer, scratch: Path) -> None:
    cache = build(server, scratch / "oom")
    admin = server.client(0, decode_responses=False)
    rows = []
    cache.set("deleted", "old")
    cache.set("replaced", "old")
    admin.config_set("maxmemory-policy", "noeviction")
    admin.config_set("maxmemory", "1")
    try:
        deleted = cache.delete("deleted")
        cache.set("replaced", "new")
        for key in ("deleted", "replaced"):
            cache.tier("l1").delete(cache.stored_key(key))
            rows.append(
                (
                    key,
                    cache.get(key),
                    admin.get(cache.stored_key(key)) is not None,
                )
            )
        stats = cache.stats()["l2"]
    finally:
        admin.config_set("maxmemory", "0")
    print("\n== oom: Redis out of memory (noeviction)")
    print(f"delete() returned {deleted}")
    for key, value, in_redis in rows:
        print(f"{key:<10} get -> {value!r:<8} Redis still holds a value: {in_redis}")
    print(f"l2 errors by kind: {stats['errors_by_kind']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=["hung", "pool", "counter", "oom"])
    parser.add_argument("--seconds", type=float, default=4.0, help="pool run")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    with tempfile.TemporaryDirectory() as scratch_dir:
        scratch = Path(scratch_dir)
        with RedisServer.start(scratch / "redis") as server:
            if args.only in (None, "hung"):
                hung(server, scratch)
            if args.only in (None, "pool"):
                pool(server, scratch, args.seconds)
            if args.only in (None, "counter"):
                counter(server, scratch)
            if args.only in (None, "oom"):
                oom(server, scratch)


if __name__ == "__main__":
    main()
