"""Each process's counters, sent to the shared store every few seconds.

A daemon thread (never the request thread) wakes every ``FLUSH_INTERVAL``
seconds and, for every TieredCache alias of ``settings.CACHES`` whose chain
this process has built, sends what its counters gained since the last flush
that succeeded (a flush that fails is retried whole by the next one: nothing
is lost while the store is down, only delayed). It is started by the app's
``ready()``; at exit one last flush is tried (best effort).

Forks: the thread does not survive ``fork()``. A child (a gunicorn worker of
a ``--preload`` master) starts its own, under its own process id, and
ignores the counts it inherited: they are the parent's to send.

Other periodic sends of the same kind ride on the same thread as *jobs*
(``add_job``): the access history (``tiered_cache.history.flush``) is one.
"""

from __future__ import annotations

import atexit
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from ..chain import Chain, built_chain
from ..conf import TieredOptions, options_for
from ..forksafe import Registry, after_fork_in_child, renewed_lock
from ..resilience import LogThrottle
from . import fields
from .store import Store, store_for

__all__ = ["Flusher", "flusher", "options_of", "store_of", "tiered_aliases"]

logger = logging.getLogger(__name__)

BACKENDS = frozenset({"tiered_cache.TieredCache", "tiered_cache.backend.TieredCache"})
_DEFAULT_INTERVAL = 5.0

_stores: Registry[Store] = Registry(forget_in_child=True)


def tiered_aliases() -> list[str]:
    """Return the aliases of ``settings.CACHES`` that are TieredCaches."""
    return [
        alias
        for alias, params in settings.CACHES.items()
        if params.get("BACKEND") in BACKENDS
    ]


def options_enabled(alias: str) -> bool:
    """Return whether ``alias`` is configured with metrics on."""
    try:
        return options_for(settings.CACHES[alias].get("OPTIONS")).metrics.enabled
    except ImproperlyConfigured:
        return False


def options_of(alias: str) -> TieredOptions | None:
    """Return the parsed OPTIONS of ``alias``; None when misconfigured.

    A misconfigured cache is the system checks' to report; background work
    skips it.
    """
    try:
        return options_for(settings.CACHES[alias].get("OPTIONS"))
    except ImproperlyConfigured:
        return None


def _built(alias: str) -> tuple[Any, Chain] | None:
    """Return ``(options, chain)`` of ``alias`` if this process built its chain."""
    options = options_of(alias)
    if options is None:
        return None
    chain = built_chain(options)
    return None if chain is None else (options, chain)


def store_of(alias: str) -> Store:
    """Return the shared store of ``alias`` (building its cache if need be)."""
    from django.core.cache import caches

    cache = caches[alias]
    namespace = cache.namespace
    return _stores.get_or_create(
        (alias, namespace, id(cache._chain)),
        lambda: store_for(alias, namespace, cache.tiers),
    )


def _process_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class Flusher:
    """Sends this process's counter deltas (see the module docstring)."""

    def __init__(self) -> None:
        self._lock = renewed_lock(self)
        #: Counters as last sent, per alias.
        self._sent: dict[str, dict[str, int]] = {}
        #: Aliases whose counters came with a fork (the parent sends those).
        self._inherited: set[str] = set()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._throttle = LogThrottle()
        self.process = _process_id()
        #: Called after each flush, on this thread (``add_job``).
        self.jobs: list[Callable[[], None]] = []

    def add_job(self, job: Callable[[], None]) -> None:
        """Run ``job()`` after every flush, on the flusher's thread.

        A job catches and logs its own errors; one that raises is logged here
        and runs again next time.
        """
        if job not in self.jobs:
            self.jobs.append(job)

    def flush(self, alias: str | None = None) -> None:
        """Send the deltas of ``alias`` (every alias when ``None``) now.

        Raises what the store raised; the deltas then wait for the next flush.
        """
        with self._lock:
            for name in [alias] if alias is not None else tiered_aliases():
                self._flush(name)

    def _flush(self, alias: str) -> None:
        built = _built(alias)
        if built is None or not built[0].metrics.enabled:
            return
        chain = built[1]
        current = fields.counters(chain)
        sent = self._sent.get(alias)
        if sent is None and alias in self._inherited:
            # The first flush in a forked child: what it holds is the parent's.
            self._inherited.discard(alias)
            self._sent[alias] = current
            return
        deltas = {}
        for name, value in current.items():
            delta = value - (sent or {}).get(name, 0)
            if delta < 0:  # the counters were reset (tests): count from zero
                delta = value
            if delta:
                deltas[name] = delta
        if not deltas and not current:
            return  # never served anything (a management command): not a worker
        now = time.time()
        store_of(alias).add(
            int(now // 60), deltas, fields.gauges(chain), self.process, now
        )
        self._sent[alias] = current

    # -- the thread --------------------------------------------------------

    def interval(self) -> float:
        """Return the shortest ``FLUSH_INTERVAL`` of the TieredCache aliases."""
        intervals = []
        for alias in tiered_aliases():
            try:
                options = options_for(settings.CACHES[alias].get("OPTIONS"))
            except ImproperlyConfigured:
                continue
            if options.metrics.enabled:
                intervals.append(options.metrics.flush_interval)
        return min(intervals, default=_DEFAULT_INTERVAL)

    def start(self) -> None:
        """Start the thread (once per process) and the flush at exit."""
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return
            self._stop = threading.Event()
            self._thread = threading.Thread(
                target=self._run, name="tiered_cache-metrics", daemon=True
            )
            self._thread.start()

    def stop(self) -> None:
        """Stop the thread (tests); a flush in progress completes."""
        self._stop.set()
        thread = self._thread
        if thread is not None:
            thread.join(timeout=5)  # a flush stuck on a dead store: leave it

    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _run(self) -> None:
        stop = self._stop
        while not stop.wait(self.interval()):
            self._flush_logged()
            self.run_jobs()

    def run_jobs(self) -> None:
        """Run every job once (the thread does after each flush; tests call it)."""
        for job in list(self.jobs):
            try:
                job()
            except Exception:
                if self._throttle.allow(f"job {job!r}"):
                    logger.exception("cache metrics: job %r failed", job)

    def _flush_logged(self) -> None:
        try:
            self.flush()
        except Exception as exc:  # the store is down: next time, with these
            if self._throttle.allow("flush"):
                logger.warning("cache metrics: flush failed (%s); kept for later", exc)

    def _after_fork(self) -> None:
        was_running = self._thread is not None
        self._thread = None
        self.process = _process_id()
        self._inherited = set(self._sent) | set(_built_aliases())
        self._sent = {}
        if was_running:
            self.start()


def _built_aliases() -> Iterator[str]:
    try:
        aliases = tiered_aliases()
    except Exception:  # settings not configured in this child
        return
    for alias in aliases:
        if _built(alias) is not None:
            yield alias


#: The process's flusher.
flusher = Flusher()
after_fork_in_child(flusher._after_fork)


@atexit.register
def _flush_at_exit() -> None:
    if flusher.running():
        flusher.stop()
        flusher._flush_logged()
        flusher.run_jobs()
