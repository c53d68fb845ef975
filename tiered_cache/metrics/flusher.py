"""Each process's counters, sent to the shared store every few seconds.

A daemon thread (never the request thread) wakes every ``FLUSH_INTERVAL``
seconds and, for every TieredCache alias of ``settings.CACHES`` whose chain
this process has built, sends what its counters gained since the last flush
that succeeded. A flush that fails is kept as it was (a ``Batch``: its
deltas and sequence number) and sent again, unchanged, before anything newer:
nothing is lost while the store is down, only delayed, and a store that
applied it without answering (a timeout) skips it the second time. What a
process holds while the store is down is one batch per alias and its
cumulative counters, however long the outage. It is started by the app's
``ready()``; at exit one last flush is tried (best effort).

Forks: the thread does not survive ``fork()``. A child (a gunicorn worker of
a ``--preload`` master) starts its own, under its own process id, and
ignores the counts it inherited: they are the parent's to send. The counts
are set aside in the fork hook itself, before the child serves anything, so
what it serves before its first flush is sent.

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
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from ..chain import Chain, built_chain
from ..conf import TieredOptions, options_for
from ..forksafe import Registry, after_fork_in_child, renewed_lock
from ..resilience import LogThrottle
from . import fields
from .store import Batch, Store, store_for

__all__ = [
    "Flusher",
    "flusher",
    "options_of",
    "own_fields",
    "store_of",
    "tiered_aliases",
]

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


def own_fields(alias: str) -> tuple[dict[str, int], dict[str, int]] | None:
    """Return this process's counters and gauges of ``alias`` (``None``: unbuilt)."""
    built = _built(alias)
    if built is None:
        return None
    return fields.counters(built[1]), fields.gauges(built[1])


def store_of(alias: str) -> Store:
    """Return the shared store of ``alias`` (building its cache if need be)."""
    from django.core.cache import caches

    cache = caches[alias]
    namespace = cache.namespace
    return _stores.get_or_create(
        (alias, namespace, id(cache._chain)),
        lambda: store_for(alias, namespace, cache.tiers, cache.options.metrics.groups),
    )


def _process_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass
class _Pending:
    """A flush not known to be applied: sent again as it is, first."""

    batch: Batch
    minute: int
    deltas: dict[str, int]
    gauges: dict[str, int]
    now: float
    #: The counters the deltas bring the store up to.
    counters: dict[str, int]


class Flusher:
    """Sends this process's counter deltas (see the module docstring)."""

    def __init__(self) -> None:
        self._lock = renewed_lock(self)
        #: Counters as last sent, per alias.
        self._sent: dict[str, dict[str, int]] = {}
        #: The flush of each alias that failed, to send again unchanged.
        self._pending: dict[str, _Pending] = {}
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._throttle = LogThrottle()
        self.process = _process_id()
        #: This process only reads the metrics (``only_read``).
        self.reader = False
        #: Called after each flush, on this thread (``add_job``).
        self.jobs: list[Callable[[], None]] = []
        self._new_sender()

    def _new_sender(self) -> None:
        """Name this process's life (a restart reusing the pid is another)."""
        self.sender = f"{self.process}:{uuid.uuid4().hex[:12]}"
        self._seq = 0
        #: When this process's life began (its counters count from then).
        self.started = time.time()

    def only_read(self) -> None:
        """Make this process a reader of the metrics: it sends nothing, ever.

        ``manage.py cache_stats`` builds the caches to find their stores, and
        a cache built starts its bus listener, whose calls are counted: sent,
        they made each run of the command a live process of the deployment
        for three minutes, with latency rows of its own and, at exit, the
        errors of an interpreter shutting down (issue 8).
        """
        self.reader = True
        self.stop()

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
        A reader (``only_read``) sends nothing.
        """
        if self.reader:
            return
        with self._lock:
            for name in [alias] if alias is not None else tiered_aliases():
                self._flush(name)

    def _flush(self, alias: str) -> None:
        built = _built(alias)
        if built is None or not built[0].metrics.enabled:
            return
        chain = built[1]
        store = store_of(alias)
        pending = self._pending.get(alias)
        if pending is not None:  # raises again if the store still fails
            self._send(store, alias, pending)
        current = fields.counters(chain)
        sent = self._sent.get(alias)
        deltas = {}
        for name, value in current.items():
            delta = value - (sent or {}).get(name, 0)
            if delta < 0:  # the counters were reset (tests): count from zero
                delta = value
            if delta:
                deltas[name] = delta
        if not deltas and not current:
            return  # never served anything (a management command): not a worker
        self._seq += 1
        now = time.time()
        pending = _Pending(
            Batch(self.sender, self._seq),
            int(now // 60),
            deltas,
            fields.gauges(chain),
            now,
            current,
        )
        self._pending[alias] = pending
        self._send(store, alias, pending)

    def _send(self, store: Store, alias: str, pending: _Pending) -> None:
        store.add(
            pending.minute,
            pending.deltas,
            pending.gauges,
            self.process,
            pending.now,
            pending.batch,
        )
        self._sent[alias] = pending.counters
        del self._pending[alias]

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
        self._new_sender()
        self._pending = {}  # the parent's to send
        # What the child holds now is the parent's: it is "sent" already.
        self._sent = {alias: fields.counters(chain) for alias, chain in _built_chains()}
        if was_running:
            self.start()


def _built_chains() -> Iterator[tuple[str, Chain]]:
    try:
        aliases = tiered_aliases()
    except Exception:  # settings not configured in this child
        return
    for alias in aliases:
        built = _built(alias)
        if built is not None:
            yield alias, built[1]


#: The process's flusher.
flusher = Flusher()
after_fork_in_child(flusher._after_fork)


@atexit.register
def _flush_at_exit() -> None:
    if flusher.running():
        flusher.stop()
        flusher._flush_logged()
        flusher.run_jobs()
