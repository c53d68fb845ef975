#!/usr/bin/env python
"""Instructions per L1 hit and per L1 eviction, for each eviction policy.

The policies' cost on a busy 2-core machine is best compared in instructions
(``valgrind --tool=callgrind``), which do not move with the load, rather than
in microseconds. Each case runs twice under callgrind, with ``--few`` and
``--many`` operations after the same start-up; the difference divided by the
extra operations is the cost of one operation in the memory tier
(``MemoryTier``, no backend, no Django settings):

* ``hit``: ``get_value`` of a ``str`` in a full store of 1 000 entries: the
  lock-free hit path, what a view pays per L1 hit;
* ``hit+drain``: the same hits, then one insertion: for the policies with a
  read buffer, the deferred work of the hits is replayed there, so this is
  the hit's whole cost;
* ``evict``: ``set`` of a new key into the full store (one eviction each).

    python bench/policy_instructions.py            # needs valgrind, ~5 min
    python bench/policy_instructions.py --policy lru,tinylfu
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
sys.path.insert(0, str(ROOT))

CASES = ("hit", "hit+drain", "evict")
ENTRIES = 1000


def child(policy: str, case: str, ops: int) -> None:
    """Fill a 1 000-entry L1 with ``policy``, then do ``ops`` operations."""
    import gc
    import time

    from tiered_cache.envelope import Record
    from tiered_cache.tiers.memory import MemoryTier

    tier = MemoryTier(
        "",
        {"OPTIONS": {"MAX_ENTRIES": ENTRIES, "POLICY": policy}},
        name="l1",
        clock=time.time,
    )
    keys = [f"key:{i}" for i in range(ENTRIES)]
    for key in keys:
        tier.set(key, Record.for_value("v", None))
    for key in keys[:100]:  # warm every path once
        tier.get_value(key, None)
    tier.set("warm", Record.for_value("v", None))
    get = tier.get_value
    gc.collect()
    gc.disable()  # a collection in one run and not the other is not the policy
    if case == "evict":
        records = [Record.for_value("v", None) for _ in range(ops)]
        new = [f"new:{i}" for i in range(ops)]
        for key, record in zip(new, records, strict=True):
            tier.set(key, record)
        return
    reads = [keys[(i * 7) % ENTRIES] for i in range(ops)]
    for key in reads:
        get(key, None)
    if case == "hit+drain":
        tier.set("drain", Record.for_value("v", None))


def instructions(policy: str, case: str, ops: int, tmp: str) -> int:
    out = Path(tmp) / f"callgrind.{policy}.{case}.{ops}"
    # One hash seed for every run: dict probing depends on the str hashes.
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    args = ["--child", policy, case, str(ops)]
    return callgrind.instructions(__file__, args, out, env)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--few", type=int, default=500)
    parser.add_argument("--many", type=int, default=3500)
    parser.add_argument("--policy", default="lru,s3fifo,sieve,tinylfu")
    parser.add_argument("--child", nargs=3, metavar=("POLICY", "CASE", "OPS"))
    args = parser.parse_args(argv)
    if args.child:
        policy, case, ops = args.child
        child(policy, case, int(ops))
        return 0
    if shutil.which("valgrind") is None:
        print("valgrind is required (apt-get install valgrind)", file=sys.stderr)
        return 1
    extra = args.many - args.few
    print(f"{'policy':<10}" + "".join(f"{case:>12}" for case in CASES))
    with tempfile.TemporaryDirectory() as tmp:
        for policy in args.policy.split(","):
            cells = []
            for case in CASES:
                few = instructions(policy, case, args.few, tmp)
                many = instructions(policy, case, args.many, tmp)
                cells.append((many - few) / extra)
            print(f"{policy:<10}" + "".join(f"{c:>12,.0f}" for c in cells), flush=True)
    print("(instructions per operation, CPython's interpreter included)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
