"""Metrics of every TieredCache alias, for the whole deployment.

Counting happens inside the backend (``tiered_cache.stats``: per tier, per
chain, per bus); this package moves the counts between processes and reads
them back. One module per job:

* ``fields``: a chain's counters as flat, bounded field names;
* ``store``: the per-minute buckets in the shared tier (L2, else L3);
* ``flusher``: the background thread sending each process's deltas;
* ``summary``: the numbers of one alias, read back (``read_summary``,
  ``read_series``);
* ``prometheus``: the collector a scrape reads (needs ``prometheus_client``,
  imported there only).

The interface the admin dashboard and ``manage.py cache_stats`` use:

.. code-block:: text

    read_summary(alias, since=None) -> {
        "total": {"requests", "hits", "misses", "hit_ratio", "sets",
                  "deletes", "errors", "stampedes_collapsed", "stale_served"},
        "tiers": {tier: {every counter of stats.COUNTERS, "hit_ratio",
                  "breaker", "bytes", "entries", "errors_by_kind",
                  "refused_by_reason", "latency"}},
        "groups": {group: {"hits", "misses", "hit_ratio"}},  # METRICS GROUPS
        "bus": {BusStats counter: n},
        "latency": {op: {"p50_ms", "p99_ms", "count", "mean_ms"}},
        "since": seconds, "covered": seconds | None,
        "processes": n, "processes_seen": n, "store": kind,
    }
    read_own_summary(alias) -> the same shape, this process's counters only
        (when the store cannot be read; "store": "process")
    read_series(alias, window, step) -> {
        "tiers": {tier: [{"t", "hits", "misses", "hit_ratio"}, ...]},
        "total": [{"t", "requests", "hits", "misses", "hit_ratio"}, ...],
        "step": seconds,
    }
    flush_now(alias=None) -> None

Changes to the shapes first agreed: ``hit_ratio`` is ``None`` (not 0) when
there were no reads; ``latency`` is per tier operation below L1 (L1 is not
timed, see docs/metrics.rst) and also appears per tier; ``groups`` is
empty unless ``METRICS["GROUPS"]`` is set; ``total`` adds ``requests``,
``read_series`` adds ``total`` and ``step``, the summary adds
``processes_seen``, ``store`` and ``covered`` (the seconds since the first
minute holding counts: what a rate is averaged over, issue 8).
"""

from __future__ import annotations

from .flusher import flusher
from .summary import read_own_summary, read_series, read_summary

__all__ = [
    "flush_now",
    "read_own_summary",
    "read_series",
    "read_summary",
    "start_flushing",
]


def flush_now(alias: str | None = None) -> None:
    """Send this process's counters of ``alias`` (every alias: ``None``) now."""
    flusher.flush(alias)


def start_flushing() -> None:
    """Start this process's background flush (the app's ``ready()`` does)."""
    flusher.start()
