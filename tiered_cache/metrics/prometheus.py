"""A Prometheus collector that reads the deployment's counters at scrape time.

It reads the shared store's running totals (``store.Store.totals``), not
this process's counters: under gunicorn a scrape reaches one worker, and the
number it returns must be every worker's. prometheus_client's multiprocess
mode would do that too, but needs a directory shared by the workers, one
file per process and metric, and cleanup when workers die; the totals are
already in the store for the dashboard and the command, and they also add
up machines, which a directory cannot. The price: a scrape is up to one
``FLUSH_INTERVAL`` behind, and it costs one read of the store (two hashes).

Register it once per process (``register()``; the test project does it in
its URLconf) and serve ``prometheus_client``'s view.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from typing import Any

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
)
from prometheus_client.registry import REGISTRY, Collector, CollectorRegistry

from ..resilience import LogThrottle
from ..stats import LATENCY_BUCKETS_MS
from .fields import BREAKER_STATES, declared, latency_field
from .flusher import store_of, tiered_aliases
from .summary import LIVE_FOR, _minutes, read_totals, summarize, tier_order

__all__ = ["TieredCacheCollector", "register"]

logger = logging.getLogger(__name__)
_throttle = LogThrottle()

#: Tier counters exported one to one: (counter field, metric, help).
_TIER_COUNTERS = (
    ("sets", "sets", "Values written into the tier (promotions included)."),
    ("deletes", "deletes", "Keys deleted from the tier."),
    ("promotions", "promotions", "Hits copied up into this faster tier."),
    ("rejected", "rejected", "Stored entries refused when read (unreadable)."),
    ("skipped", "skipped", "Calls not made: the tier's breaker was open."),
    ("busy", "busy", "Calls not made: no connection free in time."),
    ("breaker_opened", "breaker_opened", "Times the tier's breaker opened."),
)


_RESULT = {"hits": "hit", "misses": "miss"}


class TieredCacheCollector(Collector):
    """Every TieredCache alias's totals, as ``tiered_cache_*`` metrics."""

    def __init__(self, aliases: Iterable[str] | None = None) -> None:
        self.aliases = None if aliases is None else list(aliases)

    def describe(self) -> Iterator[Any]:
        """Yield the families, without samples: registering reads no store.

        prometheus_client calls ``collect()`` at registration to learn the
        names of a collector that has no ``describe()``: that read Redis
        while the URLconf was imported, and a Redis down at start-up failed
        every URL of the site (issue 8).
        """
        yield from _Families().all()

    def collect(self) -> Iterator[Any]:
        """Yield every alias's families; an alias whose store fails has none.

        A store that cannot be read (Redis down) is not a failed scrape: its
        alias gets ``tiered_cache_store_up 0`` and no other sample (unknown
        is not zero), and the other aliases are exported as usual.
        """
        aliases = tiered_aliases() if self.aliases is None else self.aliases
        families = _Families()
        for alias in aliases:
            try:
                store = store_of(alias)
                totals = {**_declared(alias), **read_totals(alias, store)}
                now = store.now()
                order = tier_order(alias)
                live = summarize(store.buckets(_minutes(LIVE_FOR, now)), now, order)
            except Exception as exc:
                if _throttle.allow(alias):
                    logger.warning(
                        "cache %s: metrics store unreadable at scrape (%s)", alias, exc
                    )
                families.store_up.add_metric([alias], 0)
                continue
            families.store_up.add_metric([alias], 1)
            families.add(alias, totals, live, order)
        yield from families.all()


def _declared(alias: str) -> dict[str, int]:
    """The zero series of ``alias`` (``fields.declared``): a constant count."""
    from django.core.cache import caches

    return declared(caches[alias]._chain)


class _Families:
    def __init__(self) -> None:
        c, g = CounterMetricFamily, GaugeMetricFamily
        self.requests = c(
            "tiered_cache_requests",
            "Lookups in a tier, by result (hit, miss).",
            labels=["cache", "tier", "result"],
        )
        self.tier = {
            field: c(f"tiered_cache_{name}", text, labels=["cache", "tier"])
            for field, name, text in _TIER_COUNTERS
        }
        self.evictions = c(
            "tiered_cache_evictions",
            "Entries removed by the tier: capacity (policy) or expired.",
            labels=["cache", "tier", "reason"],
        )
        self.errors = c(
            "tiered_cache_errors",
            "Failed calls into the tier, by kind (timeout, connection, oom...).",
            labels=["cache", "tier", "kind"],
        )
        self.refused = c(
            "tiered_cache_refused",
            "Values the tier did not store, by reason (too_big, admission).",
            labels=["cache", "tier", "reason"],
        )
        self.leases = c(
            "tiered_cache_leases",
            "Stampede leases asked of the tier, by result (granted, refused).",
            labels=["cache", "tier", "result"],
        )
        self.collapsed = c(
            "tiered_cache_stampedes_collapsed",
            "get_or_set callers that waited for a computation already running.",
            labels=["cache"],
        )
        self.stale = c(
            "tiered_cache_stale_served",
            "Stale values served by cached(stale_if_error=...).",
            labels=["cache"],
        )
        self.bus = c(
            "tiered_cache_bus_events",
            "Invalidation bus events (announced, received, dropped, gaps, "
            "generation_bumps...).",
            labels=["cache", "event"],
        )
        self.groups = c(
            "tiered_cache_group_requests",
            "get() calls per key group (the text before the first ':'; "
            "METRICS['GROUPS'] groups at most, then 'other'), by result.",
            labels=["cache", "group", "result"],
        )
        self.latency = HistogramMetricFamily(
            "tiered_cache_operation_duration_seconds",
            "Duration of calls into tiers below L1, by operation.",
            labels=["cache", "tier", "op"],
        )
        self.bytes = g(
            "tiered_cache_bytes",
            "Bytes held by the tier, all live processes (local tiers only).",
            labels=["cache", "tier"],
        )
        self.entries = g(
            "tiered_cache_entries",
            "Entries held by the tier, all live processes (local tiers only).",
            labels=["cache", "tier"],
        )
        self.breaker = g(
            "tiered_cache_breaker_state",
            "1 for the tier's breaker state (worst of the live processes).",
            labels=["cache", "tier", "state"],
        )
        self.processes = g(
            "tiered_cache_processes",
            "Processes that flushed metrics in the last three minutes.",
            labels=["cache"],
        )
        self.store_up = g(
            "tiered_cache_store_up",
            "1 when the shared metrics store answered this scrape, else 0.",
            labels=["cache"],
        )

    def add(
        self,
        alias: str,
        totals: dict[str, int],
        live: dict[str, Any],
        order: list[str],
    ) -> None:
        # The configured tiers only: a field someone else put in the store
        # makes no series (the series of a scrape stay bounded).
        for tier in order:
            get = lambda n, t=tier: totals.get(f"{t}|{n}", 0)  # noqa: E731
            self.requests.add_metric([alias, tier, "hit"], get("hits"))
            self.requests.add_metric([alias, tier, "miss"], get("misses"))
            for field, family in self.tier.items():
                family.add_metric([alias, tier], get(field))
            self.evictions.add_metric([alias, tier, "capacity"], get("evictions"))
            self.evictions.add_metric([alias, tier, "expired"], get("expirations"))
            self.leases.add_metric([alias, tier, "granted"], get("leases"))
            self.leases.add_metric([alias, tier, "refused"], get("leases_refused"))
            for prefix, family in (("error", self.errors), ("refused", self.refused)):
                start = f"{tier}|{prefix}|"
                for field, value in totals.items():
                    if field.startswith(start):
                        family.add_metric([alias, tier, field[len(start) :]], value)
            self._latency(alias, tier, totals)
            info = live["tiers"].get(tier, {})
            if info.get("bytes") is not None:
                self.bytes.add_metric([alias, tier], info["bytes"])
                self.entries.add_metric([alias, tier], info["entries"])
            if info.get("breaker") is not None:
                for state in BREAKER_STATES:
                    self.breaker.add_metric(
                        [alias, tier, state], float(info["breaker"] == state)
                    )
        self.collapsed.add_metric([alias], totals.get("chain|collapsed", 0))
        self.stale.add_metric([alias], totals.get("chain|stale_served", 0))
        for field, value in totals.items():
            if field.startswith("bus|"):
                self.bus.add_metric([alias, field[4:]], value)
            elif field.startswith("grp|"):
                group, _, result = field[4:].rpartition("|")
                if result in _RESULT:  # else not a field this package wrote
                    self.groups.add_metric([alias, group, _RESULT[result]], value)
        self.processes.add_metric([alias], live["processes"])

    def _latency(self, alias: str, tier: str, totals: dict[str, int]) -> None:
        ops: dict[str, list[int]] = {}
        for field, value in totals.items():
            bucket = latency_field(field)
            if bucket is not None and bucket[0] == tier:
                _, op, index = bucket
                ops.setdefault(op, [0] * (len(LATENCY_BUCKETS_MS) + 1))[index] += value
        for op, counts in sorted(ops.items()):
            cumulative, buckets = 0, []
            for bound, count in zip((*LATENCY_BUCKETS_MS, None), counts, strict=True):
                cumulative += count
                le = "+Inf" if bound is None else repr(bound / 1000)
                buckets.append((le, cumulative))
            seconds = totals.get(f"{tier}|lat_us|{op}", 0) / 1e6
            self.latency.add_metric([alias, tier, op], buckets, seconds)

    def all(self) -> Iterator[Any]:
        yield self.requests
        yield from self.tier.values()
        yield from (self.evictions, self.errors, self.refused, self.leases)
        yield from (self.collapsed, self.stale, self.bus, self.groups)
        yield self.latency
        yield from (self.bytes, self.entries, self.breaker, self.processes)
        yield self.store_up


def register(registry: CollectorRegistry | None = None) -> TieredCacheCollector:
    """Register the collector (once) in ``registry`` (the default registry)."""
    registry = REGISTRY if registry is None else registry
    for existing in list(getattr(registry, "_collector_to_names", {})):
        if isinstance(existing, TieredCacheCollector):
            return existing
    collector = TieredCacheCollector()
    registry.register(collector)
    return collector
