"""The deployment's numbers for one alias, read from the per-minute buckets.

Definitions (docs/metrics.rst has the reader's version):

* a tier's ``hits``/``misses`` are its own lookups: a read that misses L1
  and hits L2 is an L1 miss and an L2 hit;
* ``total.requests`` is what the first tier was asked (every read starts
  there), ``total.hits`` the hits of every tier, ``total.misses`` the reads no
  tier answered with a value, ``hit_ratio`` hits over requests (``None`` with
  no reads);
* ``total.sets``/``deletes`` are the most any one tier made (a write goes to
  every tier that accepts it), ``total.errors`` the sum;
* latency percentiles are read from fixed buckets: the upper bound of the
  bucket holding the percentile (an overestimate by at most one bucket);
* gauges (bytes, entries, breaker) are each live process's latest: bytes
  and entries are added up, the breaker shows the worst state.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from ..stats import COUNTERS, LATENCY_BUCKETS_MS
from .fields import breaker_state, latency_field, top_groups
from .flusher import flusher, own_fields, store_of
from .store import RETENTION, LocalStore, Store

__all__ = [
    "USER_OPERATIONS",
    "by_caller",
    "latency_summary",
    "read_own_summary",
    "read_series",
    "read_totals",
    "read_summary",
    "summarize",
]

#: A process that has not flushed for this long is not counted as live.
LIVE_FOR = 180
#: Timed calls the application asked for: Django's cache API, and the L2
#: write carrying a set's announcement (``set_many_announced``). Every other
#: timed call (the bus's journal and position, stampede leases, the counts
#: kept for an outage) is the cache's own work, shown apart (issue 8).
USER_OPERATIONS = frozenset(
    {
        "get", "get_many", "has_key", "set", "set_many", "set_many_announced",
        "add", "delete", "delete_many", "incr", "touch", "clear",
    }
)  # fmt: skip
_PER_TIER_TOTALS = ("sets", "deletes")


def _ratio(hits: int, requests: int) -> float | None:
    return hits / requests if requests else None


def _minutes(since: float, now: float) -> range:
    return range(int((now - since) // 60), int(now // 60) + 1)


def read_summary(alias: str, since: float | None = None) -> dict[str, Any]:
    """Return the numbers of ``alias`` over the last ``since`` seconds (24 h).

    Shape: ``{"total", "tiers", "groups", "bus", "latency", "since",
    "processes", "store"}`` (see the package docstring).
    """
    since = float(RETENTION if since is None else min(since, RETENTION))
    store = store_of(alias)
    now = store.now()
    buckets = store.buckets(_minutes(since, now))
    summary = summarize(buckets, now, tier_order(alias), _group_limit(alias))
    summary["since"] = since
    if summary["covered"] is not None:
        summary["covered"] = min(summary["covered"], since)
    summary["store"] = store.kind
    return summary


def read_own_summary(alias: str) -> dict[str, Any]:
    """Return this process's own numbers of ``alias``, in ``read_summary``'s shape.

    What a reader shows when the shared store cannot be read (Redis down):
    the counters this process holds, since it started (``"store"``:
    ``"process"``; ``since`` and ``covered``: the seconds since it started).
    """
    now = time.time()
    minute = int(now // 60)
    store = LocalStore()
    own = own_fields(alias)
    if own is not None:
        store.add(minute, own[0], own[1], flusher.process, now)
    summary = summarize(store.buckets([minute]), now, tier_order(alias))
    up = max(now - flusher.started, 1.0)
    summary.update(since=up, covered=up, store="process")
    return summary


def read_totals(alias: str, store: Store) -> dict[str, int]:
    """Return the running totals of ``alias``, its key groups bounded."""
    return top_groups(store.totals(), _group_limit(alias))


def _group_limit(alias: str) -> int:
    from django.core.cache import caches

    return caches[alias].options.metrics.groups


def tier_order(alias: str) -> list[str]:
    """Return the tier names of ``alias`` in read order."""
    from django.core.cache import caches

    return [tier.name for tier in caches[alias].tiers]


def summarize(
    buckets: Mapping[int, Mapping[str, int]],
    now: float,
    order: list[str],
    groups: int | None = None,
) -> dict[str, Any]:
    """Return the summary of ``buckets`` (``{minute: fields}``).

    ``order``: the cache's tiers in read order, the only tiers shown (a
    field of any other name, someone else's, makes no tier). ``groups``:
    the most key groups shown, the busiest (``fields.top_groups``).
    """
    counts: dict[str, int] = {}
    last_seen: dict[str, int] = {}
    latest: dict[str, tuple[int, dict[str, int]]] = {}  # process -> its gauges
    first: int | None = None  # the first minute holding counts
    for minute in sorted(buckets):
        if first is None and any(f[:2] not in ("p|", "g|") for f in buckets[minute]):
            first = minute
        for field, value in buckets[minute].items():
            if field.startswith("p|"):
                last_seen[field[2:]] = max(last_seen.get(field[2:], 0), value)
            elif field.startswith("g|"):
                parts = field.split("|", 2)
                if len(parts) != 3:
                    continue  # not a gauge this package wrote
                _, process, name = parts
                if latest.get(process, (-1, {}))[0] < minute:
                    latest[process] = (minute, {})
                latest[process][1][name] = value
            else:
                counts[field] = counts.get(field, 0) + value
    live = {p for p, seen in last_seen.items() if seen >= now - LIVE_FOR}
    gauges: dict[str, int] = {}
    for process, (_, values) in latest.items():
        if process not in live:
            continue
        for name, value in values.items():
            if name.endswith("|breaker"):
                gauges[name] = max(gauges.get(name, 0), value)
            else:
                gauges[name] = gauges.get(name, 0) + value
    if groups is not None:
        counts = top_groups(counts, groups)
    return {
        **from_counts(counts, gauges, order),
        "processes": len(live),
        "processes_seen": len(last_seen),
        # The seconds the counts cover (a rate's divisor, not the window's).
        "covered": None if first is None else max(now - first * 60, 1.0),
    }


def from_counts(
    counts: Mapping[str, int], gauges: Mapping[str, int], order: list[str]
) -> dict[str, Any]:
    """Return ``total``, ``tiers``, ``bus``, ``latency`` and ``groups``."""
    names = list(order)  # the configured tiers: a stored field makes none
    tiers: dict[str, dict[str, Any]] = {}
    for tier in names:
        info: dict[str, Any] = {n: counts.get(f"{tier}|{n}", 0) for n in COUNTERS}
        info["hit_ratio"] = _ratio(info["hits"], info["hits"] + info["misses"])
        info["errors_by_kind"] = _split(counts, f"{tier}|error|")
        info["refused_by_reason"] = _split(counts, f"{tier}|refused|")
        info["breaker"] = breaker_state(gauges.get(f"{tier}|breaker"))
        info["bytes"] = gauges.get(f"{tier}|bytes")
        info["entries"] = gauges.get(f"{tier}|entries")
        info["latency"] = latency_summary(counts, f"{tier}|")
        tiers[tier] = info
    first = tiers[names[0]] if names else {"hits": 0, "misses": 0}
    requests = first["hits"] + first["misses"]
    hits = sum(info["hits"] for info in tiers.values())
    total: dict[str, Any] = {
        "requests": requests,
        "hits": hits,
        "misses": max(requests - hits, 0),
        "hit_ratio": _ratio(min(hits, requests), requests),
        "errors": sum(info["errors"] for info in tiers.values()),
    }
    for name in _PER_TIER_TOTALS:
        total[name] = max((info[name] for info in tiers.values()), default=0)
    chain = _split(counts, "chain|")
    total["stampedes_collapsed"] = chain.get("collapsed", 0)
    total["stale_served"] = chain.get("stale_served", 0)
    return {
        "total": total,
        "tiers": tiers,
        "groups": _groups(counts),
        "bus": _split(counts, "bus|"),
        "latency": latency_summary(counts, ""),
    }


def _groups(counts: Mapping[str, int]) -> dict[str, dict[str, Any]]:
    groups: dict[str, dict[str, Any]] = {}
    for field, value in _split(counts, "grp|").items():
        group, _, result = field.rpartition("|")
        info = groups.setdefault(group, {"hits": 0, "misses": 0})
        info[result] = info.get(result, 0) + value
    for info in groups.values():
        info["hit_ratio"] = _ratio(info["hits"], info["hits"] + info["misses"])
    return groups


def _split(counts: Mapping[str, int], prefix: str) -> dict[str, int]:
    return {
        field[len(prefix) :]: value
        for field, value in counts.items()
        if field.startswith(prefix)
    }


def by_caller(latency: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split ``{op: ...}`` into the application's operations and the cache's own."""
    user = {op: v for op, v in latency.items() if op in USER_OPERATIONS}
    return user, {op: v for op, v in latency.items() if op not in USER_OPERATIONS}


def latency_summary(counts: Mapping[str, int], prefix: str) -> dict[str, dict]:
    """Return ``{op: {"p50_ms", "p99_ms", "count", "mean_ms"}}``.

    ``prefix`` ``"l2|"`` for one tier's; ``""`` adds up every tier's.
    """
    histograms: dict[str, list[int]] = {}
    sums: dict[str, int] = {}
    for field, value in counts.items():
        if not field.startswith(prefix):
            continue
        parts = field.split("|")
        bucket = latency_field(field)
        if bucket is not None:
            counts_of = histograms.setdefault(
                bucket[1], [0] * (len(LATENCY_BUCKETS_MS) + 1)
            )
            counts_of[bucket[2]] += value
        elif len(parts) == 3 and parts[1] == "lat_us":
            sums[parts[2]] = sums.get(parts[2], 0) + value
    out = {}
    for op, histogram in sorted(histograms.items()):
        count = sum(histogram)
        out[op] = {
            "count": count,
            "p50_ms": _percentile(histogram, count, 0.50),
            "p99_ms": _percentile(histogram, count, 0.99),
            "mean_ms": sums.get(op, 0) / 1000 / count if count else None,
        }
    return out


def _percentile(histogram: list[int], count: int, q: float) -> float | None:
    if not count:
        return None
    seen = 0
    for index, n in enumerate(histogram):
        seen += n
        if seen >= q * count:
            if index < len(LATENCY_BUCKETS_MS):
                return LATENCY_BUCKETS_MS[index]
            break
    return LATENCY_BUCKETS_MS[-1]  # beyond the last bound: "at least" it


def read_series(alias: str, window: float, step: float) -> dict[str, Any]:
    """Return hits, misses and hit ratio per tier in steps over the last ``window``.

    ``step`` is rounded up to whole minutes (the buckets' size); each point
    ``t`` is the start of its step (epoch seconds). Steps with no bucket are
    points with zero reads and a ``None`` ratio, so a chart shows the gap.
    """
    window = min(float(window), RETENTION)
    minutes_per_step = max(1, int(-(-float(step) // 60)))
    store = store_of(alias)
    now = store.now()
    last = int(now // 60)
    first = last - int(window // 60)
    first -= (first - last) % minutes_per_step  # steps end at the current minute
    buckets = store.buckets(range(first, last + 1))
    order = tier_order(alias)
    tiers: dict[str, list[dict[str, Any]]] = {name: [] for name in order}
    total: list[dict[str, Any]] = []
    for start in range(first, last + 1, minutes_per_step):
        counts: dict[str, int] = {}
        for minute in range(start, start + minutes_per_step):
            for field, value in buckets.get(minute, {}).items():
                if field[:2] not in ("p|", "g|"):
                    counts[field] = counts.get(field, 0) + value
        point = from_counts(counts, {}, order)
        for name, points in tiers.items():
            info = point["tiers"].get(name, {"hits": 0, "misses": 0})
            points.append(
                {
                    "t": start * 60,
                    "hits": info["hits"],
                    "misses": info["misses"],
                    "hit_ratio": _ratio(info["hits"], info["hits"] + info["misses"]),
                }
            )
        t = point["total"]
        total.append(
            {
                "t": start * 60,
                "requests": t["requests"],
                "hits": t["hits"],
                "misses": t["misses"],
                "hit_ratio": t["hit_ratio"],
            }
        )
    return {"tiers": tiers, "total": total, "step": minutes_per_step * 60}
