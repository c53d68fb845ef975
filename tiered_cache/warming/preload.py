"""Load the published warm set into this process's L1, in the background.

Opt-in (``WARMING["PRELOAD"]``): at start-up (the app's ``ready()``, and again
in each forked worker) a daemon thread per alias reads the warm set
``warm_cache`` published, and for each key, coldest first, reads it from the
shared tiers and copies it into L1 as a promotion does (remaining lifetime
kept, a newer L1 entry never replaced). Keys enter L1 by the ordinary
insertion, which for S3-FIFO is its small FIFO (probation: a key not read
soon leaves first) and for TinyLFU its window; LRU has no probation, so the
hottest keys go in last, at the recent end. The thread reads at most
``PRELOAD_RATE`` keys per second below L1 and stops once L1 is 90% full, so
it never evicts what the process's own requests brought in.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from ..forksafe import after_fork_in_child
from ..sentinels import MISSING, UNAVAILABLE

__all__ = ["preload", "start_preloads"]

logger = logging.getLogger(__name__)

_FULL = 0.9
_started: list[str] = []


def _l1_full(tier: Any) -> bool:
    usage = tier.usage()
    if tier.max_entries is not None and usage["entries"] >= _FULL * tier.max_entries:
        return True
    return tier.max_bytes is not None and usage["bytes"] >= _FULL * tier.max_bytes


def preload(
    alias: str, *, rate: float | None = None, stop: threading.Event | None = None
) -> int:
    """Copy ``alias``'s warm set from the shared tiers into L1; return keys loaded."""
    from django.core.cache import caches

    from .run import read_warm_set

    cache = caches[alias]
    top = cache._top
    if top is None:
        return 0
    chain = cache._chain
    if rate is None:
        rate = cache.options.warming.preload_rate
    stop = stop or threading.Event()
    loaded = 0
    for key, _score in reversed(read_warm_set(alias)):
        if _l1_full(top) or stop.is_set():
            break
        final = cache.stored_key(key)
        if top.has_key(final):
            continue
        for index in range(1, len(chain.slots)):
            record = chain.slots[index].get(final)
            if record is not MISSING and record is not UNAVAILABLE:
                chain.promote_one(final, record, chain.slots[:1])
                loaded += 1
                break
        stop.wait(1.0 / rate)
    return loaded


def _run(alias: str) -> None:
    try:
        loaded = preload(alias)
    except Exception as exc:  # the store or a tier does not answer
        logger.warning("cache %s: preload of the warm set stopped (%s)", alias, exc)
        return
    logger.info("cache %s: preloaded %d keys of the warm set into L1", alias, loaded)


def start_preloads(aliases: list[str]) -> list[threading.Thread]:
    """Start a preload thread for each of ``aliases`` with ``WARMING["PRELOAD"]``."""
    from ..metrics.flusher import options_of

    threads = []
    for alias in aliases:
        options = options_of(alias)
        if options is None or not options.warming.preload:
            continue
        if alias not in _started:
            _started.append(alias)
        thread = threading.Thread(
            target=_run,
            args=(alias,),
            name=f"tiered_cache-preload-{alias}",
            daemon=True,
        )
        thread.start()
        threads.append(thread)
    return threads


# A worker forked from a master that preloaded starts with an empty L1 of
# its own making only if it preloads too (threads do not survive fork()).
after_fork_in_child(lambda: start_preloads(list(_started)))
