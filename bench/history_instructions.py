#!/usr/bin/env python
"""Instructions per L1 hit of ``cache.get`` with and without the access history.

``OPTIONS["HISTORY"]`` wraps the backend's ``get`` (``tiered_cache.history``).
Its cost on the L1 hit path is measured in instructions (callgrind), which a
busy machine does not move: each case runs with ``--few`` and ``--many`` gets
of one ``str`` value held in L1 after the same start-up; the difference over
the extra gets is the cost of one hit, CPython's interpreter included.

* ``off``: no HISTORY (the default): the plain ``get``;
* ``unsampled``: HISTORY on, the key outside the sample (SAMPLE_RATE set so
  that the key's hash falls outside it), READ_EVERY at its default (10: one
  read in ten recorded): what 99% of keys pay on average at the defaults;
* ``unsampled0``: the same with READ_EVERY 0 (no read of it recorded);
* ``sampled``: HISTORY on with SAMPLE_RATE 1: every read recorded;
* ``baseline`` (``--baseline CHECKOUT``): ``off`` over another checkout.

    python bench/history_instructions.py            # needs valgrind, ~5 min
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
# ``--baseline`` runs the ``off`` case over another checkout (the branch the
# history is compared to), whose path the child gets in BENCH_ROOT.
sys.path.insert(0, os.environ.get("BENCH_ROOT", str(ROOT)))

CASES = ("off", "unsampled", "unsampled0", "sampled")


def _history(case: str) -> dict | None:
    if case == "off":
        return None
    if case == "sampled":
        return {"SAMPLE_RATE": 1.0}
    if case == "unsampled0":
        return {"SAMPLE_RATE": 1e-9, "READ_EVERY": 0}
    return {"SAMPLE_RATE": 1e-9}  # no key of this run is in the sample


def child(case: str, gets: int) -> None:
    """Configure Django, hold one key in L1, then do ``gets`` hits."""
    import gc

    import django
    from django.conf import settings

    settings.configure(
        SECRET_KEY="bench-not-secret",
        CACHES={
            "default": {
                "BACKEND": "tiered_cache.TieredCache",
                "KEY_PREFIX": "bench",
                "OPTIONS": {
                    "TIERS": [
                        {"NAME": "l1", "BACKEND": "tiered_cache.tiers.MemoryTier"}
                    ],
                    "HISTORY": _history(case),
                },
            }
        },
    )
    django.setup()
    from django.core.cache import caches

    cache = caches["default"]
    cache.set("k", "value")
    get = cache.get
    for _ in range(100):  # warm every path once (memos, the deque)
        get("k")
    gc.collect()
    gc.disable()
    for _ in range(gets):
        get("k")


def instructions(case: str, gets: int, tmp: str, root: str | None = None) -> int:
    out = Path(tmp) / f"callgrind.{case}.{gets}.{bool(root)}"
    env = {**os.environ, "PYTHONHASHSEED": "0", "BENCH_ROOT": root or str(ROOT)}
    return callgrind.instructions(__file__, ["--child", case, str(gets)], out, env)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--few", type=int, default=1000)
    parser.add_argument("--many", type=int, default=6000)
    parser.add_argument(
        "--baseline",
        metavar="CHECKOUT",
        help="also run the off case over this checkout (e.g. the main branch)",
    )
    parser.add_argument("--child", nargs=2, metavar=("CASE", "GETS"))
    args = parser.parse_args(argv)
    if args.child:
        child(args.child[0], int(args.child[1]))
        return 0
    if shutil.which("valgrind") is None:
        print("valgrind is required (apt-get install valgrind)", file=sys.stderr)
        return 1
    extra = args.many - args.few
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        if args.baseline:
            few = instructions("off", args.few, tmp, args.baseline)
            many = instructions("off", args.many, tmp, args.baseline)
            rows["baseline"] = (many - few) / extra
        for case in CASES:
            few = instructions(case, args.few, tmp)
            many = instructions(case, args.many, tmp)
            rows[case] = (many - few) / extra
    base = rows.get("baseline", rows["off"])
    print(f"{'case':<10}{'instr/hit':>12}{'vs ' + next(iter(rows)):>14}")
    for case, value in rows.items():
        print(f"{case:<10}{value:>12,.0f}{value - base:>+14,.0f}")
    print("(instructions per L1 hit of cache.get, CPython's interpreter included)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
