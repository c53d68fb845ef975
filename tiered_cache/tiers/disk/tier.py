"""``DiskTier``: the tier contract over the shards of a diskcache directory.

What is stored: an envelope (``bytes``, see ``tiered_cache.envelope``) or, for
an int that fits in 64 bits, the raw int, to which diskcache's ``incr`` adds
inside its write transaction. Keys are stored exactly as given, so the
directory can be listed (``keys``) and cleared by namespace (``clear``)
without unpickling anything.

The backend's clock. Envelopes carry the absolute expiry; a raw int carries it
in diskcache's ``tag`` column. Expiry therefore follows the injected clock even
when it runs apart from ``time.time()`` (tests); diskcache's own
``expire_time`` is set as well so that its culling removes dead rows.

Copies. Below an L2, the rows that copy L2's values carry the time they were
copied and are trusted only so long, and only after the machine's floor
(``copies.py``); invalidating them all raises the floor, persisted for the
other processes of the machine and the ones that start later.

Short lock waits (docs/faults.rst #28): the SQLite busy timeout defaults to
50 ms, not diskcache's 60 s, and ``add``, ``touch`` and ``incr`` each run in one
shard transaction; ``set_many``, ``delete_many`` and ``clear`` one per shard
and batch of keys (``batches.py``). Where the calls go and what their failures
become is ``store.py`` and ``errors.py``; what a stored row may look like is
``rows.py``; which OPTIONS are diskcache's, ``options.py``.
"""

from __future__ import annotations

import contextlib
import copy
import math
import os
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import diskcache

from ...envelope import MISSING_VALUE, Record, decode, materialize, new_stamp
from ...exceptions import BadValue, EnvelopeError, TierUnavailable, UntrustedRecord
from ...sentinels import MISSING
from ..base import BaseTier, Count, Scope
from . import batches
from . import options as disk_options
from .behind import Pending, WriteBehind
from .copies import CopyTrust
from .store import CacheDirectory

__all__ = ["DiskTier"]

_ABSENT = object()
#: Journals (``read_journal``) live under keys no cache namespace starts with.
_JOURNAL = "#tiered_cache-journal:"

#: Bytes an envelope may add to a payload of MAX_VALUE_BYTES (its header).
_ENVELOPE_SLACK = 4096


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
    ``sqlite_cache_size`` (default ``1024`` pages), ``sqlite_mmap_size``
    (default 2 MiB)
        Per shard and per process (diskcache's defaults, 8192 pages and
        64 MiB, let L3 add ~600 MB of RSS to a process at 1M entries).
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
        Seconds after its start that writes wait for the directory to open,
        once per process; later calls fail fast until the open (still running
        in the background) is done. Reads never wait: they miss meanwhile.
    ``CHECK_INTERVAL`` (default ``1.0``)
        Seconds between two checks that the shard files opened are still the
        ones at the directory's path (deleted, replaced or quarantined by
        another process); then the directory is opened again. ``0`` checks
        on every call.
    ``WRITE_BEHIND_MAX_BYTES`` (default ``0``: off)
        Below an L2, the copies of L2's values are written by a background
        thread after the call returns (``behind.py``); this bounds the bytes
        waiting (e.g. ``32 * 2**20``). A write that finds the queue full is
        made by the caller. Off by default: a copy queued by one process can
        land after another process of the machine deleted or replaced the
        value, and is served if L2 stops answering in those milliseconds,
        until the bus's first heartbeat of the outage drops it (~1 s). Values
        L3 holds as their own authority (no L2, or too big for it) are always
        written before the call returns.
    ``MAX_VALUE_BYTES`` (default ``16 MiB``)
        As for every tier: larger values skip L3. Three 50 MB values cost
        5 s and 300 MB of memory on their way in; ``None`` lifts the limit.
        A value file found larger (written by someone else) is a rejected
        miss, checked before it is read.

    Configure a directory once: every process and alias using it shares the
    same SQLite files, whose settings the last opener writes.
    """

    scope = Scope.MACHINE
    known_options = BaseTier.known_options | {
        "OPEN_TIMEOUT",
        "CHECK_INTERVAL",
        "WRITE_BEHIND_MAX_BYTES",
    }
    default_compress_min_bytes = 1024
    default_max_value_bytes = 16 * 2**20

    @classmethod
    def validate_options(cls, options: Mapping[str, Any], *, name: str) -> None:
        """Upper-case keys are ours; lower-case ones are diskcache settings."""
        super().validate_options(disk_options.split(options, name=name), name=name)

    @classmethod
    def spec_problems(
        cls, location: Any, options: Mapping[str, Any], *, name: str
    ) -> list[BadValue]:
        problems = super().spec_problems(location, options, name=name)
        return problems + disk_options.problems(name, location, options)

    def configure(self) -> None:
        location, params, name = self.location, self.params, self.name
        self.directory = os.path.abspath(os.path.expanduser(str(location)))
        self._kwargs = disk_options.diskcache_settings(self.options, params, name=name)
        self.open_timeout: float = self.options.get("OPEN_TIMEOUT", 0.5)
        #: The shared store of this directory and these settings.
        self.files = CacheDirectory(
            name,
            self.directory,
            self._kwargs,
            open_timeout=self.open_timeout,
            check_interval=self.options.get("CHECK_INTERVAL", 1.0),
            read_limit=None
            if self.max_value_bytes is None
            else self.max_value_bytes + _ENVELOPE_SLACK,
        )
        #: Which copies this process serves (``copies.py``).
        self.trust = CopyTrust(self.files, self.clock)
        #: Copies waiting to be written by a background thread (``behind.py``).
        self.behind = WriteBehind(
            name,
            self._write_copies,
            self._forget,
            max_bytes=self.options.get("WRITE_BEHIND_MAX_BYTES", 0),
            clock=self.clock,
        )

    # -- rows <-> records ---------------------------------------------------------

    def _encode(
        self,
        key: str,
        record: Record,
        copied_at: float | None = None,
        *,
        queued: bool = False,
    ) -> tuple[bytes | int, float | None, Any]:
        """Return (stored value, seconds to live, tag) for ``record`` at ``key``.

        A copy (``copies.py``) is an envelope tagged with when it was copied
        (now, or ``copied_at`` when it is rewritten), kept by diskcache only as
        long as it is trusted; the copy of a counter for its own lifetime: it
        is served only while trusted all the same, but ``incr`` counts on from
        it while L2 does not answer. A ``queued`` copy (``behind.py``) is
        encoded as at ``copied_at``, when it was queued: the bound in force
        later (shorter while the bus cannot read) must not drop it on its way.
        """
        data = self.encode(key, record)
        expires_at = record.expires_at
        now = copied_at if queued and copied_at is not None else self.clock()
        expire = None if expires_at is None else expires_at - now
        if self.copy_of is not None and self.copy_of(record):
            counter = type(data) is int
            if counter:
                serializer = self.serializer
                payload = serializer.dumps(record.value)
                data = self.encode(
                    key,
                    Record(record.value, payload, expires_at, record.stamp, serializer),
                )
            tag = float(now if copied_at is None else copied_at)
            if self.max_staleness is not None and not counter:
                left = tag + self.max_staleness - now
                expire = left if expire is None else min(expire, left)
            return data, expire, tag
        # A raw int (64-bit, see envelope.is_raw_int) has no envelope: its
        # absolute expiry goes in the tag column, which diskcache's incr keeps.
        tag = expires_at if type(data) is int else None
        return data, expire, tag

    def _record(
        self, key: str, value: Any, expire_time: float | None, tag: Any
    ) -> Record:
        """Return the record of a stored row; raise UntrustedRecord for foreign
        data or a record not signed for ``key``."""
        if type(value) is bytes:
            return decode(value, key, self.serializer)
        if type(value) is int:
            if type(tag) in (int, float):
                expires_at = float(tag)
            elif expire_time is None:
                expires_at = None
            elif type(expire_time) in (int, float):
                # an int written without our tag: map diskcache's timeline
                expires_at = expire_time - time.time() + self.clock()
            else:
                raise UntrustedRecord(f"expire_time is a {type(expire_time).__name__}")
            return Record(value, None, expires_at, 0)
        raise UntrustedRecord(f"stored value is a {type(value).__name__}")

    def _row(self, shard: diskcache.Cache, key: str, *, take: bool) -> tuple[Any, Any]:
        """Return ``(record, tag)`` at ``key``, live or not; MISSING if absent.

        ``take`` removes the row as it reads it (``pop``). An unreadable row is
        rejected, and removed (a miss).
        """
        fetch = shard.pop if take else shard.get
        try:
            value, expire_time, tag = fetch(key, _ABSENT, expire_time=True, tag=True)
            if value is _ABSENT:
                return MISSING, None
            return self._record(key, value, expire_time, tag), tag
        except EnvelopeError as exc:
            if take:
                self.reject(key, exc)  # pop removed the row already
            else:
                self._drop(shard, key, exc)
            return MISSING, None

    def _judge(
        self,
        record: Any,
        tag: Any,
        *,
        served: bool = False,
        copied: float | None = None,
    ) -> Any:
        """Return ``record`` if it may be served now, else MISSING.

        A copy is also judged by ``copies.py``, by when it was ``copied``
        (else the row's tag says); ``served`` gives it the lifetime it is
        trusted for (the caller hands it to faster tiers).
        """
        if record is MISSING:
            return MISSING
        now = self.clock()
        if not record.is_live(now):
            return MISSING
        if self.copy_of is None or not self.copy_of(record):
            return record
        if copied is None and type(tag) is float and record.payload is not None:
            copied = tag
        until = self.trust.until(copied, self.max_staleness)
        if until is None or until <= now:
            return MISSING
        expires_at = math.inf if record.expires_at is None else record.expires_at
        if served and until < expires_at:
            record.expires_at = until
        return record

    def _read(self, shard: diskcache.Cache, key: str) -> tuple[Any, Any]:
        """Return ``(record, tag)`` if it may be served, else ``(MISSING, None)``."""
        record, tag = self._row(shard, key, take=False)
        record = self._judge(record, tag)
        return record, (None if record is MISSING else tag)

    def _drop(self, shard: diskcache.Cache, key: str, reason: object) -> None:
        self.reject(key, reason)
        with contextlib.suppress(diskcache.Timeout):
            shard.delete(key)

    # -- the contract -------------------------------------------------------------

    def get(self, key: str) -> Record | Any:
        pending = self.behind.peek(key)
        if pending is not None:  # newer than any row: this process queued it
            return self._pending_record(pending, served=True)
        with self.files.call("get", key) as shard:
            if shard is None:  # still opening: reads do not wait (store.py)
                return MISSING
            record, tag = self._row(shard, key, take=False)
            return self._judge(record, tag, served=True)

    def set(self, key: str, record: Record) -> None:
        """As ``BaseTier.set``; a copy of L2's value is queued (``behind.py``).

        A write the full disk refused also removes the value it would have
        replaced, so that value is not served again.
        """
        if self._queue_copy(key, record):
            return
        data, expire, tag = self._encode(key, record)
        try:
            with self.files.call("set", key) as shard:
                if expire is not None and expire <= 0:
                    shard.delete(key)
                else:
                    shard.set(key, data, expire=expire, tag=tag)
        except TierUnavailable as exc:
            if exc.kind == "disk_full":
                # Best effort: on a disk still full the delete may fail too.
                with (
                    contextlib.suppress(TierUnavailable),
                    self.files.call("delete", key) as shard,
                ):
                    shard.delete(key)
            raise

    def set_many(self, records: Mapping[str, Record]) -> None:
        """As ``BaseTier.set_many``, in one transaction per shard and batch;
        copies of L2's values are queued."""
        rows = {
            key: self._encode(key, record)
            for key, record in records.items()
            if not self._queue_copy(key, record)
        }
        if rows:
            batches.set_many(self.files, rows)

    def _queue_copy(self, key: str, record: Record) -> bool:
        """Queue ``record`` if it is a copy and the queue takes it; else make
        sure no queued copy of ``key`` lands after the caller's own write."""
        behind = self.behind
        if (
            behind.max_bytes
            and self.copy_of is not None
            and self.copy_of(record)
            and behind.put(key, record)
        ):
            return True
        behind.take(key)
        return False

    def _write_copies(self, batch: Mapping[str, Pending]) -> None:
        """Write queued copies (the write-behind thread), stamped with when
        they were queued: that is when the copy was made. Kept counts are
        merged with the row, each in its own transaction."""
        rows = {
            key: self._encode(key, record, queued_at, queued=True)
            for key, (record, queued_at, rising) in batch.items()
            if rising is None
        }
        if rows:
            batches.set_many(self.files, rows)
        for key, (record, _, rising) in batch.items():
            if rising is not None:
                self._keep_now(key, record, rising)

    def _forget(self, keys: Iterable[str]) -> None:
        batches.delete_many(self.files, keys)

    def _settle(self, key: str) -> None:
        """Write ``key``'s queued copy now: the caller reads and changes the row."""
        pending = self.behind.take(key)
        if pending is not None:
            record, queued_at, rising = pending
            if rising is not None:
                self._keep_now(key, record, rising)
                return
            data, expire, tag = self._encode(key, record, queued_at, queued=True)
            with self.files.call("set", key) as shard:
                shard.set(key, data, expire=expire, tag=tag)

    def settle(self, keys: list[str]) -> None:
        """See ``OptionalMethods.settle``."""
        for key in keys:
            self._settle(key)

    def drain(self, timeout: float | None = None) -> bool:
        """Wait until the copies queued by this process are on disk; return
        whether they are (another process of the machine reads them then)."""
        return self.behind.drain(timeout)

    def delete_many(self, keys: Iterable[str]) -> None:
        """As ``BaseTier.delete_many``, in one transaction per shard and batch."""
        keys = list(keys)
        for key in keys:
            self.behind.take(key)
        batches.delete_many(self.files, keys)

    def add(self, key: str, record: Record) -> bool:
        self._settle(key)
        data, expire, tag = self._encode(key, record)
        with self.files.call("add", key) as shard, shard.transact():
            if self._read(shard, key)[0] is not MISSING:
                return False
            if expire is None or expire > 0:
                shard.set(key, data, expire=expire, tag=tag)
            return True

    def delete(self, key: str) -> bool:
        pending = self.behind.take(key)
        with self.files.call("delete", key) as shard:
            record, tag = self._row(shard, key, take=True)
        return (
            pending is not None and self._pending_record(pending) is not MISSING
        ) or self._judge(record, tag) is not MISSING

    def _pending_record(self, pending: Pending, *, served: bool = False) -> Any:
        """Return a queued copy as a read would find it once written (or MISSING).

        From its payload, not the caller's object: the value read must be the
        serializer's round trip (a tuple comes back a list from JSON), and a
        caller mutating what it set must not change what is read.
        """
        record, queued_at, _ = pending
        payload = record.payload
        if payload is None:  # a raw int: immutable
            record = copy.copy(record)
        else:
            expires, stamp, writer = record.expires_at, record.stamp, record.serializer
            record = Record(MISSING_VALUE, payload, expires, stamp, writer)
        return self._judge(record, None, served=served, copied=queued_at)

    def invalidate(self, key: str, stamp: int) -> bool:
        """As ``BaseTier.invalidate``, without the memory of recent stamps: a
        promotion racing the message can still install an older copy here.
        """
        dropped = self.behind.take(key, older_than=stamp) is not None
        with self.files.call("invalidate", key) as shard, shard.transact():
            record = self._row(shard, key, take=False)[0]
            if record is MISSING or record.stamp >= stamp:
                return bool(dropped)
            shard.delete(key)
            return True

    def bound_staleness(self, seconds: float | None) -> bool:
        self.max_staleness = seconds
        return True

    def invalidate_all(self, before: float | None = None) -> None:
        """Stop trusting every copy made before ``before`` (a floor; ``copies.py``)."""
        self.behind.cancel_where(
            # kept counts stay: an outage counts on from them (docs/design.rst)
            lambda _key, pending: (
                pending[2] is None and (before is None or pending[1] < before)
            )
        )
        self.trust.drop_all(before)

    def trust_copies(self, trusted: bool) -> None:
        self.trust.trusted = trusted

    def load_position(self, stream: str) -> tuple[str, str] | None:
        return self.trust.load_position(stream)

    def save_position(self, stream: str, generation: str, last_id: str) -> None:
        self.trust.save_position(stream, generation, last_id)

    def touch(self, key: str, expires_at: float | None) -> bool:
        """As ``BaseTier.touch``; envelopes carry their expiry, so the entry is
        rewritten (in one transaction), not just given a new ``expire_time``.
        """
        self._settle(key)
        with self.files.call("touch", key) as shard, shard.transact():
            record, copied_at = self._read(shard, key)
            if record is MISSING:
                return False
            record.expires_at = expires_at
            # A copy keeps the time it was copied: a touch vouches for nothing.
            copied = copied_at if type(copied_at) is float else None
            data, expire, tag = self._encode(key, record, copied)
            if expire is not None and expire <= 0:
                shard.delete(key)
            else:
                shard.set(key, data, expire=expire, tag=tag)
            return True

    def incr(self, key: str, delta: int) -> int:
        """As ``BaseTier.incr``; counts from the row whether or not it is a
        trusted copy: the chain calls it only when L2 did not answer, and then
        the last count this machine knew is the best base there is
        (docs/design.rst, "Counters")."""
        self._settle(key)
        with self.files.call("incr", key) as shard:
            with shard.transact():
                result = self._incr(shard, key, delta)
            if result is MISSING:  # raised after the commit: a foreign row is gone
                raise ValueError(f"Key {key!r} not found.")
            return result

    def _incr(self, shard: diskcache.Cache, key: str, delta: int) -> int | Any:
        record = self._row(shard, key, take=False)[0]
        if record is MISSING or not record.is_live(self.clock()):
            return MISSING
        if record.payload is None:  # a raw int: diskcache adds in its transaction
            try:
                return Count(shard.incr(key, delta, default=None), record.expires_at)
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
        stored = Record(value + delta, None, record.expires_at, new_stamp())
        data, expire, tag = self._encode(key, stored)
        shard.set(key, data, expire=expire, tag=tag)
        return Count(stored.value, stored.expires_at, stored.stamp)

    def keep_count(self, key: str, record: Record, rising: bool) -> None:
        """See ``BaseTier.keep_count``: queued like a copy (``behind.py``),
        then one shard transaction."""
        if self.behind.max_bytes and self.behind.put(key, record, rising):
            return
        self._settle(key)
        self._keep_now(key, record, rising)

    def _keep_now(self, key: str, record: Record, rising: bool) -> None:
        with self.files.call("keep_count", key) as shard, shard.transact():
            kept = self._row(shard, key, take=False)[0]
            if kept is not MISSING and kept.is_live(self.clock()):
                value = _count(kept)
                if value is not None and (value > record.value) is rising:
                    stamp = max(kept.stamp, record.stamp)
                    record = Record(value, None, record.expires_at, stamp)
                elif kept.stamp > record.stamp:
                    record = Record(record.value, None, record.expires_at, kept.stamp)
            data, expire, tag = self._encode(key, record)
            shard.set(key, data, expire=expire, tag=tag)

    def clear(self, namespace: str) -> int:
        """As ``BaseTier.clear``; keys are compared literally (no patterns), and
        rows whose key diskcache stored pickled are skipped, never unpickled.
        """
        self.behind.cancel_where(lambda key, _pending: key.startswith(namespace))
        return batches.clear(self.files, namespace)

    def keys(self, namespace: str) -> list[str]:
        """As ``BaseTier.keys``, shard by shard; keys diskcache stored pickled are
        skipped, never unpickled, and no value is read.
        """
        self.behind.drain()
        return batches.keys(self.files, namespace)

    def read_journal(self, name: str) -> bytes | None:
        """See ``BaseTier``: one row under a key outside every namespace."""
        key = _JOURNAL + name
        with self.files.call("journal", key) as shard:
            data = _journal_row(shard, key)
        return data if type(data) is bytes else None

    def update_journal(
        self, name: str, change: Callable[[bytes | None], bytes | None]
    ) -> None:
        """See ``BaseTier``: read and write the row in one shard transaction."""
        key = _JOURNAL + name
        with self.files.call("journal", key) as shard, shard.transact():
            data = _journal_row(shard, key)
            new = change(data if type(data) is bytes else None)
            if new is None:
                shard.delete(key)
            elif new != data:
                shard.set(key, new)

    def describe(self) -> dict[str, Any]:
        info = super().describe()
        info.update(
            directory=self.directory,
            shards=self._kwargs["shards"],
            size_limit=self._kwargs["size_limit"],
            timeout=self._kwargs["timeout"],
            compressor=self.compressor if self.compress_min_bytes is not None else None,
            quarantined=self.files.quarantined,
            reopened=self.files.reopened,
            volume=self.files.volume(),  # never opens the store
            write_behind=self.behind.stats.snapshot(self.behind.pending_count()),
        )
        if self.copy_of is not None:  # below an L2: its copies' trust (copies.py)
            info["copies"] = {"trusted": self.trust.trusted, "floor": self.trust.floor}
        return info


def _count(record: Record) -> int | None:
    """Return the integer ``record`` holds, or None (not an int, unreadable)."""
    try:
        value = materialize(record)
    except EnvelopeError:
        return None
    return value if type(value) is int else None


def _journal_row(shard: diskcache.Cache, key: str) -> Any:
    """Return the journal row's value; a row ``SafeDisk`` refuses is none."""
    try:
        return shard.get(key)
    except EnvelopeError:  # a pickle, a foreign file name, an oversized file
        return None
