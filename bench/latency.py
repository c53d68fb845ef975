#!/usr/bin/env python
"""Per-call latency of TieredCache's paths, side by side with the backends it wraps.

Run from the repository root::

    .venv/bin/python bench/latency.py            # full run (about two minutes)
    .venv/bin/python bench/latency.py --quick    # smoke run (seconds)
    .venv/bin/python bench/latency.py --rounds 40 --json bench/out/latency.json
    .venv/bin/python bench/latency.py --breakdown  # component costs, then exit

What it does, in one process:

* configures Django itself (no settings module), starts its own ``redis-server``
  on a free 127.0.0.1 port (persistence off; stopped by PID at the end) and puts
  every diskcache directory in a fresh temp dir;
* measures each case in *interleaved rounds*: every round visits every case
  once (starting one case later each round, odd rounds backwards), so slow
  drift of the machine hits all cases alike; the rows each acceptance ratio
  compares are neighbours, so they are measured back to back;
* a sample is one batch of B calls timed with ``perf_counter_ns`` around the
  whole batch and divided by B, with the garbage collector off; per-call work
  that must not be timed (deleting the key from L1 before an L2-hit call) is
  done for the whole batch before the clock starts, on B distinct keys;
* p50 and p99 are over those samples (so p99 is the 99th percentile of batch
  means, not of single calls: it shows jitter between batches, it smooths
  single-call outliers);
* before and after the timed rounds, each TieredCache case is run once with the
  tier counters watched, to prove it takes the path its name claims.

Values: "~100 B" is a 6-field dict (104 B pickled); "10 KB" is a dict holding
a list of 236 small dicts (10,198 B pickled), so every backend, L1 included,
must copy it (unpickle) on each hit. ``{% cache %}`` fragments are 100 B and
10 KB of static text (Django caches them as ``SafeString``).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import importlib
import itertools
import json
import math
import os
import pickle
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

from _servers import RedisServer  # noqa: E402

perf_counter_ns = time.perf_counter_ns
thread_time_ns = time.thread_time_ns

SMALL = {
    "id": 12345,
    "name": "widget",
    "sku": "W-0012345",
    "price": 9.99,
    "tags": ["a", "b"],
    "active": True,
}
LARGE = {
    "items": [
        {"id": i, "name": f"item-{i:04d}", "price": i * 0.5, "tags": ["x", "y"]}
        for i in range(236)
    ]
}
VALUES = {"small": SMALL, "large": LARGE}
FRAGMENTS = {
    "small": "<p>" + "x" * 93 + "</p>",  # 100 characters
    "large": "<p>" + "x" * (10 * 1024 - 7) + "</p>",  # 10 KiB
}
SIZE_LABEL = {"small": "~100 B", "large": "10 KB"}
SETUP_TIMEOUT = 3600  # keys the cases read must outlive the run

#: Case order within a round: the rows each ratio compares sit side by side.
ORDER = [
    "noop",
    "tc.l1_hit",
    "lm.get",
    "tc.l2_hit",
    "dr.get",
    "tc.frag",
    "lm.frag",
    "dr.frag",
    "tpl.static",
    "tc.get_many",
    "lm.get_many",
    "tc.l3_hit",
    "dc.get",
    "tc.l3_hit_full",
    "tc.miss",
    "tc.set",
    "lm.set",
    "dr.set",
    "dc.set",
]

TARGETS = [
    # (label, numerator row, denominator row, bound)
    ("TieredCache L1 hit / LocMemCache.get hit", "tc.l1_hit", "lm.get", 0.50),
    ("TieredCache L1-miss/L2-hit / django-redis get", "tc.l2_hit", "dr.get", 1.10),
    ("TieredCache {% cache %} hit / LocMemCache's", "tc.frag", "lm.frag", 0.80),
]


# -- timed loops (kept tiny: the loop itself is part of every number) ----------


def loop1(fn: Callable, args: list) -> int:
    t0 = perf_counter_ns()
    for a in args:
        fn(a)
    return perf_counter_ns() - t0


def loop2(fn: Callable, args: list, value: Any) -> int:
    t0 = perf_counter_ns()
    for a in args:
        fn(a, value)
    return perf_counter_ns() - t0


def loop_render(render: Callable, n: int, context_class: type) -> int:
    rep = itertools.repeat(None, n)
    t0 = perf_counter_ns()
    for _ in rep:
        render(context_class())
    return perf_counter_ns() - t0


def noop(_a: Any) -> None:
    return None


# -- cases ----------------------------------------------------------------------


class Case:
    """One row x one value column: how to take a sample and what path it takes."""

    def __init__(
        self,
        row: str,
        label: str,
        size: str,
        batch: int,
        sample: Callable[[], int],
        *,
        prepare: Callable[[], None] | None = None,
        refresh: Callable[[], None] | None = None,
        expect: Callable[[dict, dict], list[str]] | None = None,
        watch: Any = None,
    ) -> None:
        self.row = row
        self.label = label
        self.size = size
        self.batch = batch
        self._sample = sample
        self.prepare = prepare
        self.refresh = refresh
        self.expect = expect
        self.watch = watch  # a TieredCache whose tier counters `expect` reads
        self.samples: list[float] = []  # wall us per call, one per sample
        self.cpu: list[float] = []  # this thread's CPU us per call, same samples
        self.rounds: list[int] = []  # the round each sample was taken in

    def take(self) -> tuple[float, float]:
        """Return (wall, CPU) microseconds per call for one batch."""
        if self.prepare is not None:
            self.prepare()
        gc.disable()
        try:
            c0 = thread_time_ns()
            ns = self._sample()
            cpu = thread_time_ns() - c0
        finally:
            gc.enable()
        return ns / self.batch / 1000.0, cpu / self.batch / 1000.0

    def verify(self) -> list[str]:
        if self.expect is None:
            return []
        if self.refresh is not None:
            self.refresh()
        before = self.watch.stats()
        self.take()
        after = self.watch.stats()
        delta = {
            tier: {
                k: after[tier][k] - before[tier][k]
                for k in after[tier]
                if k != "breaker"
            }
            for tier in after
        }
        return [f"{self.row}/{self.size}: {p}" for p in self.expect(delta, after)]


def exact(tier: str, counter: str, n: int):
    def check(delta: dict, _after: dict) -> list[str]:
        got = delta.get(tier, {}).get(counter)
        return [] if got == n else [f"{tier}.{counter} changed by {got}, expected {n}"]

    return check


def all_of(*checks):
    def check(delta: dict, after: dict) -> list[str]:
        problems = []
        for c in checks:
            problems.extend(c(delta, after))
        return problems

    return check


# -- Django, caches --------------------------------------------------------------


def configure_django() -> None:
    from django.conf import settings

    settings.configure(
        DEBUG=False,
        SECRET_KEY="bench-latency-not-secret",
        INSTALLED_APPS=[],
        USE_TZ=True,
        TEMPLATES=[
            {
                "BACKEND": "django.template.backends.django.DjangoTemplates",
                "DIRS": [],
                "APP_DIRS": False,
                "OPTIONS": {},
            }
        ],
        CACHES={},  # filled in by build_caches once we know which tiers import
    )
    import django

    django.setup()


def adapter_status() -> dict[str, str | None]:
    """Return {"redis": None or why not, "disk": ...} for the L2/L3 adapters."""
    status: dict[str, str | None] = {}
    for name, module in (
        ("redis", "tiered_cache.tiers.redis"),
        ("disk", "tiered_cache.tiers.disk"),
    ):
        try:
            importlib.import_module(module)
            status[name] = None
        except Exception as exc:  # missing file or broken import
            status[name] = f"{type(exc).__name__}: {exc}"
    return status


def build_caches(redis_url: Callable[[int], str], tmp: str, status: dict) -> dict:
    from django.conf import settings

    l1 = {"NAME": "l1", "BACKEND": "tiered_cache.tiers.MemoryTier"}
    l2 = {
        "NAME": "l2",
        "BACKEND": "django_redis.cache.RedisCache",
        "LOCATION": redis_url(1),
    }

    def l3(sub: str) -> dict:
        return {
            "NAME": "l3",
            "BACKEND": "diskcache.DjangoCache",
            "LOCATION": os.path.join(tmp, sub),
        }

    full = [l1]
    if status["redis"] is None:
        full.append(l2)
    if status["disk"] is None:
        full.append(l3("tiered-l3"))
    caches = {
        "default": {
            "BACKEND": "tiered_cache.TieredCache",
            "TIMEOUT": 300,
            "KEY_PREFIX": "bench",
            "OPTIONS": {"TIERS": full},
        },
        "locmem": {
            "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
            "LOCATION": "bench-locmem",
            "TIMEOUT": 300,
            "KEY_PREFIX": "bench",
            # Django's default MAX_ENTRIES=300 would cull during the set case.
            "OPTIONS": {"MAX_ENTRIES": 100_000},
        },
        "redis": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": redis_url(2),
            "TIMEOUT": 300,
            "KEY_PREFIX": "bench",
        },
        "disk": {
            "BACKEND": "diskcache.DjangoCache",
            "LOCATION": os.path.join(tmp, "diskcache-plain"),
            "TIMEOUT": 300,
            "KEY_PREFIX": "bench",
        },
    }
    if status["disk"] is None:
        caches["tiered_l13"] = {
            "BACKEND": "tiered_cache.TieredCache",
            "TIMEOUT": 300,
            "KEY_PREFIX": "bench",
            "OPTIONS": {"TIERS": [l1, l3("tiered-l13")]},
        }
    settings.CACHES = caches
    return caches


def set_default(cache: Any) -> None:
    """Make ``cache`` what ``caches["default"]`` returns in this thread."""
    from django.core.cache import caches

    caches._connections.default = cache


# -- building the cases -----------------------------------------------------------


def build_cases(status: dict, batch_scale: float) -> list[Case]:
    from django.core.cache import caches
    from django.core.cache.utils import make_template_fragment_key
    from django.template import Context, Template

    def B(n: int) -> int:
        return max(5, int(n * batch_scale))

    tc = caches["default"]
    lm = caches["locmem"]
    dr = caches["redis"]
    dc = caches["disk"]
    t13 = caches["tiered_l13"] if status["disk"] is None else None
    has_l2 = status["redis"] is None
    has_l3 = status["disk"] is None
    l1 = tc.tier("l1")

    cases: list[Case] = []

    def keys(tag: str, size: str, n: int) -> list[str]:
        return [f"{tag}:{size}:{i}" for i in range(n)]

    def setter(cache, ks, value):
        def refresh() -> None:
            for k in ks:
                cache.set(k, value, SETUP_TIMEOUT)

        return refresh

    for size in ("small", "large"):
        v = VALUES[size]
        fast, slow, many = B(200), B(50), B(50)

        # Harness floor: the same loop calling a function that does nothing.
        ks = keys("noop", size, fast)
        cases.append(
            Case(
                "noop",
                "harness: loop + no-op call",
                size,
                fast,
                lambda ks=ks: loop1(noop, ks),
            )
        )

        # ---- TieredCache ----
        ks = keys("l1", size, fast)
        cases.append(
            Case(
                "tc.l1_hit",
                "TieredCache get: L1 hit",
                size,
                fast,
                lambda ks=ks: loop1(tc.get, ks),
                refresh=setter(tc, ks, v),
                watch=tc,
                expect=all_of(
                    exact("l1", "hits", fast),
                    *([exact("l2", "hits", 0)] if has_l2 else []),
                ),
            )
        )

        if has_l2:
            ks = keys("l2", size, slow)
            finals = [tc.make_key(k) for k in ks]
            cases.append(
                Case(
                    "tc.l2_hit",
                    "TieredCache get: L1 miss, L2 hit",
                    size,
                    slow,
                    lambda ks=ks: loop1(tc.get, ks),
                    prepare=lambda f=finals: [l1.delete(k) for k in f] and None,
                    refresh=setter(tc, ks, v),
                    watch=tc,
                    expect=all_of(
                        exact("l1", "misses", slow),
                        exact("l2", "hits", slow),
                        *([exact("l3", "hits", 0)] if has_l3 else []),
                    ),
                )
            )

        if has_l3:
            ks = keys("l3", size, slow)
            finals = [t13.make_key(k) for k in ks]
            t13_l1 = t13.tier("l1")
            cases.append(
                Case(
                    "tc.l3_hit",
                    "TieredCache get: L1 miss, L3 hit (L1+L3 config)",
                    size,
                    slow,
                    lambda ks=ks: loop1(t13.get, ks),
                    prepare=lambda f=finals, t=t13_l1: (
                        [t.delete(k) for k in f] and None
                    ),
                    refresh=setter(t13, ks, v),
                    watch=t13,
                    expect=all_of(
                        exact("l1", "misses", slow), exact("l3", "hits", slow)
                    ),
                )
            )
            if has_l2:
                ks = keys("l3f", size, slow)
                finals = [tc.make_key(k) for k in ks]
                l2 = tc.tier("l2")

                def prep_l3f(f=finals, l2=l2) -> None:
                    for k in f:
                        l1.delete(k)
                        l2.delete(k)

                cases.append(
                    Case(
                        "tc.l3_hit_full",
                        "TieredCache get: L1+L2 miss, L3 hit (+2 promotions)",
                        size,
                        slow,
                        lambda ks=ks: loop1(tc.get, ks),
                        prepare=prep_l3f,
                        refresh=setter(tc, ks, v),
                        watch=tc,
                        expect=all_of(
                            exact("l2", "misses", slow), exact("l3", "hits", slow)
                        ),
                    )
                )

        if size == "small":  # a miss does not depend on the value
            ks = keys("absent", size, slow)
            n_tiers = len(tc.tiers)
            cases.append(
                Case(
                    "tc.miss",
                    f"TieredCache get: miss ({n_tiers} tiers)",
                    size,
                    slow,
                    lambda ks=ks: loop1(tc.get, ks),
                    watch=tc,
                    expect=all_of(*[exact(t.name, "misses", slow) for t in tc.tiers]),
                )
            )

        ks = keys("set", size, slow)
        cases.append(
            Case(
                "tc.set",
                f"TieredCache set ({len(tc.tiers)} tiers)",
                size,
                slow,
                lambda ks=ks, v=v: loop2(tc.set, ks, v),
            )
        )

        ks = keys("gm", size, 100)
        groups = [ks[i : i + 10] for i in range(0, 100, 10)]
        args = [groups[i % 10] for i in range(many)]
        cases.append(
            Case(
                "tc.get_many",
                "TieredCache get_many(10): all L1 hits",
                size,
                many,
                lambda a=args: loop1(tc.get_many, a),
                refresh=setter(tc, ks, v),
                watch=tc,
                expect=all_of(
                    exact("l1", "hits", 10 * many),
                    *([exact("l2", "hits", 0)] if has_l2 else []),
                ),
            )
        )

        # ---- LocMemCache ----
        ks = keys("l1", size, fast)
        cases.append(
            Case(
                "lm.get",
                "LocMemCache get hit",
                size,
                fast,
                lambda ks=ks: loop1(lm.get, ks),
                refresh=setter(lm, ks, v),
            )
        )
        ks = keys("set", size, slow)
        cases.append(
            Case(
                "lm.set",
                "LocMemCache set",
                size,
                slow,
                lambda ks=ks, v=v: loop2(lm.set, ks, v),
            )
        )
        ks = keys("gm", size, 100)
        groups = [ks[i : i + 10] for i in range(0, 100, 10)]
        args = [groups[i % 10] for i in range(many)]
        cases.append(
            Case(
                "lm.get_many",
                "LocMemCache get_many(10) hits",
                size,
                many,
                lambda a=args: loop1(lm.get_many, a),
                refresh=setter(lm, ks, v),
            )
        )

        # ---- django-redis ----
        ks = keys("dr", size, slow)
        cases.append(
            Case(
                "dr.get",
                "django-redis get hit",
                size,
                slow,
                lambda ks=ks: loop1(dr.get, ks),
                refresh=setter(dr, ks, v),
            )
        )
        ks = keys("set", size, slow)
        cases.append(
            Case(
                "dr.set",
                "django-redis set",
                size,
                slow,
                lambda ks=ks, v=v: loop2(dr.set, ks, v),
            )
        )

        # ---- diskcache ----
        ks = keys("dc", size, slow)
        cases.append(
            Case(
                "dc.get",
                "diskcache.DjangoCache get hit",
                size,
                slow,
                lambda ks=ks: loop1(dc.get, ks),
                refresh=setter(dc, ks, v),
            )
        )
        ks = keys("set", size, slow)
        cases.append(
            Case(
                "dc.set",
                "diskcache.DjangoCache set",
                size,
                slow,
                lambda ks=ks, v=v: loop2(dc.set, ks, v),
            )
        )

        # ---- {% cache %} fragments: each backend in turn is the default cache ----
        body = FRAGMENTS[size]
        frag = f"frag_{size}"
        fkey = make_template_fragment_key(frag)
        src = "{% load cache %}{% cache 500 " + frag + " %}" + body + "{% endcache %}"
        n = B(200)
        for row, label, cache in (
            ("tc.frag", "TieredCache {% cache %} hit (L1)", tc),
            ("lm.frag", "LocMemCache {% cache %} hit", lm),
            ("dr.frag", "django-redis {% cache %} hit", dr),
        ):
            template = Template(src)

            def refresh(cache=cache, template=template, fkey=fkey) -> None:
                set_default(cache)
                cache.delete(fkey)
                template.render(Context())  # the miss stores the fragment

            cases.append(
                Case(
                    row,
                    label,
                    size,
                    n,
                    lambda t=template, n=n: loop_render(t.render, n, Context),
                    prepare=lambda cache=cache: set_default(cache),
                    refresh=refresh,
                    watch=tc if cache is tc else None,
                    expect=exact("l1", "hits", n) if cache is tc else None,
                )
            )
        static = Template("{% load cache %}" + body)
        cases.append(
            Case(
                "tpl.static",
                "Template render, static text (floor)",
                size,
                n,
                lambda t=static, n=n: loop_render(t.render, n, Context),
            )
        )

    set_default(tc)
    return order_cases(cases)


# -- running --------------------------------------------------------------------


def order_cases(cases: list[Case]) -> list[Case]:
    """Put the cases each acceptance ratio compares next to each other."""
    rank = {row: i for i, row in enumerate(ORDER)}
    return sorted(cases, key=lambda c: (c.size != "small", rank.get(c.row, len(rank))))


def run(
    cases: list[Case],
    rounds: int,
    per_round: int,
    warmup: int,
    progress: bool,
    refresh_every: float = 15.0,
) -> None:
    """Take samples round-robin: every round visits every case.

    Round r starts r cases further along the list and odd rounds walk it
    backwards, so neighbours (the pairs a ratio compares) alternate who goes
    first and no case always follows the same one.
    """
    for case in cases:
        if case.refresh is not None:
            case.refresh()
        for _ in range(warmup):
            case.take()
    gc.collect()
    gc.freeze()  # setup garbage stays out of every collection
    n = len(cases)
    started = last_refresh = time.monotonic()
    for r in range(rounds):
        # Untimed: re-store what the hit cases read (L1 trusts a copy for at most
        # L1_MAX_STALENESS, 60 s by default, when a shared tier exists).
        if time.monotonic() - last_refresh > refresh_every:
            for case in cases:
                if case.refresh is not None:
                    case.refresh()
            last_refresh = time.monotonic()
        gc.collect()
        start = r % n
        seq = cases[start:] + cases[:start]
        if r % 2:
            seq.reverse()
        for case in seq:
            for _ in range(per_round):
                wall, cpu = case.take()
                case.samples.append(wall)
                case.cpu.append(cpu)
                case.rounds.append(r)
        if progress and (r + 1) % max(1, rounds // 10) == 0:
            print(
                f"  round {r + 1}/{rounds} ({time.monotonic() - started:.0f} s)",
                file=sys.stderr,
                flush=True,
            )
    gc.unfreeze()


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    if not ordered:
        return math.nan
    if q == 50:
        return statistics.median(ordered)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def summarize(cases: list[Case]) -> dict[str, dict[str, dict[str, Any]]]:
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for case in cases:
        by_round: dict[int, list[float]] = {}
        for r, x in zip(case.rounds, case.samples, strict=True):
            by_round.setdefault(r, []).append(x)
        out.setdefault(case.row, {})[case.size] = {
            "label": case.label,
            "p50": pct(case.samples, 50),
            "p99": pct(case.samples, 99),
            "cpu_p50": pct(case.cpu, 50),
            "n": len(case.samples),
            "batch": case.batch,
            "round_medians": {r: statistics.median(v) for r, v in by_round.items()},
        }
    return out


def fmt(x: float | None) -> str:
    if x is None or x != x:
        return "—"
    return f"{x:.2f}" if x < 100 else f"{x:.1f}"


def print_table(cases: list[Case], summary: dict) -> None:
    labels: dict[str, str] = {}
    for case in cases:
        labels.setdefault(case.row, case.label)
    width = max(len(label) for label in labels.values()) + 2
    head = (
        f"{'case':<{width}}{'~100 B p50':>11}{'p99':>8}{'cpu':>8}  |"
        f"{'10 KB p50':>10}{'p99':>8}{'cpu':>8}  | samples x batch"
    )
    print(head)
    print("-" * len(head))
    for row, label in labels.items():
        s = summary[row].get("small", {})
        lg = summary[row].get("large", {})
        info = s or lg
        print(
            f"{label:<{width}}{fmt(s.get('p50')):>11}{fmt(s.get('p99')):>8}"
            f"{fmt(s.get('cpu_p50')):>8}  |{fmt(lg.get('p50')):>10}"
            f"{fmt(lg.get('p99')):>8}{fmt(lg.get('cpu_p50')):>8}  | "
            f"{info['n']:>5} x {info['batch']}"
        )


def ratios(summary: dict) -> list[dict]:
    out = []
    for label, num, den, bound in TARGETS:
        for size in ("small", "large"):
            a = summary.get(num, {}).get(size)
            b = summary.get(den, {}).get(size)
            ratio = paired = cpu = None
            if a and b and b["p50"]:
                ratio = a["p50"] / b["p50"]
                cpu = a["cpu_p50"] / b["cpu_p50"] if b["cpu_p50"] else None
                common = set(a["round_medians"]) & set(b["round_medians"])
                if common:
                    paired = statistics.median(
                        a["round_medians"][r] / b["round_medians"][r] for r in common
                    )
            out.append(
                {
                    "label": label,
                    "size": size,
                    "ratio": ratio,
                    "bound": bound,
                    "paired": paired,
                    "cpu_ratio": cpu,
                    "acceptance": size == "small",
                    "verdict": None
                    if ratio is None
                    else ("PASS" if ratio <= bound else "MISS"),
                    "num_us": a and a["p50"],
                    "den_us": b and b["p50"],
                }
            )
    return out


def print_ratios(rs: list[dict]) -> None:
    print(
        "\nAcceptance: ratio of p50s, ~100 B dict (paired = median over rounds of the"
        " per-round ratio;\ncpu = ratio of this thread's CPU time, blind to the"
        " wait for Redis):"
    )
    for r in rs:
        if r["acceptance"]:
            _print_ratio(r)
    print("Same ratios with the 10 KB values (informational):")
    for r in rs:
        if not r["acceptance"]:
            _print_ratio(r)


def _print_ratio(r: dict) -> None:
    if r["ratio"] is None:
        print(f"  {r['label']:<47} n/a (case not measured)")
        return
    extra = f"paired {r['paired']:.3f}x" if r["paired"] is not None else ""
    if r["cpu_ratio"] is not None:
        extra += f", cpu {r['cpu_ratio']:.3f}x"
    print(
        f"  {r['label']:<47} {r['ratio']:5.3f}x (target <= {r['bound']:.2f}x) "
        f"{r['verdict']}  [{fmt(r['num_us'])} / {fmt(r['den_us'])} us; {extra}]"
    )


# -- environment ------------------------------------------------------------------


def environment(server: RedisServer, tmp: str, status: dict) -> dict[str, Any]:
    import diskcache
    import django
    import django_redis
    import redis
    import redis.utils

    try:
        import hiredis

        hiredis_version = getattr(hiredis, "__version__", "present")
    except ImportError:
        hiredis_version = None
    parser = "?"
    try:
        from django.core.cache import caches

        pool = caches["redis"].client.get_client().connection_pool
        conn = pool.get_connection()
        parser = type(conn._parser).__name__
        pool.release(conn)
    except Exception as exc:
        parser = f"? ({exc})"
    cpu_model = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu_model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    fs = "?"
    with contextlib.suppress(Exception):
        fs = (
            subprocess.run(
                ["df", "-T", tmp], capture_output=True, text=True, check=False
            )
            .stdout.splitlines()[-1]
            .split()[1]
        )
    git = "?"
    try:
        rev = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(ROOT), "status", "--porcelain", "tiered_cache"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
        git = rev + (" + uncommitted changes in tiered_cache/" if dirty else "")
    except Exception:
        pass
    # The code under test changes while people work: fingerprint what was measured.
    import hashlib

    digest = hashlib.sha1()
    for path in sorted((ROOT / "tiered_cache").rglob("*.py")):
        digest.update(str(path.relative_to(ROOT)).encode() + b"\0" + path.read_bytes())
    git += f"; tiered_cache/*.py sha1 {digest.hexdigest()[:12]}"
    affinity = (
        len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    )
    return {
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "platform": platform.platform(),
        "cpu": f"{cpu_model}; os.cpu_count()={os.cpu_count()}, usable={affinity}",
        "loadavg": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "django": django.__version__,
        "django-redis": django_redis.__version__,
        "redis-py": redis.__version__,
        "hiredis": (
            f"{hiredis_version} (HIREDIS_AVAILABLE={redis.utils.HIREDIS_AVAILABLE}, "
            f"parser in use: {parser})"
            if hiredis_version
            else "absent"
        ),
        "diskcache": diskcache.__version__,
        "redis-server": f"{server.version()} on 127.0.0.1:{server.port} (own process)",
        "temp dir fs": fs,
        "repo": git,
        "tiered adapters": ", ".join(
            f"{k}: {'ok' if v is None else 'MISSING (' + v + ')'}"
            for k, v in status.items()
        ),
    }


# -- component breakdown ---------------------------------------------------------------


def breakdown(status: dict, server: RedisServer, rounds: int = 15) -> None:
    """Print the cost of the pieces of the L1-hit, L2-hit and {% cache %} paths.

    Rows are sampled round-robin like the main run (one 200-call batch per row
    per round); p50 of wall and of this thread's CPU time per call.
    """
    import redis
    from django.core.cache import InvalidCacheBackendError, caches
    from django.core.cache.utils import make_template_fragment_key
    from django.template import Context, Template
    from django.utils.safestring import SafeString

    from tiered_cache import envelope

    tc = caches["default"]
    lm = caches["locmem"]
    l1 = tc.tier("l1")
    key = "bd:small"
    final = tc.make_key(key)
    tc.set(key, SMALL, SETUP_TIMEOUT)
    lm.set(key, SMALL, SETUP_TIMEOUT)
    fkey = make_template_fragment_key("frag_bd")
    safe = SafeString(FRAGMENTS["small"])
    tc.set(fkey, safe, SETUP_TIMEOUT)
    ffinal = tc.make_key(fkey)
    payload = pickle.dumps(SMALL, pickle.HIGHEST_PROTOCOL)
    safe_payload = pickle.dumps(safe, pickle.HIGHEST_PROTOCOL)
    rows: list[tuple[str, Callable[[], Any]]] = [
        ("L1 path: BaseCache.make_key", lambda: tc.make_key(key)),
        (
            "L1 path: TieredCache._key (make_key + validation)",
            lambda: tc._key(key, None),
        ),
        (
            "L1 path: LocMemCache.make_and_validate_key",
            lambda: lm.make_and_validate_key(key),
        ),
        (
            "L1 path: MemoryTier.get_value hit, ~100 B dict",
            lambda: l1.get_value(final, None),
        ),
        ("L1 path: pickle.loads ~100 B dict", lambda: pickle.loads(payload)),
        ("L1 path: TieredCache.get L1 hit, ~100 B dict", lambda: tc.get(key)),
        ("L1 path: LocMemCache.get hit, ~100 B dict", lambda: lm.get(key)),
    ]

    static = Template("{% load cache %}" + FRAGMENTS["small"])

    def frag_lookup() -> Any:
        try:
            return caches["template_fragments"]
        except InvalidCacheBackendError:
            return caches["default"]

    rows += [
        ("fragment: caches['template_fragments'] miss -> default", frag_lookup),
        (
            "fragment: make_template_fragment_key",
            lambda: make_template_fragment_key("f"),
        ),
        (
            "fragment: Template(static text).render(Context())",
            lambda t=static: t.render(Context()),
        ),
        ("fragment: TieredCache.get of a 100 B SafeString (L1)", lambda: tc.get(fkey)),
        (
            "fragment: MemoryTier.get_value, SafeString",
            lambda: l1.get_value(ffinal, None),
        ),
        ("fragment: pickle.loads 100 B SafeString", lambda: pickle.loads(safe_payload)),
    ]
    if status["redis"] is None:
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        l2 = tc.tier("l2")
        dr = caches["redis"]
        dr.set(key, SMALL, SETUP_TIMEOUT)
        raw = redis.Redis.from_url(server.url(1)).get(final)
        rec = l2.get(final)
        url = server.url(1)
        variants = {
            "ConnectionPool, no socket timeout (django-redis')": redis.Redis.from_url(
                url
            ),
            "ConnectionPool, socket_timeout=0.1": redis.Redis.from_url(
                url, socket_timeout=0.1, socket_connect_timeout=0.1
            ),
            "BlockingConnectionPool(50, 0.1), no socket timeout": redis.Redis(
                connection_pool=redis.BlockingConnectionPool.from_url(
                    url, max_connections=50, timeout=0.1
                )
            ),
            "Blocking + socket_timeout 0.1 + Retry(0) (L2 tier's)": redis.Redis(
                connection_pool=redis.BlockingConnectionPool.from_url(
                    url,
                    max_connections=50,
                    timeout=0.1,
                    socket_timeout=0.1,
                    socket_connect_timeout=0.1,
                    retry=Retry(NoBackoff(), 0),
                )
            ),
        }
        rows += [
            (f"L2 path: raw GET, {name}", lambda c=c: c.get(final))
            for name, c in variants.items()
        ]

        def l2_hit() -> Any:
            l1.delete(final)
            return tc.get(key)

        rows += [
            ("L2 path: L2 tier .get (GET + envelope decode)", lambda: l2.get(final)),
            ("L2 path: envelope.decode ~100 B", lambda: envelope.decode(raw)),
            (
                "L2 path: materialize (unpickle) a fresh record",
                lambda: envelope.materialize(envelope.decode(raw)),
            ),
            (
                "L2 path: L1 promotion MemoryTier.set(record)",
                lambda: l1.set(final, rec),
            ),
            (
                "L2 path: MemoryTier.delete (subtract from next row)",
                lambda: l1.delete(final),
            ),
            ("L2 path: L1.delete + TieredCache.get L2 hit", l2_hit),
            ("L2 path: django-redis get hit", lambda: dr.get(key)),
        ]
    samples: dict[str, list[tuple[float, float]]] = {label: [] for label, _ in rows}
    n = 200
    for _label, fn in rows:  # warm up
        for _ in range(n):
            fn()
    for r in range(rounds):
        seq = rows if r % 2 == 0 else rows[::-1]
        for label, fn in seq:
            gc.disable()
            c0 = thread_time_ns()
            t0 = perf_counter_ns()
            for _ in itertools.repeat(None, n):
                fn()
            wall = perf_counter_ns() - t0
            cpu = thread_time_ns() - c0
            gc.enable()
            samples[label].append((wall / n / 1000, cpu / n / 1000))
    width = max(len(label) for label, _ in rows) + 2
    print(
        f"Component costs, p50 per call over {rounds} interleaved rounds of {n} "
        "calls (includes ~0.05 us of lambda call)\n"
    )
    print(f"{'component':<{width}}{'wall us':>9}{'cpu us':>9}")
    for label, _ in rows:
        wall = statistics.median(x[0] for x in samples[label])
        cpu = statistics.median(x[1] for x in samples[label])
        print(f"{label:<{width}}{wall:>9.2f}{cpu:>9.2f}")


# -- main ---------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "--rounds",
        type=int,
        default=None,
        help="interleaved rounds (default 300; 4 with --quick)",
    )
    ap.add_argument(
        "--per-round",
        type=int,
        default=None,
        help="samples per case per round (default 1)",
    )
    ap.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: few rounds, small batches (for tests)",
    )
    ap.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    ap.add_argument(
        "--breakdown",
        action="store_true",
        help="print the cost of each path's components and exit",
    )
    args = ap.parse_args(argv)
    rounds = args.rounds or (4 if args.quick else 300)
    per_round = args.per_round or 1
    batch_scale = 0.1 if args.quick else 1.0
    warmup = 1 if args.quick else 3

    configure_django()
    status = adapter_status()
    tmp = tempfile.mkdtemp(prefix="bench-latency-")
    server = RedisServer()
    t_start = time.monotonic()
    try:
        server.start()
        build_caches(server.url, tmp, status)
        if args.breakdown:
            breakdown(status, server, rounds=args.rounds or 15)
            return 0
        env = environment(server, tmp, status)
        print("Environment")
        for k, v in env.items():
            print(f"  {k:<16} {v}")
        print(
            f"  {'command':<16} python bench/latency.py "
            + " ".join(argv if argv is not None else sys.argv[1:])
        )
        print(f"  {'date':<16} {time.strftime('%Y-%m-%d %H:%M:%S %z')}")
        print(
            f"  {'values':<16} ~100 B dict ({len(pickle.dumps(SMALL, 5))} B pickled), "
            f"10 KB dict ({len(pickle.dumps(LARGE, 5))} B pickled); "
            f"fragments {len(FRAGMENTS['small'])} / {len(FRAGMENTS['large'])} chars"
        )
        print(
            f"  {'method':<16} {rounds} interleaved rounds x {per_round} sample(s) "
            "per case; a sample = one batch timed as a whole (perf_counter_ns; "
            "thread_time_ns for cpu), per-call mean; gc off in samples"
        )
        if any(status.values()):
            print("  NOTE: a TieredCache adapter is missing; its cases are skipped.")

        cases = build_cases(status, batch_scale)
        problems = [p for case in cases for p in case.verify()]
        run(cases, rounds, per_round, warmup, progress=not args.quick)
        problems += [p for case in cases for p in case.verify()]
        summary = summarize(cases)

        print(
            f"\nLatency per call, microseconds (p50 / p99 of per-batch means); "
            f"{time.monotonic() - t_start:.0f} s total\n"
        )
        print_table(cases, summary)
        rs = ratios(summary)
        print_ratios(rs)
        if problems:
            print("\nPATH CHECK FAILED (a case did not take the path its name says):")
            for p in problems:
                print("  " + p)
        else:
            print(
                "\nPath check: every TieredCache case hit the tiers its name says "
                "(tier counters, before and after the timed rounds)."
            )
        if args.json:
            Path(args.json).parent.mkdir(parents=True, exist_ok=True)
            with open(args.json, "w") as f:
                json.dump(
                    {
                        "environment": env,
                        "rounds": rounds,
                        "per_round": per_round,
                        "results": summary,
                        "ratios": rs,
                        "path_problems": problems,
                    },
                    f,
                    indent=2,
                )
        return 1 if problems else 0
    finally:
        try:
            from django.core.cache import caches

            for alias in ("default", "tiered_l13", "locmem", "redis", "disk"):
                with contextlib.suppress(Exception):
                    caches[alias].close()
        finally:
            server.stop()
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
