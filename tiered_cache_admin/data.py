"""Everything the dashboard reads about a cache, in one place.

The numbers come from ``tiered_cache.metrics`` (``read_summary``,
``read_series``, ``flush_now``): the cross-process view every worker flushes
to the shared store, so a page shows the whole deployment, not the one worker
that served it. No other module of the admin app reads metrics.

The store is the cache's Redis (or disk) tier, and it may be down: a page
then shows the serving process's own numbers with the reason (``summary``'s
``"error"``), never a server error; the flush a page starts with is skipped
with a log line.
"""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.core.cache import caches

from tiered_cache import metrics as _metrics
from tiered_cache.backend import TieredCache
from tiered_cache.history.flush import read_curve
from tiered_cache.metrics.summary import by_caller

__all__ = [
    "WINDOWS",
    "aliases",
    "by_caller",
    "flush",
    "l1_curve",
    "series",
    "summary",
    "tiered_cache",
]

logger = logging.getLogger(__name__)

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
    """Return the deployment's numbers for ``alias`` (``read_summary``'s shape).

    When the store cannot be read: this process's own numbers, and
    ``"error"`` saying why.
    """
    try:
        return _metrics.read_summary(alias, since=since)
    except Exception as exc:  # the store (Redis) is down or refuses
        logger.warning("cache %s: cannot read the metrics store (%s)", alias, exc)
        return {
            **_metrics.read_own_summary(alias),
            "error": "shared metrics unavailable: cannot read the metrics store "
            f"({exc}); the numbers below are this process's own",
        }


def series(alias: str, window: str) -> dict[str, Any]:
    """Return the hit ratio per tier over ``window`` (a key of ``WINDOWS``).

    When the store cannot be read: no points (the chart says so).
    """
    seconds, step = WINDOWS[window]
    try:
        return _metrics.read_series(alias, window=seconds, step=step)
    except Exception as exc:
        logger.warning("cache %s: cannot read the metrics store (%s)", alias, exc)
        return {"tiers": {}, "total": [], "step": step}


def flush(alias: str) -> None:
    """Push this process's pending counters, so a page shows its own requests.

    A store that fails keeps them for the background flush (logged).
    """
    try:
        _metrics.flush_now(alias)
    except Exception as exc:
        logger.warning("cache %s: metrics flush failed (%s)", alias, exc)


def l1_curve(alias: str) -> dict[str, Any] | None:
    """Return the L1 miss-ratio curve estimate (``read_curve``), None if unknown.

    A store that does not answer shows as unknown: the rest of the page
    still renders.
    """
    try:
        return read_curve(alias)
    except Exception:
        return None
