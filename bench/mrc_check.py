#!/usr/bin/env python
"""How far the online L1 miss-ratio curve is from real LRU hit ratios.

``cache_stats`` reports "hit ratio at 1/2x, 1x, 2x, 4x the current L1 size"
from a SHARDS estimate over the history's sampled keys
(``tiered_cache.history.shards``). Here that estimate is fed with each
trace's sampled keys (``--sample-rate``, default the HISTORY default 1%) and
read at those multiples of a "current size" (``--capacity-ratio`` of the
distinct keys); the truth is the simulator's LRU replay of the whole trace
at each of those sizes (``tiered_cache.simulate.replay``, the L1's LRU
policy object, cold start included, as the estimate). Printed: both, and the
error in points, plain (what the backend reports) and with the SHARDS_adj
correction (which needs the count of every request, known offline).

    python bench/mrc_check.py TRACE_DIR [--sample-rate 0.01] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tiered_cache.history.options import HISTORY_DEFAULTS  # noqa: E402
from tiered_cache.history.sampling import Sampler  # noqa: E402
from tiered_cache.history.shards import MissRatioCurve  # noqa: E402
from tiered_cache.simulate import capacities, read_trace, replay  # noqa: E402

MULTIPLES = (0.5, 1.0, 2.0, 4.0)


def check(keys: list[str], ratios: list[float], rate: float, max_keys: int) -> list:
    sampler = Sampler(rate)
    curve = MissRatioCurve(rate, max_keys)
    curve.feed(h for h in map(sampler, keys) if h is not None)
    rows = []
    exact: dict[int, float] = {}
    for ratio, size in zip(ratios, capacities(keys, ratios), strict=True):
        sizes = [max(1, round(m * size)) for m in MULTIPLES]
        plain = curve.hit_ratios(sizes)
        adjusted = curve.hit_ratios(sizes, requests=len(keys))
        for multiple, n, est, adj in zip(
            MULTIPLES, sizes, plain, adjusted, strict=True
        ):
            if n not in exact:
                exact[n] = replay(keys, "lru", n, timer_cost=0).hit_ratio
            rows.append(
                {
                    "ratio": ratio,
                    "size": size,
                    "multiple": multiple,
                    "entries": n,
                    "lru": exact[n],
                    "estimate": est,
                    "estimate_adj": adj,
                    "error_points": 100 * (est - exact[n]),
                    "error_adj_points": 100 * (adj - exact[n]),
                }
            )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("traces", help="a folder of *.txt traces")
    parser.add_argument("--capacity-ratio", default="0.001,0.01,0.1")
    parser.add_argument(
        "--sample-rate", type=float, default=HISTORY_DEFAULTS["SAMPLE_RATE"]
    )
    parser.add_argument("--max-keys", type=int, default=HISTORY_DEFAULTS["MRC_KEYS"])
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    ratios = [float(r) for r in args.capacity_ratio.split(",")]
    out = {}
    for path in sorted(Path(args.traces).glob("*.txt")):
        rows = check(read_trace(path), ratios, args.sample_rate, args.max_keys)
        out[path.stem] = rows
        if args.json:
            continue
        for row in rows:
            print(
                f"{path.stem:<16} size {row['ratio']:>5.1%} x{row['multiple']:<4g}"
                f"({row['entries']:>6}): LRU {row['lru']:6.1%}  estimate "
                f"{row['estimate']:6.1%} ({row['error_points']:+5.1f} pt)  adj "
                f"{row['estimate_adj']:6.1%} ({row['error_adj_points']:+5.1f} pt)",
                flush=True,
            )
        worst = max(abs(row["error_points"]) for row in rows)
        mean = sum(abs(row["error_points"]) for row in rows) / len(rows)
        print(f"{path.stem}: mean |error| {mean:.2f} pt, worst {worst:.2f} pt")
    if args.json:
        print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
