"""L3: diskcache on local disk, shared by the processes of one machine.

The adapter is more than a thin wrapper because of faults in docs/faults.rst:

* Safe reads (#33). diskcache unpickles every row marked as a pickle, and every
  key stored pickled, whoever wrote them. The shards use ``_SafeDisk``, a
  ``diskcache.Disk`` that writes only bytes (envelopes) and 64-bit ints and
  refuses to decode anything else, so a planted row is a rejected miss (and is
  deleted); it never reaches ``pickle``.
* Bounded, lazy open (#28, #31). ``FanoutCache()`` retries its set-up writes for
  60 s while another process holds the SQLite write lock. Nothing touches the
  disk at import or construction; the first call in a process starts the open
  in a daemon thread, and calls wait for it at most until ``OPEN_TIMEOUT`` after
  it started, then fail fast as ``TierUnavailable`` until it is done.
* Short lock waits (#28). The SQLite busy timeout is 50 ms, not 60 s. Calls go
  to the shard ``Cache`` objects rather than ``FanoutCache``'s methods, which
  turn a ``Timeout`` or an ``OperationalError`` into a silent miss or ``False``
  and would hide an outage from the backend's circuit breaker.
* Quarantine (#30). A shard whose ``cache.db`` is not a database is renamed
  aside (``<shard>.corrupt-<time>-<pid>``) and reopened empty on the next call:
  a corrupt file costs one failed call, not a crash loop.
* Fork safety (#32). A child process drops the handles it inherited (without
  closing the parent's SQLite connections) and opens its own on first use.
* The backend's clock. Envelopes carry the absolute expiry; a raw int carries
  it in diskcache's ``tag`` column. Expiry therefore follows the injected clock
  even when it runs apart from ``time.time()`` (tests); diskcache's own
  ``expire_time`` is set as well so that its culling removes dead rows.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Mapping
from typing import Any

import diskcache
from diskcache.core import DBNAME, DEFAULT_SETTINGS, MODE_BINARY, MODE_RAW, UNKNOWN
from django.core.exceptions import ImproperlyConfigured

from ..envelope import (
    Record,
    decode,
    is_raw_int,
    materialize,
    new_stamp,
)
from ..exceptions import EnvelopeError, TierUnavailable
from ..forksafe import Registry
from ..resilience import LogThrottle
from ..sentinels import MISSING
from .base import BaseTier, Scope

__all__ = ["DiskTier"]

logger = logging.getLogger(__name__)
_throttle = LogThrottle()

#: Everything the disk or SQLite can do wrong; mapped to ``TierUnavailable``
#: in one place, ``DiskTier._unavailable``.
_TRANSPORT_ERRORS = (diskcache.Timeout, sqlite3.DatabaseError, OSError)

_SQLITE_PERM, _SQLITE_READONLY, _SQLITE_CORRUPT = 3, 8, 11
_SQLITE_CANTOPEN, _SQLITE_NOTADB = 14, 26
_UNWRITABLE_ERRNOS = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR}
#: Seconds between two attempts to open a directory that failed to open.
_REOPEN_AFTER = 1.0

_ABSENT = object()
_FOREIGN_KEY = object()

#: diskcache settings that FanoutCache takes beside DEFAULT_SETTINGS.
_OUR_SETTINGS = frozenset({"shards", "timeout"})
_DEFAULT_SHARDS = 8
_DEFAULT_TIMEOUT = 0.05
_DEFAULT_SIZE_LIMIT = 2**30
_DEFAULT_CULL_LIMIT = 10


class _UntrustedRow(EnvelopeError):
    """A row this tier did not write (a pickle or text); it is never decoded."""


class _SafeDisk(diskcache.Disk):
    """diskcache's ``Disk`` that never unpickles.

    Values are stored as bytes (small ones in the row, large ones in a file)
    or as SQLite integers. Rows in any other mode were written by someone else
    and raise ``_UntrustedRow``; keys stored pickled are skipped, not loaded.
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
            # EFBIG): remove it so a full disk does not fill up further (#29).
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

    __slots__ = ("fanout", "shards", "count", "hash", "inodes")

    def __init__(self, fanout: diskcache.FanoutCache) -> None:
        self.fanout = fanout
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
                self.store = _Store(
                    diskcache.FanoutCache(directory, disk=_SafeDisk, **kwargs)
                )
            except Exception as exc:  # reported to the callers
                self.error = exc
                self.failed_at = time.monotonic()
            finally:
                self.done.set()

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


def _sqlite_code(exc: BaseException) -> int | None:
    code = getattr(exc, "sqlite_errorcode", None)  # Python >= 3.11
    return None if code is None else code & 0xFF


def _is_corruption(exc: BaseException) -> bool:
    if not isinstance(exc, sqlite3.DatabaseError):
        return False
    code = _sqlite_code(exc)
    if code is not None:
        return code in (_SQLITE_CORRUPT, _SQLITE_NOTADB)
    text = str(exc)
    return "file is not a database" in text or "malformed" in text


def _is_unwritable(exc: BaseException) -> bool:
    if isinstance(exc, OSError):
        return exc.errno in _UNWRITABLE_ERRNOS
    code = _sqlite_code(exc)
    if code is not None:
        return code in (_SQLITE_PERM, _SQLITE_READONLY, _SQLITE_CANTOPEN)
    text = str(exc)
    return "readonly database" in text or "unable to open" in text


class _Call:
    """Route one call to its shard; map its transport errors on the way out."""

    __slots__ = ("tier", "op", "store", "shard")

    def __init__(self, tier: DiskTier, op: str, key: str | None, index: int = 0):
        self.tier = tier
        self.op = op
        self.store = store = tier._store()
        self.shard = store.shards[index] if key is None else store.shard(key)

    def __enter__(self) -> diskcache.Cache:
        return self.shard

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> bool:
        if exc is not None and isinstance(exc, _TRANSPORT_ERRORS):
            raise self.tier._unavailable(self.op, exc, self.store, self.shard) from exc
        return False


class DiskTier(BaseTier):
    """The L3 tier: a ``diskcache.FanoutCache`` directory on local disk.

    The spec is a ``diskcache.DjangoCache`` CACHES entry: ``LOCATION`` is the
    directory, lower-case ``OPTIONS`` are diskcache settings, upper-case ones
    are ours. Keys are stored exactly as given: diskcache's own Django key
    making is not applied.

    diskcache settings (lower case):

    ``shards`` (default ``8``)
        Number of SQLite files the keys are spread over; writers to different
        shards do not wait for each other. A DjangoCache entry's top-level
        ``SHARDS`` is accepted too.
    ``timeout`` (default ``0.05``)
        Seconds a call waits for the SQLite write lock held by another writer
        before it fails with ``TierUnavailable``; diskcache's own default is
        60 s. A DjangoCache entry's top-level ``DATABASE_TIMEOUT`` is accepted
        too.
    ``size_limit`` (default ``2**30``, 1 GiB)
        Bytes on disk beyond which writes evict entries (``eviction_policy``),
        split evenly across the shards. diskcache evicts silently at the same
        default; it is set explicitly so that the limit is a visible choice.
    ``cull_limit`` (default ``10``)
        Most entries one write removes (expired ones first, then by policy),
        inside its transaction: it bounds how long a write holds the lock.
        ``0`` turns culling off; then the directory grows past ``size_limit``
        unless something calls diskcache's ``cull()``.
    other diskcache settings (``eviction_policy``, ``statistics``, ``sqlite_*``,
    ``disk_min_file_size``...)
        Passed to diskcache. ``statistics`` and the ``least-recently-used`` and
        ``least-frequently-used`` policies make every read a write
        transaction, so reads then wait for the lock too. Unknown lower-case
        names, and ``disk`` (the tier needs its own), raise
        ``ImproperlyConfigured``.

    Ours (upper case):

    ``COMPRESS_MIN_BYTES`` (default ``1024``)
        Payloads at least this long are compressed (kept only when smaller);
        ``None`` turns compression off.
    ``COMPRESSOR`` (default ``"zlib"``)
        ``"zlib"``, or ``"zstd"`` with the ``zstandard`` package (the ``[zstd]``
        extra).
    ``COMPRESS_LEVEL`` (default ``None``: zlib 6, zstd 3)
        Compression level passed to the compressor.
    ``OPEN_TIMEOUT`` (default ``0.5``)
        Seconds after its start that calls wait for the directory to open,
        once per process; later calls fail fast until the open (still running
        in the background) is done.
    ``MAX_VALUE_BYTES`` (default ``None``)
        As for every tier: larger values skip L3.

    Configure a directory once: every process and alias using it shares the
    same SQLite files, whose settings the last opener writes.
    """

    scope = Scope.MACHINE
    known_options = BaseTier.known_options | {"OPEN_TIMEOUT"}
    default_compress_min_bytes = 1024

    @classmethod
    def validate_options(cls, options: Mapping[str, Any], *, name: str) -> None:
        """Upper-case keys are ours; lower-case ones are diskcache settings."""
        ours = {key: v for key, v in options.items() if str(key).isupper()}
        super().validate_options(ours, name=name)
        known = _OUR_SETTINGS | set(DEFAULT_SETTINGS)
        unknown = sorted(
            str(key) for key in options if key not in ours and key not in known
        )
        if unknown:
            raise ImproperlyConfigured(
                f"tier {name!r}: unknown diskcache OPTIONS {unknown}; "
                f"known: {', '.join(sorted(known))}"
            )

    def configure(self) -> None:
        location, params, name = self.location, self.params, self.name
        if not location:
            raise ImproperlyConfigured(
                f"tier {name!r}: LOCATION must name the cache directory"
            )
        self.directory = os.path.abspath(os.path.expanduser(str(location)))
        self._kwargs = self._diskcache_kwargs(params)
        self.open_timeout: float = self.options.get("OPEN_TIMEOUT", 0.5)
        self._key = (self.directory, tuple(sorted(self._kwargs.items())))
        try:
            hash(self._key)
        except TypeError as exc:
            raise ImproperlyConfigured(
                f"tier {name!r}: diskcache settings must be plain values: {exc}"
            ) from exc
        self.quarantined = 0

    def _diskcache_kwargs(self, params: Mapping[str, Any]) -> dict[str, Any]:
        settings = {key: v for key, v in self.options.items() if not key.isupper()}
        for ours, theirs in (("shards", "SHARDS"), ("timeout", "DATABASE_TIMEOUT")):
            if theirs in params:
                if ours in settings and settings[ours] != params[theirs]:
                    raise ImproperlyConfigured(
                        f"tier {self.name!r}: {theirs} and OPTIONS[{ours!r}] differ"
                    )
                settings[ours] = params[theirs]
        settings.setdefault("shards", _DEFAULT_SHARDS)
        settings.setdefault("timeout", _DEFAULT_TIMEOUT)
        settings.setdefault("size_limit", _DEFAULT_SIZE_LIMIT)
        settings.setdefault("cull_limit", _DEFAULT_CULL_LIMIT)
        return settings

    # -- the shared handle -------------------------------------------------------

    def _store(self) -> _Store:
        handle = _handles.get(self._key)
        if handle is not None and handle.store is not None:
            return handle.store
        return self._open()

    def _open(self) -> _Store:
        def fresh(current: _Handle | None) -> _Handle:
            if current is not None and not current.retry_due():
                return current
            handle = _Handle()
            handle.start(self.directory, self._kwargs)
            return handle

        handle = _handles.replace(self._key, fresh)
        wait = handle.started + self.open_timeout - time.monotonic()
        if not handle.done.wait(max(wait, 0.0)):
            raise TierUnavailable(
                self.name,
                "open",
                f"{self.directory} not open after {self.open_timeout}s (SQLite lock "
                "held by another process?); still opening in the background",
            )
        if handle.store is not None:
            return handle.store
        exc = handle.error
        if _is_corruption(exc):

            def quarantine(current: _Handle | None) -> _Handle | None:
                if current is not handle:
                    return current
                for index in range(self._kwargs["shards"]):
                    self._quarantine_if_corrupt(index)
                return None  # the next call opens afresh

            _handles.replace(self._key, quarantine)
        elif _throttle.allow(f"open:{self.directory}"):
            logger.error(
                "tier %s: cannot open cache directory %s: %s; the tier is "
                "unavailable until it can",
                self.name,
                self.directory,
                exc,
            )
        raise TierUnavailable(self.name, "open", str(exc)) from exc

    def _quarantine_if_corrupt(self, index: int) -> None:
        """Quarantine shard ``index`` if its database does not read (at open)."""
        path = os.path.join(self.directory, f"{index:03d}")  # FanoutCache layout
        db = os.path.join(path, DBNAME)
        if not os.path.exists(db):
            return
        try:
            con = sqlite3.connect(db, timeout=0)
            try:
                con.execute("SELECT count(*) FROM sqlite_master").fetchall()
            finally:
                con.close()
        except sqlite3.DatabaseError as exc:
            if _is_corruption(exc):
                self._rename_aside(path, exc)

    def _rename_aside(self, path: str, cause: BaseException) -> None:
        stamp = time.strftime("%Y%m%dT%H%M%S")
        target = f"{path}.corrupt-{stamp}-{os.getpid()}"
        try:
            os.rename(path, target)
        except OSError as exc:
            logger.error("tier %s: cannot quarantine %s: %s", self.name, path, exc)
            return
        self.quarantined += 1
        logger.error(
            "tier %s: %s is corrupt (%s); moved to %s, a fresh shard opens on the "
            "next call",
            self.name,
            path,
            cause,
            target,
        )

    def _unavailable(
        self, op: str, exc: BaseException, store: _Store, shard: diskcache.Cache
    ) -> TierUnavailable:
        """Map a transport error to ``TierUnavailable`` (the one place)."""
        kind, alive = "io", False
        if isinstance(exc, diskcache.Timeout):
            detail = f"SQLite lock not acquired within {shard.timeout}s"
            kind = "locked"
        elif _is_corruption(exc):
            kind = "corrupt"
            index = store.shards.index(shard)

            def quarantine(current: _Handle | None) -> _Handle | None:
                if current is None or current.store is not store:
                    return current
                with contextlib.suppress(OSError):
                    if os.stat(shard.directory).st_ino == store.inodes[index]:
                        self._rename_aside(shard.directory, exc)
                return None  # the next call opens afresh

            _handles.replace(self._key, quarantine)
            detail = f"corrupt database in {shard.directory}: {exc}"
        else:
            detail = str(exc) or type(exc).__name__
            if getattr(exc, "errno", None) in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
                kind, alive = "disk_full", True  # writes fail, reads still work
            if _is_unwritable(exc) and _throttle.allow(f"unwritable:{self.directory}"):
                logger.error(
                    "tier %s: cache directory %s is not writable: %s",
                    self.name,
                    self.directory,
                    exc,
                )
        return TierUnavailable(self.name, op, detail, kind=kind, alive=alive)

    # -- rows <-> records ---------------------------------------------------------

    def _encode(self, record: Record) -> tuple[bytes | int, float | None, Any]:
        """Return (stored value, seconds to live, tag) for ``record``."""
        data = self.encode(record)
        expires_at = record.expires_at
        # A raw int (64-bit, see envelope.is_raw_int) has no envelope: its
        # absolute expiry goes in the tag column, which diskcache's incr keeps.
        tag = expires_at if type(data) is int else None
        expire = None if expires_at is None else expires_at - self.clock()
        return data, expire, tag

    def _record(self, value: Any, expire_time: float | None, tag: Any) -> Record:
        """Return the record of a stored row; raise EnvelopeError for foreign data."""
        if type(value) is bytes:
            return decode(value)
        if type(value) is int:
            if isinstance(tag, (int, float)):
                expires_at = float(tag)
            elif expire_time is None:
                expires_at = None
            else:  # an int written without our tag: map diskcache's timeline
                expires_at = expire_time - time.time() + self.clock()
            return Record(value, None, expires_at, 0)
        raise EnvelopeError(f"stored value is a {type(value).__name__}")

    def _read(self, shard: diskcache.Cache, key: str) -> Record | Any:
        """Return the live record at ``key`` or MISSING; drop unreadable rows."""
        try:
            value, expire_time, tag = shard.get(
                key, _ABSENT, expire_time=True, tag=True
            )
            if value is _ABSENT:
                return MISSING
            record = self._record(value, expire_time, tag)
        except EnvelopeError as exc:
            self._drop(shard, key, exc)
            return MISSING
        return record if record.is_live(self.clock()) else MISSING

    def _drop(self, shard: diskcache.Cache, key: str, reason: object) -> None:
        self.reject(key, reason)
        with contextlib.suppress(diskcache.Timeout):
            shard.delete(key)

    # -- the contract -------------------------------------------------------------

    def get(self, key: str) -> Record | Any:
        with _Call(self, "get", key) as shard:
            return self._read(shard, key)

    def set(self, key: str, record: Record) -> None:
        data, expire, tag = self._encode(record)
        with _Call(self, "set", key) as shard:
            if expire is not None and expire <= 0:
                shard.delete(key)
            else:
                shard.set(key, data, expire=expire, tag=tag)

    def add(self, key: str, record: Record) -> bool:
        data, expire, tag = self._encode(record)
        with _Call(self, "add", key) as shard, shard.transact():
            if self._read(shard, key) is not MISSING:
                return False
            if expire is None or expire > 0:
                shard.set(key, data, expire=expire, tag=tag)
            return True

    def delete(self, key: str) -> bool:
        with _Call(self, "delete", key) as shard:
            try:
                value, expire_time, tag = shard.pop(
                    key, _ABSENT, expire_time=True, tag=True
                )
                if value is _ABSENT:
                    return False
                record = self._record(value, expire_time, tag)
            except EnvelopeError as exc:
                self.reject(key, exc)  # pop removed the row already
                return False
            return record.is_live(self.clock())

    def touch(self, key: str, expires_at: float | None) -> bool:
        """As ``BaseTier.touch``; envelopes carry their expiry, so the entry is
        rewritten (in one transaction), not just given a new ``expire_time``.
        """
        with _Call(self, "touch", key) as shard, shard.transact():
            record = self._read(shard, key)
            if record is MISSING:
                return False
            record.expires_at = expires_at
            data, expire, tag = self._encode(record)
            if expire is not None and expire <= 0:
                shard.delete(key)
            else:
                shard.set(key, data, expire=expire, tag=tag)
            return True

    def incr(self, key: str, delta: int) -> int:
        with _Call(self, "incr", key) as shard:
            with shard.transact():
                result = self._incr(shard, key, delta)
            if result is MISSING:  # raised after the commit: a foreign row is gone
                raise ValueError(f"Key {key!r} not found.")
            return result

    def _incr(self, shard: diskcache.Cache, key: str, delta: int) -> int | Any:
        record = self._read(shard, key)
        if record is MISSING:
            return MISSING
        if record.payload is None:  # a raw int: diskcache adds in SQL
            try:
                return shard.incr(key, delta, default=None)
            except KeyError:  # expired on diskcache's own clock meanwhile
                return MISSING
            except OverflowError:  # leaves 64 bits: stored pickled from now on
                value = record.value
        else:
            try:
                value = materialize(record)
            except EnvelopeError as exc:
                self._drop(shard, key, exc)
                return MISSING
            if type(value) is not int:
                raise TypeError(
                    f"cannot incr key {key!r}: its value is a "
                    f"{type(value).__name__}, not an int"
                )
        result = value + delta
        data, expire, tag = self._encode(
            Record(result, None, record.expires_at, new_stamp())
        )
        shard.set(key, data, expire=expire, tag=tag)
        return result

    def clear(self, namespace: str) -> int:
        """As ``BaseTier.clear``; keys are compared literally (no patterns), and
        rows whose key diskcache stored pickled are skipped, never unpickled.
        """
        count = 0
        for index in range(self._kwargs["shards"]):
            with _Call(self, "clear", None, index) as shard:
                batch: list[str] = []
                for key in shard.iterkeys():
                    if type(key) is str and key.startswith(namespace):
                        batch.append(key)
                        if len(batch) >= 256:
                            count += self._delete_batch(shard, batch)
                if batch:
                    count += self._delete_batch(shard, batch)
        return count

    def _delete_batch(self, shard: diskcache.Cache, batch: list[str]) -> int:
        # One short transaction per batch: the lock is never held for long.
        with shard.transact():
            count = sum(shard.delete(key) for key in batch)
        batch.clear()
        return count

    def describe(self) -> dict[str, Any]:
        info = super().describe()
        info.update(
            directory=self.directory,
            shards=self._kwargs["shards"],
            size_limit=self._kwargs["size_limit"],
            timeout=self._kwargs["timeout"],
            compressor=self.compressor if self.compress_min_bytes is not None else None,
            quarantined=self.quarantined,
            volume=None,
        )
        handle = _handles.get(self._key)
        if handle is not None and handle.store is not None:  # never open here
            with contextlib.suppress(*_TRANSPORT_ERRORS):
                info["volume"] = handle.store.fanout.volume()
        return info
