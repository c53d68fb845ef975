#!/usr/bin/env python
"""Per-call latency of TieredCache's paths, side by side with the backends it wraps.

Run from the repository root::

    .venv/bin/python bench/latency.py            # full run (a few minutes)
    .venv/bin/python bench/latency.py --quick    # smoke run (seconds)
    .venv/bin/python bench/latency.py --rounds 40 --json bench/out/latency.json
    .venv/bin/python bench/latency.py --breakdown  # component costs, then exit

What is measured: every row of ``ROWS`` below, once per value size. A row names
the cache and the call under test (L1 hit, L1-miss/L2-hit, ``{% cache %}`` hit,
get_many, L3 hits, miss, set), the row it is compared with (its *anchor*:
LocMemCache, django-redis or diskcache doing the same thing) and, for the three
acceptance targets, the bound on that ratio of p50s:

* TieredCache L1 hit              <= 0.50x LocMemCache get hit
* TieredCache L1-miss/L2-hit      <= 1.10x django-redis get hit
* TieredCache ``{% cache %}`` hit <= 0.80x LocMemCache's

Why interleaved: this machine's speed drifts (other processes, a loopback round
trip that doubles from one minute to the next), so measuring one case after the
other would compare numbers taken under different conditions. Instead every
round visits every case once (starting one case later each round, odd rounds
backwards), so drift hits all cases alike; a row and its anchor sit next to each
other in the table, so they are measured back to back and take turns going
first.

How, in one process:

* configures Django itself (no settings module), starts its own ``redis-server``
  on a free 127.0.0.1 port with the test suite's launcher
  (``tests/support/redis_servers.py``: persistence off, stopped by PID) and
  puts every diskcache directory in a fresh temp dir;
* a sample is one batch of B calls timed with ``perf_counter_ns`` around the
  whole batch and divided by B, with the garbage collector off; per-call work
  that must not be timed (deleting the key from L1 before an L2-hit call) is
  done for the whole batch before the clock starts, on B distinct keys;
* p50 and p99 are over those samples (so p99 is the 99th percentile of batch
  means, not of single calls: it shows jitter between batches, it smooths
  single-call outliers);
* before and after the timed rounds, each TieredCache case is run once with the
  tier counters (``cache.stats()``) watched, to prove it takes the path its
  name claims.

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
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
# `python bench/latency.py` puts bench/ on sys.path, not the repository root;
# the root is needed for `tests.support` (the Redis launcher the suite uses).
sys.path.insert(0, str(ROOT))

from tests.support.redis_servers import RedisServer, find_free_port  # noqa: E402

perf_counter_ns = time.perf_counter_ns
thread_time_ns = time.thread_time_ns


# =============================================================================
# INTERNALS: the only places this script goes past tiered_cache's public API.
#
# Public here means: the cache's Django methods (get, set, get_many, make_key,
# stored_key, ...), cache.tier(name) with the documented tier
# methods (get, get_value, set, delete, ...), cache.stats(), and the names in
# tiered_cache.__all__ and tiered_cache.tiers.__all__. Everything below times
# one internal step on purpose, for --breakdown only. When a name here is
# renamed or changes signature, its row is skipped with a printed note instead
# of failing the run: adapt the lambdas in this function.
# =============================================================================


KEY_STEP = "L1 path: TieredCache._key (make_key + validation)"
DECODE_STEP = "L2 path: envelope.decode ~100 B"
MATERIALIZE_STEP = "L2 path: materialize (unpickle) a fresh record"


def internal_steps(cache: Any, key: str, l2_raw: bytes | None) -> dict[str, Any]:
    """Return {breakdown row label: zero-argument callable, or why it is skipped}.

    ``cache`` is the TieredCache, ``key`` a stored key name, ``l2_raw`` the
    bytes L2 holds for it (None without an L2).
    """

    def key_step() -> Callable[[], Any]:
        return lambda: cache._key(key, None)  # TieredCache's key builder

    def decode_step() -> Callable[[], Any]:
        from tiered_cache import envelope

        if l2_raw is None:
            raise LookupError("L2 holds nothing under the stored key")
        final = cache.stored_key(key)  # the tags bind the stored key
        return lambda: envelope.decode(l2_raw, final, envelope.PICKLE)

    def materialize_step() -> Callable[[], Any]:
        from tiered_cache import envelope

        decode_step()
        final = cache.stored_key(key)
        return lambda: envelope.materialize(
            envelope.decode(l2_raw, final, envelope.PICKLE)
        )

    builders = {
        KEY_STEP: key_step,
        DECODE_STEP: decode_step,
        MATERIALIZE_STEP: materialize_step,
    }
    steps: dict[str, Any] = {}
    for label, build in builders.items():
        try:
            fn = build()
            fn()  # a renamed or re-signatured internal fails here, not mid-run
        except Exception as exc:
            steps[label] = f"{type(exc).__name__}: {exc}"
        else:
            steps[label] = fn
    return steps


# =============================================================================
# The cases: one row per measured path
# =============================================================================

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
SIZES = ("small", "large")
VALUES = {"small": SMALL, "large": LARGE}
FRAGMENTS = {
    "small": "<p>" + "x" * 93 + "</p>",  # 100 characters
    "large": "<p>" + "x" * (10 * 1024 - 7) + "</p>",  # 10 KiB
}
SIZE_LABEL = {"small": "~100 B", "large": "10 KB"}
SETUP_TIMEOUT = 3600  # keys the cases read must outlive the run
FAST, SLOW = 200, 50  # calls per sample: in-memory cases / remote or disk ones
GET_MANY_KEYS, GET_MANY_WIDTH = 100, 10  # get_many reads 10 of 100 stored keys


@dataclass(frozen=True)
class Row:
    """One measured path (a line of the output table, per value size).

    ``call`` is what a sample times, on the cache with CACHES alias ``cache``:

    * ``"get"``, ``"get_many"``, ``"set"``: that method of the cache, once per
      key (or per group of keys); what get and get_many read is stored
      beforehand, untimed, unless ``miss``;
    * ``"cache_tag"``: render ``{% cache 500 frag %}...{% endcache %}`` with the
      cache made ``caches["default"]`` (as a site without ``using=`` does);
    * ``"template"``: render the same static text without a cache (a floor);
    * ``"noop"``: the loop calling a function that does nothing (the harness).
    """

    id: str
    label: str  # ``{tiers}`` is replaced by the cache's number of tiers
    cache: str | None  # CACHES alias
    call: str
    batch: int  # calls per sample (before --quick scales it)
    evict: tuple[str, ...] = ()  # tiers the keys are deleted from, untimed, first
    expect: dict[str, int] | None = None  # "tier.counter" -> change per call
    miss: bool = False  # read keys that were never stored
    sizes: tuple[str, ...] = SIZES
    anchor: str | None = None  # the row this one is compared with
    target: float | None = None  # acceptance bound on p50(row) / p50(anchor)
    ratio_label: str = ""


#: Table order is the order within a round: a row sits next to its anchor.
#: ``expect`` keys may say ``*`` for every tier; an expectation of 0 on a tier
#: the cache lacks is dropped, a non-zero one (or ``evict``) skips the row.
# fmt: off
ROWS = [
    Row("noop", "harness: loop + no-op call", None, "noop", FAST),
    Row("tc.l1_hit", "TieredCache get: L1 hit", "default", "get", FAST,
        expect={"l1.hits": 1, "l2.hits": 0},
        anchor="lm.get", target=0.50,
        ratio_label="TieredCache L1 hit / LocMemCache.get hit"),
    Row("lm.get", "LocMemCache get hit", "locmem", "get", FAST),
    # OPTIONS["HISTORY"] wraps get (docs/warming.rst): what a key outside the
    # sample pays, and what a sampled one does.
    Row("tc.l1_hit_history", "TieredCache get: L1 hit, HISTORY on, key not sampled",
        "tiered_history", "get", FAST, expect={"l1.hits": 1, "l2.hits": 0},
        anchor="tc.l1_hit", ratio_label="L1 hit with HISTORY / without"),
    Row("tc.l1_hit_sampled", "TieredCache get: L1 hit, HISTORY on, key sampled",
        "tiered_sampled", "get", FAST, expect={"l1.hits": 1, "l2.hits": 0},
        anchor="tc.l1_hit", ratio_label="L1 hit of a sampled key / without HISTORY"),
    Row("tc.l2_hit", "TieredCache get: L1 miss, L2 hit", "default", "get", SLOW,
        evict=("l1",), expect={"l1.misses": 1, "l2.hits": 1, "l3.hits": 0},
        anchor="dr.get", target=1.10,
        ratio_label="TieredCache L1-miss/L2-hit / django-redis get"),
    Row("dr.get", "django-redis get hit", "redis", "get", SLOW),
    Row("tc.frag", "TieredCache {% cache %} hit (L1)", "default", "cache_tag", FAST,
        expect={"l1.hits": 1},
        anchor="lm.frag", target=0.80,
        ratio_label="TieredCache {% cache %} hit / LocMemCache's"),
    Row("lm.frag", "LocMemCache {% cache %} hit", "locmem", "cache_tag", FAST),
    Row("dr.frag", "django-redis {% cache %} hit", "redis", "cache_tag", FAST),
    Row("tpl.static", "Template render, static text (floor)", None, "template", FAST),
    Row("tc.get_many", "TieredCache get_many(10): all L1 hits", "default", "get_many",
        SLOW, expect={"l1.hits": GET_MANY_WIDTH, "l2.hits": 0},
        anchor="lm.get_many",
        ratio_label="TieredCache get_many(10) / LocMemCache's"),
    Row("lm.get_many", "LocMemCache get_many(10) hits", "locmem", "get_many", SLOW),
    Row("tc.l3_hit", "TieredCache get: L1 miss, L3 hit (L1+L3 config)", "tiered_l13",
        "get", SLOW, evict=("l1",), expect={"l1.misses": 1, "l3.hits": 1},
        anchor="dc.get",
        ratio_label="TieredCache L3 hit (L1+L3) / diskcache get"),
    Row("dc.get", "diskcache.DjangoCache get hit", "disk", "get", SLOW),
    # An L2 that answers a miss disowns L3's copy (docs/design.rst, "No
    # resurrection"): an L3 copy is read only while L2 does not answer.
    Row("tc.l3_copy", "TieredCache get: L2 not answering, L3 copy hit (+1 promotion)",
        "tiered_l2_down", "get", SLOW,
        evict=("l1",), expect={"l2.hits": 0, "l3.hits": 1}),
    Row("tc.miss", "TieredCache get: miss ({tiers} tiers)", "default", "get", SLOW,
        miss=True, expect={"*.misses": 1},
        sizes=("small",)),  # a miss does not depend on the value
    Row("tc.set", "TieredCache set ({tiers} tiers)", "default", "set", SLOW),
    Row("lm.set", "LocMemCache set", "locmem", "set", SLOW),
    Row("dr.set", "django-redis set", "redis", "set", SLOW),
    Row("dc.set", "diskcache.DjangoCache set", "disk", "set", SLOW),
]
# fmt: on


# -- timed loops (kept tiny: the loop itself is part of every number) ----------


def loop0(fn: Callable, n: int) -> int:
    rep = itertools.repeat(None, n)
    t0 = perf_counter_ns()
    for _ in rep:
        fn()
    return perf_counter_ns() - t0


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


# -- a case: one row x one value size, with its samples ---------------------------


class Case:
    """How to take one sample of a row at one value size, and what path it takes."""

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
        expect: dict[tuple[str, str], int] | None = None,
        watch: Any = None,
    ) -> None:
        self.row = row
        self.label = label
        self.size = size
        self.batch = batch
        self._sample = sample
        self.prepare = prepare  # untimed, before every sample
        self.refresh = refresh  # untimed, re-stores what the case reads
        self.expect = expect  # {(tier, counter): change over one sample}
        self.watch = watch  # the TieredCache whose counters `expect` is about
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
        if not self.expect:
            return []
        if self.refresh is not None:
            self.refresh()
        before = self.watch.stats()
        self.take()
        after = self.watch.stats()
        problems = []
        for (tier, counter), n in self.expect.items():
            got = after[tier].get(counter, math.nan) - before[tier].get(counter, 0)
            if got != n:
                problems.append(
                    f"{self.row}/{self.size}: {tier}.{counter} changed by {got}, "
                    f"expected {n}"
                )
        return problems


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
    for name, adapter in (("redis", "RedisTier"), ("disk", "DiskTier")):
        try:
            getattr(importlib.import_module("tiered_cache.tiers"), adapter)
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
            # A loaded machine can take over the default 0.5 s to open a fresh
            # folder; the first (untimed) calls would then open L3's breaker.
            "OPTIONS": {"OPEN_TIMEOUT": 5},
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
    for alias, rate in (("tiered_history", 1e-9), ("tiered_sampled", 1.0)):
        caches[alias] = {
            **caches["default"],
            "OPTIONS": {"TIERS": full, "HISTORY": {"SAMPLE_RATE": rate}},
        }
    if status["disk"] is None:
        caches["tiered_l13"] = {
            "BACKEND": "tiered_cache.TieredCache",
            "TIMEOUT": 300,
            "KEY_PREFIX": "bench",
            "OPTIONS": {"TIERS": [l1, l3("tiered-l13")]},
        }
        # L2 at a port nobody listens on (its breaker opens at once); no bus,
        # so L3's copies are trusted for L1_MAX_STALENESS after they are made.
        down = {**l2, "LOCATION": f"redis://127.0.0.1:{find_free_port()}/0"}
        caches["tiered_l2_down"] = {
            "BACKEND": "tiered_cache.TieredCache",
            "TIMEOUT": 300,
            "KEY_PREFIX": "bench",
            "OPTIONS": {
                "TIERS": [l1, down, l3("tiered-l2down")],
                "INVALIDATION": False,
            },
        }
    settings.CACHES = caches
    return caches


def set_default(cache: Any) -> None:
    """Make ``cache`` what ``caches["default"]`` returns in this thread."""
    from django.core.cache import caches

    caches._connections.default = cache


# -- building the cases from the table -------------------------------------------


def build_cases(batch_scale: float) -> list[Case]:
    """One case per row of ROWS and value size; small values first, table order."""
    from django.core.cache import caches

    cases = []
    for size in SIZES:
        for row in ROWS:
            case = make_case(row, size, batch_scale) if size in row.sizes else None
            if case is not None:
                cases.append(case)
    set_default(caches["default"])
    return cases


def make_case(row: Row, size: str, batch_scale: float) -> Case | None:
    """Build the case for ``row`` at ``size``; None if this setup cannot run it."""
    from django.conf import settings
    from django.core.cache import caches
    from django.core.cache.utils import make_template_fragment_key
    from django.template import Context, Template

    from tiered_cache import TieredCache

    if row.cache is not None and row.cache not in settings.CACHES:
        return None
    cache = caches[row.cache] if row.cache is not None else None
    tiers = list(cache.stats()) if isinstance(cache, TieredCache) else []
    n = max(5, int(row.batch * batch_scale))
    expect: dict[tuple[str, str], int] = {}
    for spec, per_call in (row.expect or {}).items():
        tier, counter = spec.split(".")
        for name in tiers if tier == "*" else [tier]:
            if name in tiers:
                expect[name, counter] = per_call * n
            elif per_call:
                return None  # the path goes through a tier this cache lacks
    if any(name not in tiers for name in row.evict):
        return None

    # A row uses its anchor's key names: both sides build and hash the same keys.
    tag = row.anchor or row.id
    keys = [f"{tag}:{size}:{i}" for i in range(n)]
    stored = keys
    value = VALUES[size]
    prepare = refresh = None
    if row.call == "noop":
        sample = partial(loop1, noop, keys)
    elif row.call == "get":
        sample = partial(loop1, cache.get, keys)
    elif row.call == "get_many":
        stored = [f"{tag}:{size}:{i}" for i in range(GET_MANY_KEYS)]
        w = GET_MANY_WIDTH
        groups = [stored[i : i + w] for i in range(0, GET_MANY_KEYS, w)]
        args = [groups[i % len(groups)] for i in range(n)]
        sample = partial(loop1, cache.get_many, args)
    elif row.call == "set":
        sample = partial(loop2, cache.set, keys, value)
    elif row.call in ("cache_tag", "template"):
        frag = f"frag_{size}"
        body = FRAGMENTS[size]
        if row.call == "template":
            template = Template("{% load cache %}" + body)
        else:
            template = Template(
                "{% load cache %}{% cache 500 " + frag + " %}" + body + "{% endcache %}"
            )
            fkey = make_template_fragment_key(frag)
            prepare = partial(set_default, cache)

            def refresh() -> None:
                set_default(cache)
                cache.delete(fkey)
                template.render(Context())  # the miss stores the fragment

        sample = partial(loop_render, template.render, n, Context)
    else:
        raise ValueError(f"row {row.id}: unknown call {row.call!r}")

    if row.call in ("get", "get_many") and not row.miss:

        def refresh() -> None:
            for k in stored:
                cache.set(k, value, SETUP_TIMEOUT)

    if row.evict:
        evicted = [cache.tier(name) for name in row.evict]
        finals = [cache.stored_key(k) for k in keys]  # as tiers store it

        def prepare() -> None:
            for k in finals:
                for tier in evicted:
                    tier.delete(k)

    return Case(
        row.id,
        row.label.replace("{tiers}", str(len(tiers))),
        size,
        n,
        sample,
        prepare=prepare,
        refresh=refresh,
        expect=expect,
        watch=cache,
    )


# -- running --------------------------------------------------------------------


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
    """Every anchored row against its anchor, per size; targeted rows first."""
    out = []
    anchored = sorted(
        (row for row in ROWS if row.anchor), key=lambda row: row.target is None
    )
    for row in anchored:
        for size in row.sizes:
            a = summary.get(row.id, {}).get(size)
            b = summary.get(row.anchor, {}).get(size)
            ratio = paired = cpu = None
            if a and b and b["p50"]:
                ratio = a["p50"] / b["p50"]
                cpu = a["cpu_p50"] / b["cpu_p50"] if b["cpu_p50"] else None
                common = set(a["round_medians"]) & set(b["round_medians"])
                if common:
                    paired = statistics.median(
                        a["round_medians"][r] / b["round_medians"][r] for r in common
                    )
            bound = row.target
            out.append(
                {
                    "label": row.ratio_label,
                    "row": row.id,
                    "anchor": row.anchor,
                    "size": size,
                    "ratio": ratio,
                    "bound": bound,
                    "paired": paired,
                    "cpu_ratio": cpu,
                    "acceptance": bound is not None and size == "small",
                    "verdict": None
                    if ratio is None or bound is None
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
        if r["bound"] is not None and not r["acceptance"]:
            _print_ratio(r)
    print("Other rows against their anchors (no target; informational):")
    for r in rs:
        if r["bound"] is None:
            _print_ratio(r)


def _print_ratio(r: dict) -> None:
    if r["ratio"] is None:
        print(f"  {r['label']:<47} n/a (case not measured)")
        return
    extra = f"paired {r['paired']:.3f}x" if r["paired"] is not None else ""
    if r["cpu_ratio"] is not None:
        extra += f", cpu {r['cpu_ratio']:.3f}x"
    if r["bound"] is None:
        judged = f"({SIZE_LABEL[r['size']]} values)"
    else:
        judged = f"(target <= {r['bound']:.2f}x) {r['verdict']}"
    print(
        f"  {r['label']:<47} {r['ratio']:5.3f}x {judged}  "
        f"[{fmt(r['num_us'])} / {fmt(r['den_us'])} us; {extra}]"
    )


# -- environment ------------------------------------------------------------------


def command_output(*argv: str) -> str:
    """Return a short command's stripped stdout ("" if it cannot be run)."""
    try:
        done = subprocess.run(argv, capture_output=True, text=True, check=False)
    except OSError:
        return ""
    return done.stdout.strip()


def redis_server_version() -> str:
    out = command_output(shutil.which("redis-server") or "redis-server", "--version")
    for part in out.split():
        if part.startswith("v="):
            return part[2:]
    return out


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
    with contextlib.suppress(IndexError):
        fs = command_output("df", "-T", tmp).splitlines()[-1].split()[1]
    rev = command_output("git", "-C", str(ROOT), "rev-parse", "--short", "HEAD")
    dirty = command_output(
        "git", "-C", str(ROOT), "status", "--porcelain", "tiered_cache"
    )
    git = (rev or "?") + (" + uncommitted changes in tiered_cache/" if dirty else "")
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
        "redis-server": (
            f"{redis_server_version()} on 127.0.0.1:{server.port} "
            f"(own process, pid {server.pid})"
        ),
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
    per round); p50 of wall and of this thread's CPU time per call. Rows that
    time an internal step come from ``internal_steps`` at the top of the file.
    """
    import redis
    from django.core.cache import InvalidCacheBackendError, caches
    from django.core.cache.utils import make_template_fragment_key
    from django.template import Context, Template
    from django.utils.safestring import SafeString

    tc = caches["default"]
    lm = caches["locmem"]
    l1 = tc.tier("l1")
    key = "bd:small"
    final = tc.stored_key(key)  # the key the tiers store
    tc.set(key, SMALL, SETUP_TIMEOUT)
    lm.set(key, SMALL, SETUP_TIMEOUT)
    fkey = make_template_fragment_key("frag_bd")
    safe = SafeString(FRAGMENTS["small"])
    tc.set(fkey, safe, SETUP_TIMEOUT)
    ffinal = tc.stored_key(fkey)
    payload = pickle.dumps(SMALL, pickle.HIGHEST_PROTOCOL)
    safe_payload = pickle.dumps(safe, pickle.HIGHEST_PROTOCOL)
    has_l2 = status["redis"] is None
    raw = redis.Redis.from_url(server.url(1)).get(final) if has_l2 else None
    internal = internal_steps(tc, key, raw)

    # label -> zero-argument callable (or, for a skipped internal row, why)
    rows: dict[str, Any] = {
        "L1 path: BaseCache.make_key": lambda: tc.make_key(key),
        KEY_STEP: internal[KEY_STEP],
        "L1 path: LocMemCache.make_and_validate_key": (
            lambda: lm.make_and_validate_key(key)
        ),
        "L1 path: MemoryTier.get_value hit, ~100 B dict": (
            lambda: l1.get_value(final, None)
        ),
        "L1 path: pickle.loads ~100 B dict": lambda: pickle.loads(payload),
        "L1 path: TieredCache.get L1 hit, ~100 B dict": lambda: tc.get(key),
        "L1 path: LocMemCache.get hit, ~100 B dict": lambda: lm.get(key),
    }

    static = Template("{% load cache %}" + FRAGMENTS["small"])

    def frag_lookup() -> Any:
        try:
            return caches["template_fragments"]
        except InvalidCacheBackendError:
            return caches["default"]

    rows.update(
        {
            "fragment: caches['template_fragments'] miss -> default": frag_lookup,
            "fragment: make_template_fragment_key": (
                lambda: make_template_fragment_key("f")
            ),
            "fragment: Template(static text).render(Context())": (
                lambda: static.render(Context())
            ),
            "fragment: TieredCache.get of a 100 B SafeString (L1)": (
                lambda: tc.get(fkey)
            ),
            "fragment: MemoryTier.get_value, SafeString": (
                lambda: l1.get_value(ffinal, None)
            ),
            "fragment: pickle.loads 100 B SafeString": (
                lambda: pickle.loads(safe_payload)
            ),
        }
    )
    if has_l2:
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        l2 = tc.tier("l2")
        dr = caches["redis"]
        dr.set(key, SMALL, SETUP_TIMEOUT)
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
        for name, client in variants.items():
            rows[f"L2 path: raw GET, {name}"] = lambda c=client: c.get(final)

        def l2_hit() -> Any:
            l1.delete(final)
            return tc.get(key)

        rows.update(
            {
                "L2 path: L2 tier .get (GET + envelope decode)": lambda: l2.get(final),
                DECODE_STEP: internal[DECODE_STEP],
                MATERIALIZE_STEP: internal[MATERIALIZE_STEP],
                "L2 path: L1 promotion MemoryTier.set(record)": (
                    lambda: l1.set(final, rec)
                ),
                "L2 path: MemoryTier.delete (subtract from next row)": (
                    lambda: l1.delete(final)
                ),
                "L2 path: L1.delete + TieredCache.get L2 hit": l2_hit,
                "L2 path: django-redis get hit": lambda: dr.get(key),
            }
        )

    n = 200
    cases = [
        Case(label, label, "small", n, partial(loop0, fn, n))
        for label, fn in rows.items()
        if callable(fn)
    ]
    run(cases, rounds, per_round=1, warmup=1, progress=False)
    measured = {case.row: case for case in cases}
    width = max(len(label) for label in rows) + 2
    print(
        f"Component costs, p50 per call over {rounds} interleaved rounds of {n} "
        "calls (includes ~0.05 us of lambda call)\n"
    )
    print(f"{'component':<{width}}{'wall us':>9}{'cpu us':>9}")
    for label, fn in rows.items():
        case = measured.get(label)
        if case is None:
            print(f"{label:<{width}}  skipped, internal step not found: {fn}")
            continue
        wall, cpu = statistics.median(case.samples), statistics.median(case.cpu)
        print(f"{label:<{width}}{wall:>9.2f}{cpu:>9.2f}")
    if len(measured) < len(rows):
        print(
            "\nA skipped row times a tiered_cache internal that has been renamed: "
            "adapt internal_steps() at the top of bench/latency.py."
        )


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
    server: RedisServer | None = None
    t_start = time.monotonic()
    try:
        server = RedisServer.start(Path(tmp) / "redis-server")
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

        cases = build_cases(batch_scale)
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

            for alias in (
                "default",
                "tiered_l13",
                "tiered_l2_down",
                "locmem",
                "redis",
                "disk",
            ):
                with contextlib.suppress(Exception):
                    caches[alias].close()
        finally:
            if server is not None:
                server.stop()
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
