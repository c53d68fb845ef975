"""Replay a cache trace through the L1's eviction policies: hit ratio and cost.

``python -m tiered_cache.simulate TRACE --capacity-ratio 0.001,0.01,0.1
--policy lru,s3fifo,sieve,tinylfu [--json]`` reads a trace (one key per line,
or ``key,size`` lines; the size is ignored: every object has size 1, as in the
published hit-ratio tables), and for each (policy, capacity) replays it from an
empty cache through the policy objects ``MemoryTier`` builds
(``tiered_cache.policy.load_policy``), calling them in the order the tier does
(``_store`` and ``_evict_for`` in ``tiers/memory.py``): a hit calls
``on_hit``; a miss into a full store calls ``admit`` once, then ``victim`` and
``on_evict`` until there is room, then ``on_insert``. The capacity is a count
of objects: ``--capacity N``, or ``--capacity-ratio`` times the trace's number
of distinct keys (rounded, at least 1).

Cost: every policy call is timed with ``perf_counter_ns`` (the timer's own cost,
measured at start, is subtracted); a call that took over 1 ms was descheduled
by a busy machine rather than working: it is dropped (``dropped`` counts them)
and the means are taken over the other calls. ``us_per_hit`` is the work on
the lock-free hit path; ``us_per_miss`` is everything a miss costs the policy
under the lock (admission, evictions, insertion, and the hits the read buffer
deferred to it: see ``policy/hits.py``); ``us_per_eviction`` is the same total
divided by the evictions (amortised); ``us_per_request`` is all policy work
over all requests. The simulator's own bookkeeping (the set standing for the
store) is not counted. The machine's load moves these numbers: compare
policies measured in the same run.

``--policy learned`` replays the learned policy from an empty state: it
learns only from the requests replayed so far (its labels wait for the
stream to decide them; nothing looks ahead), and no shipped weights are used.
``--policy-options '{"learned": {"wait_for_fit": true}}'`` makes it wait for
each background fit at the eviction after it starts, so a replay does not
depend on how busy the machine is (``bench/policies.py`` does this).

This module is pure Python (no Django): it can run where the site does not.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from .policy import REGISTRY, load_policy

__all__ = ["Result", "capacities", "main", "read_trace", "replay"]


@dataclass
class Result:
    """One replay: a policy at a capacity over a trace."""

    trace: str
    policy: str
    capacity: int
    capacity_ratio: float | None
    requests: int
    hits: int
    hit_ratio: float
    evictions: int
    refused: int
    seconds: float
    cpu_seconds: float
    dropped: int
    us_per_request: float
    us_per_hit: float
    us_per_miss: float
    us_per_eviction: float


#: A timed call longer than this (ns) was descheduled, not working: dropped.
PREEMPTED = 1_000_000


def read_trace(path: str | Path) -> list[str]:
    """Return the keys of ``path`` in order (``key`` or ``key,size`` lines)."""
    keys = []
    with open(path, encoding="utf-8") as lines:
        for line in lines:
            line = line.strip()
            if line and not line.startswith("#"):
                keys.append(sys.intern(line.split(",", 1)[0]))
    return keys


def capacities(keys: Sequence[str], ratios: Sequence[float]) -> list[int]:
    """Return ``round(ratio x distinct keys)`` (at least 1) for each ratio."""
    unique = len(set(keys))
    return [max(1, round(ratio * unique)) for ratio in ratios]


def _timer_cost(rounds: int = 20000) -> int:
    """Return the median ns of an empty ``perf_counter_ns`` interval."""
    clock = time.perf_counter_ns
    samples = []
    for _ in range(rounds):
        start = clock()
        samples.append(clock() - start)
    samples.sort()
    return samples[len(samples) // 2]


def replay(
    keys: Sequence[str],
    policy: str,
    capacity: int,
    *,
    options: dict | None = None,
    trace: str = "",
    capacity_ratio: float | None = None,
    timer_cost: int | None = None,
) -> Result:
    """Replay ``keys`` through a new ``policy`` holding ``capacity`` objects."""
    if capacity < 1:
        raise ValueError(f"capacity must be at least 1, not {capacity}")
    if timer_cost is None:
        timer_cost = _timer_cost()
    p = load_policy(policy, options)
    on_hit, on_insert, on_evict = p.on_hit, p.on_insert, p.on_evict
    admit, victim = p.admit, p.victim
    clock = time.perf_counter_ns
    store: set[str] = set()
    hits = evictions = refused = 0
    hit_ns = miss_ns = hits_timed = misses_timed = 0
    started = time.perf_counter()
    cpu_started = time.process_time()
    for key in keys:
        if key in store:
            hits += 1
            t0 = clock()
            try:  # noqa: SIM105  (as the tier: a lossy hit may raise KeyError)
                on_hit(key)
            except KeyError:
                pass
            t0 = clock() - t0
            if t0 < PREEMPTED:
                hit_ns += t0
                hits_timed += 1
            continue
        t0 = clock()
        if len(store) >= capacity:
            if not admit(key, 1):
                refused += 1
                t0 = clock() - t0
                if t0 < PREEMPTED:
                    miss_ns += t0
                    misses_timed += 1
                continue
            while len(store) >= capacity:
                out = victim()
                if out is None:
                    break
                store.discard(out)
                on_evict(out)
                evictions += 1
        on_insert(key, 1, None)
        t0 = clock() - t0
        if t0 < PREEMPTED:
            miss_ns += t0
            misses_timed += 1
        store.add(key)
    seconds = time.perf_counter() - started
    cpu_seconds = time.process_time() - cpu_started
    requests = len(keys)
    misses = requests - hits
    # Per timed call, less the timer's own cost, then scaled to all calls.
    hit_ns = max(0, hit_ns - hits_timed * timer_cost) * hits / max(1, hits_timed)
    miss_ns = (
        max(0, miss_ns - misses_timed * timer_cost) * misses / max(1, misses_timed)
    )
    return Result(
        trace=trace,
        policy=p.name,
        capacity=capacity,
        capacity_ratio=capacity_ratio,
        requests=requests,
        hits=hits,
        hit_ratio=hits / requests if requests else 0.0,
        evictions=evictions,
        refused=refused,
        seconds=round(seconds, 3),
        cpu_seconds=round(cpu_seconds, 3),
        dropped=requests - hits_timed - misses_timed,
        us_per_request=_us(hit_ns + miss_ns, requests),
        us_per_hit=_us(hit_ns, hits),
        us_per_miss=_us(miss_ns, misses),
        us_per_eviction=_us(miss_ns, evictions),
    )


def _us(ns: float, count: int) -> float:
    return round(ns / count / 1000, 4) if count else 0.0


def _floats(text: str) -> list[float]:
    try:
        values = [float(part) for part in text.split(",") if part.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc
    if not values or any(not 0 < v <= 1 for v in values):
        raise argparse.ArgumentTypeError("ratios must be in (0, 1]")
    return values


def _ints(text: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError("capacities must be positive integers")
    return values


def _names(text: str) -> list[str]:
    names = [part.strip() for part in text.split(",") if part.strip()]
    for name in names:
        if name not in REGISTRY and "." not in name:
            raise argparse.ArgumentTypeError(
                f"unknown policy {name!r}; known: {', '.join(sorted(REGISTRY))}"
            )
    return names


def _options(text: str) -> dict[str, dict]:
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not JSON: {exc}") from exc
    if not isinstance(value, dict) or not all(
        isinstance(v, dict) for v in value.values()
    ):
        raise argparse.ArgumentTypeError("give a JSON object of objects")
    return value


def parser() -> argparse.ArgumentParser:
    """Return the command line parser (``--help`` documents every option)."""
    cli = argparse.ArgumentParser(
        prog="python -m tiered_cache.simulate",
        description="Replay a trace through L1 eviction policies.",
    )
    cli.add_argument("trace", nargs="+", help="trace file(s): key or key,size lines")
    size = cli.add_mutually_exclusive_group()
    size.add_argument(
        "--capacity-ratio",
        type=_floats,
        default=[0.001, 0.01, 0.1],
        help="capacities as shares of the distinct keys (default 0.001,0.01,0.1)",
    )
    size.add_argument(
        "--capacity", type=_ints, help="absolute capacities in objects (N[,M...])"
    )
    cli.add_argument(
        "--policy",
        type=_names,
        default=["lru", "s3fifo", "sieve", "tinylfu"],
        help=f"policies, comma-separated (known: {', '.join(sorted(REGISTRY))}, "
        "or dotted paths)",
    )
    cli.add_argument(
        "--policy-options",
        type=_options,
        default={},
        help="JSON object of POLICY_OPTIONS by policy name, e.g. "
        '\'{"learned": {"wait_for_fit": true}}\'',
    )
    cli.add_argument("--json", action="store_true", help="print JSON lines")
    return cli


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    args = parser().parse_args(argv)
    timer_cost = _timer_cost()
    if not args.json:
        print(
            f"{'trace':<20} {'policy':<8} {'capacity':>9} {'requests':>9} "
            f"{'hits':>9} {'hit %':>7} {'s':>7} {'us/req':>7} {'us/hit':>7} "
            f"{'us/miss':>8} {'us/evict':>8}"
        )
    for path in args.trace:
        try:
            keys = read_trace(path)
        except OSError as exc:
            print(f"cannot read trace {path}: {exc}", file=sys.stderr)
            return 2
        if args.capacity:
            sizes = [(c, None) for c in args.capacity]
        else:
            sizes = list(
                zip(
                    capacities(keys, args.capacity_ratio),
                    args.capacity_ratio,
                    strict=True,
                )
            )
        for name in args.policy:
            for capacity, ratio in sizes:
                result = replay(
                    keys,
                    name,
                    capacity,
                    options=args.policy_options.get(name),
                    trace=Path(path).name,
                    capacity_ratio=ratio,
                    timer_cost=timer_cost,
                )
                if args.json:
                    print(json.dumps(asdict(result)), flush=True)
                else:
                    print(
                        f"{result.trace:<20} {result.policy:<8} {capacity:>9} "
                        f"{result.requests:>9} {result.hits:>9} "
                        f"{100 * result.hit_ratio:>7.2f} {result.seconds:>7.2f} "
                        f"{result.us_per_request:>7.3f} {result.us_per_hit:>7.3f} "
                        f"{result.us_per_miss:>8.3f} {result.us_per_eviction:>8.3f}",
                        flush=True,
                    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
