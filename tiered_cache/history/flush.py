"""Send each process's sampled reads to the history store, off the request thread.

Runs as a job of the metrics flusher's thread (``metrics.flusher``: one
background thread per process, fork-aware, started by the app's ``ready()``)
every flush interval: for each TieredCache alias with HISTORY on whose
recorder this process built, drain the buffer (which also feeds the L1
miss-ratio curve), append it to the store and publish this process's curve.
A store that does not answer loses that flush's accesses (the history is a
sample; nothing waits for it) and logs once per burst. A process that read
nothing since the last flush sends nothing (a management command, an idle
worker), so its curve ages out of ``read_curve``.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from ..forksafe import Registry
from ..metrics.flusher import flusher, options_of, tiered_aliases
from ..resilience import LogThrottle
from .recorder import Recorder, built_recorder
from .store import HistoryStore, history_store_for

__all__ = [
    "CURVE_FIELD",
    "MRC_MULTIPLES",
    "curve_of",
    "flush_history",
    "history_enabled",
    "read_curve",
    "store_of",
]

logger = logging.getLogger(__name__)

#: The sizes the curve is reported at, as multiples of the current L1 size.
MRC_MULTIPLES = (0.5, 1.0, 2.0, 4.0)
#: Field prefix of each process's curve in the store (``mrc|<process>``).
CURVE_FIELD = "mrc|"

_stores: Registry[HistoryStore] = Registry(forget_in_child=True)
_throttle = LogThrottle()


def store_of(alias: str) -> HistoryStore:
    """Return the history store of ``alias`` (building its cache if need be)."""
    from django.core.cache import caches

    cache = caches[alias]
    namespace = cache.namespace
    return _stores.get_or_create(
        (alias, namespace, id(cache._chain)),
        lambda: history_store_for(cache.options.history, alias, namespace, cache.tiers),
    )


def _recorder(alias: str) -> Recorder | None:
    options = options_of(alias)
    return None if options is None else built_recorder(options)


def history_enabled(aliases: list[str]) -> bool:
    """Return whether one of ``aliases`` is configured with HISTORY on."""
    return any(
        options is not None and options.history.enabled
        for options in map(options_of, aliases)
    )


def curve_of(recorder: Recorder, l1_entries: int) -> dict[str, Any]:
    """Return the curve at ``MRC_MULTIPLES`` of ``l1_entries`` (what is published)."""
    sizes = [multiple * l1_entries for multiple in MRC_MULTIPLES]
    return {
        "entries": l1_entries,
        "sampled": round(recorder.curve.accesses),
        "hit_ratio": dict(
            zip(
                [f"{m:g}x" for m in MRC_MULTIPLES],
                recorder.curve.hit_ratios(sizes),
                strict=True,
            )
        ),
        "at": time.time(),
    }


def flush_history() -> None:
    """Drain every built recorder into its store (the flusher thread's job)."""
    for alias in tiered_aliases():
        recorder = _recorder(alias)
        if recorder is None:
            continue
        accesses, names = recorder.drain()
        if not accesses and not names:
            continue  # nothing read since: the published curve stands
        try:
            store = store_of(alias)
            store.append(accesses, names)
            top = _l1_entries(alias)
            if top is not None:
                curve = curve_of(recorder, top)
                store.put(CURVE_FIELD + flusher.process, json.dumps(curve))
        except Exception as exc:  # the store is down: this sample is lost
            if _throttle.allow(alias):
                logger.warning(
                    "cache history: %d accesses of %s not stored (%s)",
                    len(accesses),
                    alias,
                    exc,
                )


def _l1_entries(alias: str) -> int | None:
    """Return the current size of ``alias``'s L1 in entries (its limit if set)."""
    from django.core.cache import caches

    top = caches[alias]._top
    if top is None:
        return None
    usage = top.usage()
    return getattr(top, "max_entries", None) or usage["entries"]


flusher.add_job(flush_history)


#: A process whose curve is older than this (seconds) is not counted.
CURVE_MAX_AGE = 600.0


def read_curve(alias: str) -> dict[str, Any] | None:
    """Return ``alias``'s L1 miss-ratio curve over its live processes, or None.

    ``{"hit_ratio": {"0.5x": r, "1x": r, "2x": r, "4x": r}, "entries": n,
    "processes": n, "sampled": n}``: each process's estimate weighted by the
    sampled reads it saw (each process has its own L1), ``entries`` their
    mean L1 size. ``None`` when HISTORY is off or no process published one
    in the last ``CURVE_MAX_AGE`` seconds.
    """
    from django.core.cache import caches

    if not caches[alias].options.history.enabled:
        return None
    now = time.time()
    curves = []
    for text in store_of(alias).fields(CURVE_FIELD).values():
        try:
            curve = json.loads(text)
        except ValueError:
            continue
        if now - curve.get("at", 0) <= CURVE_MAX_AGE and curve.get("sampled"):
            curves.append(curve)
    if not curves:
        return None
    weight = sum(curve["sampled"] for curve in curves)
    ratios = {}
    for name in curves[0]["hit_ratio"]:
        values = [(c["hit_ratio"].get(name), c["sampled"]) for c in curves]
        known = [(v, w) for v, w in values if v is not None]
        ratios[name] = (
            sum(v * w for v, w in known) / sum(w for _, w in known) if known else None
        )
    return {
        "hit_ratio": ratios,
        "entries": round(sum(c["entries"] for c in curves) / len(curves)),
        "processes": len(curves),
        "sampled": weight,
    }
