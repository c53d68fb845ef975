"""Everything the dashboard reads about a cache, in one place.

The numbers come from ``tiered_cache.metrics`` (``read_summary``,
``read_series``, ``flush_now``): the cross-process view every worker flushes
to the shared store, so a page shows the whole deployment, not the one worker
that served it. No other module of the admin app reads metrics.
"""

from __future__ import annotations

import time
from typing import Any

from django.conf import settings
from django.core.cache import caches

from tiered_cache.backend import TieredCache

try:
    from tiered_cache import metrics as _metrics
except ImportError:  # FALLBACK (until tiered_cache.metrics lands): remove at merge
    _metrics = None

__all__ = ["WINDOWS", "aliases", "flush", "series", "summary", "tiered_cache"]

#: Chart windows offered on the overview: name -> (seconds, step in seconds).
WINDOWS = {"hour": (3600.0, 60.0), "day": (86400.0, 900.0)}


def aliases() -> list[str]:
    """Return the aliases of ``settings.CACHES`` whose backend is a TieredCache."""
    return [alias for alias in settings.CACHES if _is_tiered(alias)]


def _is_tiered(alias: str) -> bool:
    try:
        return isinstance(caches[alias], TieredCache)
    except Exception:  # a broken CACHES entry is manage.py check's to report
        return False


def tiered_cache(alias: str) -> TieredCache:
    """Return the TieredCache at ``alias``; ``KeyError`` when there is none."""
    if alias not in aliases():
        raise KeyError(alias)
    return caches[alias]  # type: ignore[return-value]


def summary(alias: str, since: float | None = None) -> dict[str, Any]:
    """Return the deployment's numbers for ``alias`` (``read_summary``'s shape)."""
    if _metrics is not None:
        return _metrics.read_summary(alias, since=since)
    return _fallback_summary(alias)


def series(alias: str, window: str) -> dict[str, Any]:
    """Return the hit ratio per tier over ``window`` (a key of ``WINDOWS``)."""
    seconds, step = WINDOWS[window]
    if _metrics is not None:
        return _metrics.read_series(alias, window=seconds, step=step)
    return {"tiers": {}}  # FALLBACK: no history without the metrics pipeline


def flush(alias: str) -> None:
    """Push this process's pending counters, so a page shows its own requests."""
    if _metrics is not None:
        _metrics.flush_now(alias)


# -- FALLBACK (until tiered_cache.metrics lands; remove at merge) ----------------
#
# The same shapes built from ``cache.stats()``: this process only, no latency,
# no key groups, no history. ``since`` is the time since this module loaded.

_LOADED = time.time()


def _fallback_summary(alias: str) -> dict[str, Any]:
    cache = tiered_cache(alias)
    stats = cache.stats()
    tiers: dict[str, dict[str, Any]] = {}
    for tier in cache.tiers:
        counters = dict(stats.get(tier.name, {}))
        counters.setdefault("breaker", None)
        counters["hit_ratio"] = _ratio(
            counters.get("hits", 0), counters.get("misses", 0)
        )
        described = tier.describe()
        counters["bytes"] = described.get("bytes", described.get("volume"))
        counters["entries"] = described.get("entries")
        tiers[tier.name] = counters
    hits = sum(t.get("hits", 0) for t in tiers.values())
    # A request missed only when the last tier asked missed too.
    misses = list(tiers.values())[-1].get("misses", 0) if tiers else 0
    total = {
        "hits": hits,
        "misses": misses,
        "hit_ratio": _ratio(hits, misses),
        **{
            name: sum(t.get(name, 0) for t in tiers.values())
            for name in ("sets", "deletes", "errors")
        },
    }
    return {
        "total": total,
        "tiers": tiers,
        "groups": {},
        "bus": {},
        "latency": {},
        "since": time.time() - _LOADED,
        "processes": 1,
    }


def _ratio(hits: int, misses: int) -> float | None:
    return hits / (hits + misses) if hits + misses else None
