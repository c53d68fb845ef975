"""The disk tier's store: safe rows, one shared handle, a lazy and bounded open.

* Safe reads (docs/faults.rst #33). diskcache unpickles every row marked as a
  pickle, and every key stored pickled, whoever wrote them. The shards use
  ``_SafeDisk``, a ``diskcache.Disk`` that writes only bytes (envelopes) and
  64-bit ints and refuses to decode anything else, so a planted row is a
  rejected miss (and is deleted); it never reaches ``pickle``.
* One handle per configuration. Django builds a backend (and the chain may
  build a tier) per thread; the open ``FanoutCache`` is shared by every tier
  object with the same directory and settings, in ``_handles``.
* Bounded, lazy open (docs/faults.rst #28, #31). ``FanoutCache()`` retries its
  set-up writes for 60 s while another process holds the SQLite write lock.
  Nothing touches the disk at import or construction; the first call in a
  process starts the open in a daemon thread, and calls wait for it at most
  until ``OPEN_TIMEOUT`` after it started, then fail fast as
  ``TierUnavailable`` until it is done. A failed open is retried at most once
  a second.
* Calls go to the shard ``Cache`` objects, not to ``FanoutCache``'s methods,
  which turn a ``Timeout`` or an ``OperationalError`` into a silent miss or
  ``False`` and would hide an outage from the backend's circuit breaker
  (docs/faults.rst #28). ``CacheDirectory.call`` routes a call to its shard
  and maps what it raises (``errors.call_failed``).
* Marks (``copies.py``): a small ``diskcache.Cache`` of its own,
  ``<directory>/cache/tiered_cache``, with eviction off so that culling never
  forgets where the machine's copies stand. It is opened by the same
  background thread right after the shards, so it adds nothing to the wait of
  the first calls; until it is open, calls to it fail as ``not_open``.
* Fork safety (docs/faults.rst #32). A child process drops the handles it
  inherited (without closing the parent's SQLite connections) and opens its
  own on first use.
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
from diskcache.core import MODE_BINARY, MODE_RAW, UNKNOWN
from django.core.exceptions import ImproperlyConfigured

from ...envelope import is_raw_int
from ...exceptions import EnvelopeError, TierUnavailable
from ...forksafe import Registry
from .errors import (
    TRANSPORT_ERRORS,
    call_failed,
    is_corruption,
    not_open,
    open_failed,
    quarantine_if_corrupt,
    rename_aside,
)

__all__ = ["MARKS", "CacheDirectory"]

logger = logging.getLogger(__name__)

#: Name of the marks cache, under ``<directory>/cache/`` (FanoutCache.cache).
MARKS = "tiered_cache"

#: Seconds between two attempts to open a directory that failed to open.
_REOPEN_AFTER = 1.0

_FOREIGN_KEY = object()
_MARKS_INDEX = -1


class _UntrustedRow(EnvelopeError):
    """A row this tier did not write (a pickle or text); it is never decoded."""


class _SafeDisk(diskcache.Disk):
    """diskcache's ``Disk`` that never unpickles.

    Values are stored as bytes (small ones in the row, large ones in a file)
    or as SQLite integers. Rows in any other mode were written by someone else
    and raise ``_UntrustedRow``; keys stored pickled are read as a marker that
    is not a ``str``, never loaded.
    """

    def __init__(self, directory: str, **kwargs: Any) -> None:
        super().__init__(directory, **kwargs)
        self._local = threading.local()

    def store(self, value: Any, read: bool, key: Any = UNKNOWN) -> tuple:
        if not (type(value) is bytes or is_raw_int(value)):
            raise TypeError(f"DiskTier stores bytes or int64, not {type(value)}")
        self._local.path = None
        try:
            return super().store(value, read, key=key)
        except OSError:
            # diskcache leaves a partly written value file behind (ENOSPC,
            # EFBIG): remove it so a full disk does not fill up further
            # (docs/faults.rst #29).
            path = self._local.path
            if path is not None:
                with contextlib.suppress(OSError):
                    os.remove(path)
            raise

    def filename(self, key: Any = UNKNOWN, value: Any = UNKNOWN) -> tuple[str, str]:
        filename, full_path = super().filename(key, value)
        self._local.path = full_path
        return filename, full_path

    def fetch(self, mode: int, filename: str | None, value: Any, read: bool) -> Any:
        if mode in (MODE_RAW, MODE_BINARY):
            return super().fetch(mode, filename, value, read)
        raise _UntrustedRow(f"row stored in diskcache mode {mode} (not bytes/int)")

    def get(self, key: Any, raw: bool) -> Any:
        return super().get(key, raw) if raw else _FOREIGN_KEY


class _Store:
    """One opened ``FanoutCache`` of one configuration in this process."""

    __slots__ = ("fanout", "shards", "count", "hash", "inodes", "marks", "marked")

    def __init__(self, fanout: diskcache.FanoutCache) -> None:
        self.fanout = fanout
        #: The marks cache, once open; ``marked`` is set when it was tried.
        self.marks: diskcache.Cache | None = None
        self.marked = threading.Event()
        # FanoutCache's methods swallow Timeout (see the module docstring), so
        # the calls go to its shards; diskcache has no public accessor for them.
        self.shards: tuple[diskcache.Cache, ...] = fanout._shards
        self.count = len(self.shards)
        self.hash = self.shards[0].disk.hash  # what FanoutCache routes with
        # Quarantine renames a shard only if it is still the one opened here.
        self.inodes = tuple(os.stat(shard.directory).st_ino for shard in self.shards)

    def shard(self, key: str) -> diskcache.Cache:
        return self.shards[self.hash(key) % self.count]


class _Handle:
    """An open of one configuration, run in a daemon thread (bounded by callers)."""

    __slots__ = ("store", "error", "done", "started", "failed_at")

    def __init__(self) -> None:
        self.store: _Store | None = None
        self.error: BaseException | None = None
        self.done = threading.Event()
        self.started = time.monotonic()
        self.failed_at = 0.0

    def start(self, directory: str, kwargs: Mapping[str, Any]) -> None:
        def run() -> None:
            try:
                self.store = store = _Store(
                    diskcache.FanoutCache(directory, disk=_SafeDisk, **kwargs)
                )
            except Exception as exc:  # reported to the callers
                self.error = exc
                self.failed_at = time.monotonic()
                return
            finally:
                self.done.set()
            try:
                store.marks = store.fanout.cache(
                    MARKS, timeout=kwargs["timeout"], eviction_policy="none"
                )
            except Exception as exc:  # its calls keep failing as not open
                logger.error("cannot open %s/cache/%s: %s", directory, MARKS, exc)
            finally:
                store.marked.set()

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


class CacheDirectory:
    """A tier's way to the shared store of its directory and diskcache settings.

    ``settings`` are the keyword arguments of ``FanoutCache`` (``shards``
    among them); nothing is opened before the first ``open`` or ``call``.
    """

    def __init__(
        self,
        name: str,
        path: str,
        settings: Mapping[str, Any],
        *,
        open_timeout: float,
    ) -> None:
        self.name = name
        self.path = path
        self.settings = settings
        self.shard_count: int = settings["shards"]
        self.open_timeout = open_timeout
        #: The key of the shared handle in ``_handles``.
        self.key = (path, tuple(sorted(settings.items())))
        try:
            hash(self.key)
        except TypeError as exc:
            raise ImproperlyConfigured(
                f"tier {name!r}: diskcache settings must be plain values: {exc}"
            ) from exc
        #: Shards this object renamed aside (``describe``).
        self.quarantined = 0

    def call(self, op: str, key: str | None, index: int = 0) -> _Call:
        """Return a context giving the shard of ``key`` (or shard ``index``).

        Opens the store first if needed; transport errors leave the context as
        ``TierUnavailable``.
        """
        return _Call(self, op, key, index)

    def marks(self, op: str) -> _Call:
        """Return a context giving the marks cache, as ``call`` does a shard."""
        return _Call(self, op, None, _MARKS_INDEX)

    def open(self) -> _Store:
        """Return the open store, opening it on first use (bounded wait)."""
        handle = _handles.get(self.key)
        if handle is not None and handle.store is not None:
            return handle.store
        return self._open()

    def opened(self) -> _Store | None:
        """Return the open store, or ``None``; never opens it."""
        handle = _handles.get(self.key)
        return None if handle is None else handle.store

    def volume(self) -> int | None:
        """Return the bytes the store uses on disk; ``None`` when it is not open."""
        store = self.opened()
        if store is not None:
            with contextlib.suppress(*TRANSPORT_ERRORS):
                return store.fanout.volume()
        return None

    def _open(self) -> _Store:
        def fresh(current: _Handle | None) -> _Handle:
            if current is not None and not current.retry_due():
                return current
            handle = _Handle()
            handle.start(self.path, self.settings)
            return handle

        handle = _handles.replace(self.key, fresh)
        wait = handle.started + self.open_timeout - time.monotonic()
        if not handle.done.wait(max(wait, 0.0)):
            raise not_open(self.name, self.path, self.open_timeout)
        if handle.store is not None:
            return handle.store
        exc = handle.error
        if is_corruption(exc):

            def quarantine(current: _Handle | None) -> _Handle | None:
                if current is not handle:
                    return current
                # FanoutCache's layout: one directory per shard, 000, 001...
                paths = [
                    os.path.join(self.path, f"{i:03d}") for i in range(self.shard_count)
                ]
                for path in [*paths, os.path.join(self.path, "cache", MARKS)]:
                    if quarantine_if_corrupt(self.name, path):
                        self.quarantined += 1
                return None  # the next call opens afresh

            _handles.replace(self.key, quarantine)
        raise open_failed(self.name, self.path, exc) from exc

    def failed(
        self, op: str, exc: BaseException, store: _Store, shard: diskcache.Cache
    ) -> TierUnavailable:
        """Return what ``op`` raises for ``exc``; a corrupt shard is moved aside."""
        if is_corruption(exc) and shard is not store.marks:
            index = store.shards.index(shard)

            def quarantine(current: _Handle | None) -> _Handle | None:
                if current is None or current.store is not store:
                    return current
                with contextlib.suppress(OSError):
                    same = os.stat(shard.directory).st_ino == store.inodes[index]
                    if same and rename_aside(self.name, shard.directory, exc):
                        self.quarantined += 1
                return None  # the next call opens afresh

            _handles.replace(self.key, quarantine)
        return call_failed(self.name, self.path, op, exc, shard)


class _Call:
    """Route one call to its shard; map its transport errors on the way out."""

    __slots__ = ("files", "op", "store", "shard")

    def __init__(self, files: CacheDirectory, op: str, key: str | None, index: int):
        self.files = files
        self.op = op
        self.store = store = files.open()
        if key is not None:
            self.shard = store.shard(key)
        else:
            self.shard = store.marks if index == _MARKS_INDEX else store.shards[index]
        if self.shard is None:  # the marks cache opens right after the shards
            store.marked.wait(files.open_timeout)
            self.shard = store.marks
            if self.shard is None:
                raise not_open(files.name, files.path, files.open_timeout)

    def __enter__(self) -> diskcache.Cache:
        return self.shard

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> bool:
        if exc is not None and isinstance(exc, TRANSPORT_ERRORS):
            raise self.files.failed(self.op, exc, self.store, self.shard) from exc
        return False
