"""The disk tier's store: one shared handle, a lazy and bounded open, watched files.

* One handle per configuration. Django builds a backend (and the chain may
  build a tier) per thread; the open shards (and marks cache) are shared by
  every tier object with the same directory and settings, in ``_handles``.
  How they are opened, in parallel and in FanoutCache's layout, is
  ``opening.py``; the marks cache (``copies.py``) opens right after the
  shards, in the same thread.
* Lazy, bounded open, off the read path (docs/faults.rst #28, #31).
  ``Cache()`` retries its set-up writes for 60 s while another process
  holds the SQLite write lock. Nothing touches the disk at import or
  construction; the first call in a process starts the open in a daemon
  thread. Reads do not wait for it: until it is done they are misses. Writes
  wait at most until ``OPEN_TIMEOUT`` after it started (a write that skipped
  L3 would leave an older value there), then fail fast as
  ``TierUnavailable`` until it is done. A failed open is retried at most once
  a second.
* Corruption (docs/faults.rst #30). An open that fails as corrupt runs
  ``PRAGMA quick_check`` on every shard in the opening thread, moves the
  damaged ones aside and opens again; a call that meets a corrupt page moves
  its shard (or the marks cache) aside and the next call opens afresh.
* Watched files (docs/faults.rst #30, #31). Every ``CHECK_INTERVAL`` seconds
  a call compares each shard's ``cache.db`` as opened (a descriptor the store
  keeps), and the marks cache's, with the file now at its path. A directory
  deleted, replaced or quarantined by another process is noticed and opened
  again, so processes do not split between an unlinked copy and a new
  folder, and the unlinked files' space is released once no call uses them.
* One writer per shard and process. Writes to a shard queue on a lock of
  this process before they reach SQLite, whose busy handler polls with sleeps
  and, with 50 threads, let the 50 ms lock wait expire with no fault at all.
  SQLite's wait (``timeout``) is then spent only on other processes. A write
  that waits longer than ``max(_QUEUE_WAIT, timeout)`` in the queue is
  back-pressure, not a fault: ``TierUnavailable`` marked ``busy``, counted in
  ``busy`` and unseen by the breaker.
* Calls go to the shard ``Cache`` objects, never through ``FanoutCache``'s
  methods, which turn a ``Timeout`` or an ``OperationalError`` into a silent
  miss or ``False`` and would hide an outage from the breaker
  (docs/faults.rst #28).
* Fork safety (docs/faults.rst #32). A child process drops the handles it
  inherited (without closing the parent's SQLite connections) and opens its
  own on first use. ``fork()`` first waits (boundedly) for a running open of
  this process (the marks cache's included), so the child does not inherit
  SQLite mid-call from it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Mapping
from typing import Any

import diskcache
from django.core.exceptions import ImproperlyConfigured

from ...exceptions import TierUnavailable
from ...forksafe import Registry
from ...resilience import LogThrottle
from .errors import (
    TRANSPORT_ERRORS,
    call_failed,
    is_corruption,
    not_open,
    open_failed,
    queue_full,
    rename_aside,
)
from .opening import MARKS, Store, open_marks, open_store

__all__ = ["MARKS", "CacheDirectory"]

logger = logging.getLogger(__name__)
_throttle = LogThrottle()

#: Seconds between two attempts to open a directory that failed to open.
_REOPEN_AFTER = 1.0
#: Most seconds a write waits behind the other writers of its shard in this
#: process (then ``busy``). With the SQLite wait, a write is bounded by
#: ``_QUEUE_WAIT + timeout`` (0.15 s by default; docs/faults.rst I4).
_QUEUE_WAIT = 0.1
#: Calls that never wait for the open, and take no shard write lock.
_READS = frozenset({"get", "get_many", "has_key"})
#: Calls that wait for the open and take no shard write lock.
_LISTINGS = frozenset({"keys"})
#: The ``index`` of ``CacheDirectory.marks``'s calls.
_MARKS_INDEX = -1


class _Handle:
    """An open of one configuration, run in a daemon thread (bounded by callers)."""

    __slots__ = ("store", "error", "done", "started", "failed_at")

    def __init__(self) -> None:
        self.store: Store | None = None
        self.error: BaseException | None = None
        self.done = threading.Event()
        self.started = time.monotonic()
        self.failed_at = 0.0

    def start(self, directory: CacheDirectory) -> None:
        def run() -> None:
            try:
                self.store = store = open_store(directory)
            except Exception as exc:  # reported to the callers
                self.error = exc
                self.failed_at = time.monotonic()
                return
            finally:
                self.done.set()
            open_marks(directory, store)  # after: calls to the shards go ahead

        threading.Thread(target=run, name="tiered_cache-l3-open", daemon=True).start()

    def retry_due(self) -> bool:
        return (
            self.error is not None
            and time.monotonic() - self.failed_at >= _REOPEN_AFTER
        )


#: (directory, normalized diskcache kwargs) -> the handle shared by every tier
#: instance with that configuration in this process. A forked child starts
#: afresh: the parent's SQLite connections are never closed (or used) in it.
_handles: Registry[_Handle] = Registry(forget_in_child=True)

#: Most seconds ``fork()`` waits for this process's running opens.
_FORK_WAIT = 2.0


def _before_fork() -> None:
    """Let a running open finish before ``fork()`` copies SQLite's state.

    The child would inherit SQLite's process-wide mutexes and table of open
    files as the opening threads left them mid-call (docs/faults.rst #32).
    Bounded: an open stuck behind another process's lock does not hold the
    fork for more than ``_FORK_WAIT``.
    """
    deadline = time.monotonic() + _FORK_WAIT
    for _, handle in _handles.items():
        handle.done.wait(max(0.0, deadline - time.monotonic()))
        store = handle.store  # then its marks cache opens
        if store is not None:
            store.marked.wait(max(0.0, deadline - time.monotonic()))


if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_before_fork)


class CacheDirectory:
    """A tier's way to the shared store of its directory and diskcache settings.

    ``settings`` are the keyword arguments of ``FanoutCache`` (``shards``,
    ``timeout``, ``size_limit`` among them); nothing is opened before the
    first ``open`` or ``call``.
    """

    def __init__(
        self,
        name: str,
        path: str,
        settings: Mapping[str, Any],
        *,
        open_timeout: float,
        check_interval: float = 1.0,
        read_limit: int | None = None,
    ) -> None:
        self.name = name
        self.path = path
        self.settings = settings
        self.shard_count: int = settings["shards"]
        self.open_timeout = open_timeout
        self.check_interval = check_interval
        #: Most seconds a write waits for its turn among this process's writers.
        self.queue_wait = max(_QUEUE_WAIT, float(settings.get("timeout", 0)))
        #: Largest value file read (``SafeDisk.max_file_bytes``).
        self.read_limit = read_limit
        #: The key of the shared handle in ``_handles``.
        self.key = (path, tuple(sorted(settings.items())), read_limit)
        try:
            hash(self.key)
        except TypeError as exc:
            raise ImproperlyConfigured(
                f"tier {name!r}: diskcache settings must be plain values: {exc}"
            ) from exc
        #: Shards this object renamed aside (``describe``).
        self.quarantined = 0
        #: Times the directory was found replaced and opened again.
        self.reopened = 0

    def call(self, op: str, key: str | None, index: int = 0) -> _Call:
        """Return a context giving the shard of ``key`` (or shard ``index``).

        Opens the store first if needed; transport errors leave the context as
        ``TierUnavailable``. For a read (``_READS``) the context gives ``None``
        while the store is still opening.
        """
        return _Call(self, op, key, index)

    def marks(self, op: str) -> _Call:
        """Return a context giving the marks cache, as ``call`` does a shard.

        It never gives ``None``: while the marks cache is not open, a read
        (``_READS``) raises ``not_open`` at once, other calls after waiting
        up to ``OPEN_TIMEOUT`` for it.
        """
        return _Call(self, op, None, _MARKS_INDEX)

    def open(self, *, wait: bool = True) -> Store | None:
        """Return the open store, opening it on first use (bounded wait).

        Without ``wait``, return ``None`` at once while the open runs.
        """
        handle = _handles.get(self.key)
        if handle is not None:
            store = handle.store
            if store is not None:
                if time.monotonic() < store.check_due:
                    return store
                return self._checked(handle, store, wait)
        return self._open(wait)

    def opened(self) -> Store | None:
        """Return the open store, or ``None``; never opens it."""
        handle = _handles.get(self.key)
        return None if handle is None else handle.store

    def volume(self) -> int | None:
        """Return the bytes the store uses on disk; ``None`` when it is not open."""
        store = self.opened()
        if store is not None:
            with contextlib.suppress(*TRANSPORT_ERRORS):
                return store.volume()
        return None

    def _checked(self, handle: _Handle, store: Store, wait: bool) -> Store | None:
        """Return ``store`` if its files are still in place, else open again."""
        store.check_due = time.monotonic() + self.check_interval
        how = store.replaced()
        if how is None:
            return store

        def forget(current: _Handle | None) -> _Handle | None:
            return None if current is handle else current

        _handles.replace(self.key, forget)
        self.reopened += 1
        if _throttle.allow(f"replaced:{self.path}"):
            logger.error(
                "tier %s: %s under this process; opening %s again",
                self.name,
                how,
                self.path,
            )
        return self._open(wait)

    def _open(self, wait: bool) -> Store | None:
        def fresh(current: _Handle | None) -> _Handle:
            if current is not None and not current.retry_due():
                return current
            handle = _Handle()
            handle.start(self)
            return handle

        handle = _handles.replace(self.key, fresh)
        assert handle is not None
        if not wait and not handle.done.is_set():
            return None
        remaining = handle.started + self.open_timeout - time.monotonic()
        if not handle.done.wait(max(remaining, 0.0)):
            raise not_open(self.name, self.path, self.open_timeout)
        if handle.store is not None:
            return handle.store
        exc = handle.error
        assert exc is not None
        raise open_failed(self.name, self.path, exc) from exc

    def failed(
        self, op: str, exc: BaseException, store: Store, shard: diskcache.Cache
    ) -> TierUnavailable:
        """Return what ``op`` raises for ``exc``; a corrupt shard is moved aside
        (the marks cache too: its floor is written again by the processes that
        hold it, ``copies.py``).
        """
        if is_corruption(exc):
            inode = store.inode(shard)

            def quarantine(current: _Handle | None) -> _Handle | None:
                if current is None or current.store is not store:
                    return current
                with contextlib.suppress(OSError):
                    same = os.stat(shard.directory).st_ino == inode
                    if same and rename_aside(self.name, shard.directory, exc):
                        self.quarantined += 1
                return None  # the next call opens afresh

            _handles.replace(self.key, quarantine)
        return call_failed(self.name, self.path, op, exc, shard)


class _Call:
    """Route one call to its shard; map its transport errors on the way out.

    A write holds its shard's write lock of this process for the call.
    """

    __slots__ = ("files", "op", "store", "shard", "writer")

    def __init__(self, files: CacheDirectory, op: str, key: str | None, index: int):
        self.files = files
        self.op = op
        read = op in _READS
        self.store = store = files.open(wait=not read)
        self.writer: threading.Lock | None = None
        if index == _MARKS_INDEX:
            self.shard = self._marks(store, read)
            assert store is not None
            if not read:
                self.writer = store.marks_writer
            return
        if store is None:
            self.shard = None
            return
        index = index if key is None else store.hash(key) % store.count
        self.shard = store.shards[index]
        if not read and op not in _LISTINGS:
            self.writer = store.writers[index]

    def _marks(self, store: Store | None, read: bool) -> diskcache.Cache:
        """Return the marks cache; it opens right after the shards."""
        files = self.files
        if store is not None and not read:
            store.marked.wait(files.open_timeout)
        marks = None if store is None else store.marks
        if marks is None:
            raise not_open(files.name, files.path, files.open_timeout)
        return marks

    def __enter__(self) -> diskcache.Cache | None:
        writer = self.writer
        wait = self.files.queue_wait
        if writer is not None and not writer.acquire(timeout=wait):
            self.writer = None
            raise queue_full(self.files.name, self.op, wait)
        return self.shard

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> bool:
        if self.writer is not None:
            self.writer.release()
        if exc is not None and isinstance(exc, TRANSPORT_ERRORS):
            assert self.store is not None and self.shard is not None
            raise self.files.failed(self.op, exc, self.store, self.shard) from exc
        return False
