#!/usr/bin/env python
"""Warm restart on real traces: preloading L1 from the warm set after a restart.

Issue 9's acceptance test of warming. For each trace (``*.txt`` in the folder
given, one key per line) and each capacity (a share of the distinct keys):

1. *Before the restart*: replay the first half of the trace through an L1
   policy holding ``capacity`` objects (the policy objects ``MemoryTier``
   uses, called in the simulator's order), and record the access history as
   the backend does: every read of the keys sampled by hash
   (``--sample-rate``) and one read in ``--read-every`` of the others (both
   HISTORY's defaults unless given), time = the request's index.
2. *Warm set*: the history's best ``capacity`` keys by the scorer
   ``warm_cache`` uses (``score.decayed_frequency``); its half-life is the
   cache's *eviction age* measured on the first half: the number of requests
   in which ``capacity`` distinct keys were read, last before the restart
   (what an LRU of that size remembers).
3. *Restart*: a new, empty policy; the warm set is inserted coldest first
   (the preload's order); then the next ``capacity`` requests are replayed.

Reported per row: ``steady``, the hit ratio of the cache that did not restart
over the same ``capacity`` requests; ``warm``, the restarted and preloaded
one; ``cold``, a restarted empty one; ``warm/steady`` (target >= 0.90); and
``precision``, the share of preloaded keys read before their eviction
(target >= 0.60), the replay going on after the window until every preloaded
key is read or evicted (``precision_in_window``: read within the window; it
cannot exceed the window's hit ratio when ``capacity`` keys are preloaded).

    python bench/warm_restart.py TRACE_DIR [--policy lru,s3fifo] [--json]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tiered_cache.history.options import HISTORY_DEFAULTS  # noqa: E402
from tiered_cache.history.sampling import Sampler, key_hash  # noqa: E402
from tiered_cache.history.store import History  # noqa: E402
from tiered_cache.policy import load_policy  # noqa: E402
from tiered_cache.simulate import capacities, read_trace  # noqa: E402
from tiered_cache.warming.score import decayed_frequency  # noqa: E402


class L1:
    """A count-bounded store driven by a policy, in the simulator's call order."""

    def __init__(self, policy: str, capacity: int) -> None:
        self.policy = load_policy(policy)
        self.capacity = capacity
        self.store: set[str] = set()
        #: Preloaded keys not read yet; ``used`` counts those read before eviction.
        self.unused: set[str] = set()
        self.used = 0

    def access(self, key: str) -> bool:
        """Read ``key``: a hit, or a miss that inserts it. Return whether it hit."""
        if key in self.store:
            try:  # noqa: SIM105  (a lossy hit may raise KeyError, as in the tier)
                self.policy.on_hit(key)
            except KeyError:
                pass
            if key in self.unused:
                self.unused.discard(key)
                self.used += 1
            return True
        self.insert(key)
        return False

    def insert(self, key: str) -> None:
        policy = self.policy
        if len(self.store) >= self.capacity:
            if not policy.admit(key, 1):
                return
            while len(self.store) >= self.capacity:
                out = policy.victim()
                if out is None:
                    break
                self.store.discard(out)
                self.unused.discard(out)
                policy.on_evict(out)
        policy.on_insert(key, 1, None)
        self.store.add(key)


def eviction_age(keys: Sequence[str], capacity: int) -> int:
    """Return how many of the last requests of ``keys`` read ``capacity`` keys."""
    seen: set[str] = set()
    for age, key in enumerate(reversed(keys), start=1):
        seen.add(key)
        if len(seen) >= capacity:
            return age
    return len(keys)


def run_one(
    keys: Sequence[str],
    policy: str,
    capacity: int,
    sample_rate: float,
    preload_share: float = 1.0,
    min_score: float = 0.0,
    read_every: int = 0,
) -> dict:
    half = len(keys) // 2
    before, window = keys[:half], keys[half : half + capacity]
    steady = L1(policy, capacity)
    sampler = Sampler(sample_rate)
    accesses, names = [], {}
    countdown = read_every
    for at, key in enumerate(before):
        hashed = sampler(key)
        if hashed is None and read_every:  # as the recorder's countdown
            countdown -= 1
            if not countdown:
                countdown = read_every
                hashed = key_hash(key)
        if hashed is not None:
            names[hashed] = key
            accesses.append((hashed, float(at), 1, key in steady.store, "l1"))
        steady.access(key)
    half_life = float(eviction_age(before, capacity))
    history = History(accesses, names, sample_rate, read_every)
    ranked = decayed_frequency(history, half_life=half_life)
    best = ranked[: max(1, round(preload_share * capacity))]
    warm_set = [key for key, score in best if score >= min_score]
    warm = L1(policy, capacity)
    for key in reversed(warm_set):  # coldest first: the hottest are the newest
        warm.insert(key)
    warm.unused = set(warm.store)
    preloaded = len(warm.unused)
    cold = L1(policy, capacity)
    hits = {"steady": 0, "warm": 0, "cold": 0}
    for key in window:
        hits["steady"] += steady.access(key)
        hits["warm"] += warm.access(key)
        hits["cold"] += cold.access(key)
    n = len(window)
    ratio = {name: count / n for name, count in hits.items()}
    used_in_window = warm.used
    # A preloaded key is a good guess if it is read before it is evicted,
    # within the window or after it: replay on until every one is settled.
    for key in keys[half + capacity :]:
        if not warm.unused:
            break
        warm.access(key)
    return {
        "policy": policy,
        "capacity": capacity,
        "window": n,
        "half_life": half_life,
        "preloaded": preloaded,
        **ratio,
        "warm_over_steady": (
            ratio["warm"] / ratio["steady"] if ratio["steady"] else math.nan
        ),
        "precision": warm.used / preloaded if preloaded else math.nan,
        "precision_in_window": used_in_window / preloaded if preloaded else math.nan,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("traces", help="a folder of *.txt traces")
    parser.add_argument("--policy", default="lru,s3fifo")
    parser.add_argument("--capacity-ratio", default="0.001,0.01,0.1")
    parser.add_argument(
        "--sample-rate", type=float, default=HISTORY_DEFAULTS["SAMPLE_RATE"]
    )
    parser.add_argument(
        "--read-every",
        type=int,
        default=HISTORY_DEFAULTS["READ_EVERY"],
        help="one read in N of the keys outside the sample (0: none)",
    )
    parser.add_argument(
        "--preload-share",
        type=float,
        default=1.0,
        help="preload this share of capacity (the best-scored keys); default 1",
    )
    parser.add_argument(
        "--min-score",
        type=float,
        default=0.0,
        help="preload only keys scored at least this (decayed reads); default 0",
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    ratios = [float(r) for r in args.capacity_ratio.split(",")]
    rows = []
    for path in sorted(Path(args.traces).glob("*.txt")):
        keys = read_trace(path)
        for ratio, capacity in zip(ratios, capacities(keys, ratios), strict=True):
            for policy in args.policy.split(","):
                row = run_one(
                    keys,
                    policy,
                    capacity,
                    args.sample_rate,
                    args.preload_share,
                    args.min_score,
                    args.read_every,
                )
                rows.append({"trace": path.stem, "ratio": ratio, **row})
                if not args.json:
                    print(_line(rows[-1]), flush=True)
    if args.json:
        print(json.dumps(rows, indent=2))
    return 0


def _line(row: dict) -> str:
    return (
        f"{row['trace']:<16} {row['ratio']:>6.1%} C={row['capacity']:<6} "
        f"{row['policy']:<7} steady {row['steady']:6.1%}  warm {row['warm']:6.1%}  "
        f"cold {row['cold']:6.1%}  warm/steady {row['warm_over_steady']:5.2f}  "
        f"precision {row['precision']:5.1%} (in window "
        f"{row['precision_in_window']:5.1%}, preloaded {row['preloaded']})"
    )


if __name__ == "__main__":
    sys.exit(main())
