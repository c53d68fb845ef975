"""``RedisTier``: L2 on one Redis, primary + replicas, or Sentinel.

The tier contract (``BaseTier``) spoken in redis-py commands. What is stored
under a key is decided in ``wire``, ``incr`` lives in ``counters``, the
connections come from django-redis through ``connections``, and every failure
is mapped in ``errors``. This module routes each call to a server and puts
those together; ``RedisClusterTier`` (``cluster``) overrides the routing only.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable, Mapping
from typing import Any

import redis
import redis.exceptions as rex
from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

from ...envelope import HEADER_SIZE, MAGIC, Record, decode
from ...exceptions import BadValue, EnvelopeError, UntrustedRecord
from ...resilience import LogThrottle
from ...sentinels import MISSING
from ..base import BaseTier
from ..values import option_problems
from . import counters, direct, expiry, leases, namespaces, replay, wire
from .connections import (
    DJANGO_REDIS_OPTIONS,
    INEFFECTIVE_DJANGO_REDIS_OPTIONS,
    TIMEOUT_RULES,
    check_url,
    is_sentinel,
    location_problems,
    redact_url,
    redis_options,
)
from .errors import TRANSPORT_ERRORS, is_wrongtype, transport, unavailable
from .stream import RedisStream

__all__ = ["DEFAULT_MAX_VALUE_BYTES", "KEYS_LIMIT", "RedisTier"]

KEYS_LIMIT = namespaces.KEYS_LIMIT

logger = logging.getLogger(__name__)
_throttle = LogThrottle()

#: Larger values skip L2 (and land in L3 when there is one): sending 50 MB
#: takes longer than the socket timeout, so it would fail and count against
#: the breaker. ``MAX_VALUE_BYTES: None`` lifts the cap.
DEFAULT_MAX_VALUE_BYTES = 8 * 2**20
#: ``keys`` lists at most this many keys.

_WATCH_ATTEMPTS = 3


class RedisTier(BaseTier):
    """L2 adapter for a spec whose BACKEND is ``django_redis.cache.RedisCache``.

    LOCATION is one URL, a list (or comma string) of primary + replica URLs, or
    a Sentinel service URL with ``CLIENT_CLASS="django_redis.client.SentinelClient"``
    and ``SENTINELS``. Like django-redis, reads go to a replica when there is
    one (so a read right after a write may miss while replication lags).

    OPTIONS defaults are injected when absent (``connections.redis_options``;
    the table with the reason for each is in docs/tiers.rst), so that a sick
    Redis costs one bounded wait and no retries (docs/faults.rst #3, #12):
    0.1 s socket timeouts, a blocking pool of 50 connections waited on for at
    most 0.1 s (``stack.ConnectionStack``), no retry, pools keyed by URL and
    options, and ``MAX_VALUE_BYTES`` = 8 MiB (bigger values skip L2: their
    transfer would outlast the socket timeout).

    Our own OPTIONS (``COMPRESS_MIN_BYTES``, ``COMPRESSOR``, ``COMPRESS_LEVEL``)
    are not passed on.

    Needs Redis >= 7.0 (``PEXPIRETIME`` for integers, see ``wire``).

    Deviations from ``BaseTier``: ``clear("")`` and ``keys("")`` raise
    ``ValueError`` (they would match every key of the database); ``keys``
    lists at most ``KEYS_LIMIT`` keys; ``touch`` that loses three optimistic
    races to concurrent writers returns True without touching (the newer
    writes carry their own expiry); ``incr`` that loses ten races past 64
    bits raises ``TierUnavailable`` (kind ``contention``); a stored value that
    is neither an envelope nor an integer (or not a string at all) is a
    rejected miss, ``add`` overwrites it and ``incr`` raises ``TypeError``. A
    refused ``add`` costs a second round trip to check that the entry is live
    on our clock (it may only look live to Redis).
    """

    mode = "single"
    known_options = (
        BaseTier.known_options | DJANGO_REDIS_OPTIONS | INEFFECTIVE_DJANGO_REDIS_OPTIONS
    )
    ineffective_options = INEFFECTIVE_DJANGO_REDIS_OPTIONS
    default_max_value_bytes = DEFAULT_MAX_VALUE_BYTES

    @classmethod
    def spec_problems(
        cls, location: Any, options: Mapping[str, Any], *, name: str
    ) -> list[BadValue]:
        problems = super().spec_problems(location, options, name=name)
        problems += option_problems(name, options, TIMEOUT_RULES)
        return problems + cls.location_problems(location, name=name)

    @classmethod
    def location_problems(cls, location: Any, *, name: str) -> list[BadValue]:
        """Return the bad URLs of LOCATION (``connections.location_problems``)."""
        return location_problems(name, location)

    def configure(self) -> None:
        try:
            options = redis_options(self.options)
            client_cls = import_string(
                options.get("CLIENT_CLASS", "django_redis.client.DefaultClient")
            )
        except ImportError as exc:
            raise ImproperlyConfigured(f"tier {self.name!r}: {exc}") from exc
        if not callable(getattr(client_cls, "get_client", None)):
            raise ImproperlyConfigured(
                f"tier {self.name!r}: CLIENT_CLASS {client_cls!r} has no get_client()"
            )
        # backend=None: the client is only asked for raw redis.Redis objects.
        self._client = client_cls(
            self.location, {**self.params, "OPTIONS": options}, backend=None
        )
        self._urls: list[str] = list(self._client._server)
        for url in self._urls:
            check_url(self.name, url)
        if is_sentinel(options):
            self.mode = "sentinel"
        elif len(self._urls) > 1:
            self.mode = "replicas"
        self._sentinels = options.get("SENTINELS") if self.mode == "sentinel" else None
        self.socket_timeout: float | None = options["SOCKET_TIMEOUT"]
        if self.mode == "single":
            # One server: django-redis hands out the same client for reads and
            # writes (building it opens no connection); asking for it on every
            # call costs a measurable share of an L2 hit.
            one = self._client.get_client(write=True)
            self._reader = self._writer = lambda key: one  # type: ignore[method-assign]
        self._streams: dict[str, RedisStream] = {}

    def stream(self, name: str) -> RedisStream:
        stream = self._streams.get(name)
        if stream is None:
            stream = self._streams[name] = RedisStream(self, name)
        return stream

    # -- reads --------------------------------------------------------------

    def get(self, key: str) -> Record | Any:
        """See ``BaseTier``. This is the L2-hit path, so the common case (an
        envelope, or nothing) is written out here: ``@transport``'s mapping and
        ``wire.parse``'s envelope branch cost a Python frame each, a measurable
        share of an L2 hit (``bench/latency.py --breakdown``). Everything else
        goes to the helpers below, which are the whole read."""
        client = self._reader(key)
        try:
            data = direct.call(client, "GET", key)
        except TRANSPORT_ERRORS as exc:
            return self._get_after(key, exc)
        if data is None:
            return MISSING
        if not data.startswith(MAGIC):
            return self._get_tail(key, client, data)
        try:
            record = decode(data, key, self.serializer)
        except EnvelopeError as exc:
            self.reject(key, exc)
            return MISSING
        # Our clock may run ahead of Redis' TTL.
        return record if record.is_live(self.clock()) else MISSING

    def _read(self, key: str) -> Record | Any:
        """``get`` without the transport mapping (a retry after ``_recover``)."""
        client = self._reader(key)
        try:
            data = client.get(key)
        except rex.ResponseError as exc:
            if not is_wrongtype(exc):
                raise
            self.reject(key, UntrustedRecord("not a string"))
            return MISSING
        if data is None:
            return MISSING
        return self._get_tail(key, client, data)

    def _get_after(self, key: str, exc: BaseException) -> Record | Any:
        """Finish a ``get`` whose first try raised ``exc`` (see ``transport``)."""
        if isinstance(exc, rex.ResponseError) and is_wrongtype(exc):
            self.reject(key, UntrustedRecord("not a string"))
            return MISSING
        if not self._recover(exc):
            raise unavailable(self.name, "get", exc) from exc
        try:
            return self._read(key)
        except TRANSPORT_ERRORS as again:
            self._recover(again)
            raise unavailable(self.name, "get", again) from again

    @transport("get")
    def _get_tail(self, key: str, client: redis.Redis, data: bytes) -> Record | Any:
        parsed = self._parse(key, data)
        if type(parsed) is int:
            return wire.int_record(parsed, client.pexpiretime(key), self.clock())
        return parsed

    @transport("get_many")
    def get_many(self, keys: Iterable[str]) -> dict[str, Record]:
        """See ``BaseTier``; on Cluster, a failing shard costs only its keys.

        Keys of an unreachable shard are left out (counted in
        ``stats.errors``); ``TierUnavailable`` only when no shard answered.
        """
        groups = self._slot_groups(list(keys))
        if not groups:
            return {}
        results = self._batch([(g[0], ("MGET", *g)) for g in groups], write=False)
        found: dict[str, Record] = {}
        ints: dict[str, int] = {}
        failures = []
        for group, values in zip(groups, results, strict=True):
            if isinstance(values, Exception):
                failures.append(values)
                continue
            for key, data in zip(group, values, strict=True):
                if data is None:
                    continue
                parsed = self._parse(key, data)
                if type(parsed) is int:
                    ints[key] = parsed
                elif parsed is not MISSING:
                    found[key] = parsed
        if failures:
            if len(failures) == len(groups):
                raise unavailable(self.name, "get_many", failures[0]) from failures[0]
            self._partial("get_many", failures, len(groups))
        if ints:
            names = list(ints)
            expiries = self._batch(
                [(k, ("PEXPIRETIME", k)) for k in names], write=False
            )
            now = self.clock()
            for key, ms in zip(names, expiries, strict=True):
                if not isinstance(ms, Exception):
                    record = wire.int_record(ints[key], ms, now)
                    if record is not MISSING:
                        found[key] = record
        return found

    @transport("has_key")
    def has_key(self, key: str) -> bool:
        state = wire.probe(self._reader(key), key, self.clock(), whole=True)[0]
        if state is wire.BAD:
            self.reject(key, UntrustedRecord("not an entry signed for this key"))
        return state is wire.LIVE

    @transport("keys")
    def keys(self, namespace: str) -> list[str]:
        """See ``BaseTier`` and ``namespaces.keys``: SCAN on every primary."""
        return namespaces.keys(self, namespace)

    # -- writes -------------------------------------------------------------

    @transport("set")
    def set(self, key: str, record: Record) -> None:
        client = self._writer(key)
        try:
            direct.call(client, *self._set_args(key, record))
        except rex.OutOfMemoryError:
            self._drop_refused([key])
            raise

    @transport("set_many")
    def set_many(self, records: Mapping[str, Record]) -> None:
        """See ``BaseTier``; one round trip per server (pipeline).

        On Cluster every reachable shard is written before ``TierUnavailable``
        reports the shards that were not.
        """
        commands = [(k, self._set_args(k, r)) for k, r in records.items()]
        if commands:
            results = self._batch(commands, write=True)
            refused = [
                key
                for (key, _), result in zip(commands, results, strict=True)
                if isinstance(result, rex.OutOfMemoryError)
            ]
            if refused:
                self._drop_refused(refused)
            self._raise_failures("set_many", results)

    @transport("set_many")
    def set_many_announced(
        self, records: Mapping[str, Record], stream: Any, fields: Mapping[str, str]
    ) -> bool:
        """See ``BaseTier``: one ``MULTI``/``EXEC`` at the primary (``stream``)."""
        commands = [self._set_args(key, record) for key, record in records.items()]
        try:
            return stream.append_after(commands, fields)
        except rex.OutOfMemoryError:
            self._drop_refused(list(records))
            raise

    @transport("add")
    def add(self, key: str, record: Record) -> bool:
        args = self._set_args(key, record, nx=True)
        client = self._writer(key)
        if args[0] == "DEL":  # already expired: nothing to store
            return wire.probe(client, key, self.clock())[0] is not wire.LIVE
        if client.execute_command(*args):
            return True
        # SET NX refused: the entry may still be dead on our clock (an injected
        # clock, or the <1 ms PX rounding); replace it only then, atomically.
        if wire.probe(client, key, self.clock())[0] is wire.LIVE:
            return False
        for _ in range(_WATCH_ATTEMPTS):
            with client.pipeline(transaction=True) as pipe:
                try:
                    pipe.watch(key)
                    if wire.probe(pipe, key, self.clock())[0] is wire.LIVE:
                        return False
                    pipe.multi()
                    pipe.execute_command(*args[:-1])  # without NX
                    pipe.execute()
                    return True
                except rex.WatchError:
                    continue
        return False

    @transport("delete")
    def delete(self, key: str) -> bool:
        """See ``BaseTier``: the entry is read and deleted in one ``MULTI``.

        Out of memory, Redis refuses every command queued in a ``MULTI``, ``DEL``
        included, but not a plain ``DEL``: the same three commands are then
        sent pipelined (the answer may describe a value written in between).
        """
        client = self._writer(key)
        try:
            return self._delete(client.pipeline(transaction=True), key)
        except rex.OutOfMemoryError:
            return self._delete(client.pipeline(transaction=False), key)

    def _delete(self, pipe: Any, key: str) -> bool:
        pipe.getrange(key, 0, HEADER_SIZE - 1)
        pipe.pexpiretime(key)
        pipe.delete(key)
        head, expires_ms, deleted = pipe.execute(raise_on_error=False)
        if isinstance(deleted, Exception):
            raise deleted
        if not deleted or isinstance(head, Exception):
            return False
        return wire.state(key, head, self.clock(), expires_ms) is wire.LIVE

    @transport("delete_many")
    def delete_many(self, keys: Iterable[str]) -> None:
        groups = self._slot_groups(list(keys))
        if groups:
            commands = [(g[0], ("DEL", *g)) for g in groups]
            self._raise_failures("delete_many", self._batch(commands, write=True))

    @transport("touch")
    def touch(self, key: str, expires_at: float | None) -> bool:
        """See ``BaseTier`` and ``expiry.touch``: a ``WATCH`` transaction."""
        return expiry.touch(self, key, expires_at)

    @transport("incr")
    def incr(self, key: str, delta: int) -> int:
        """See ``BaseTier`` and ``counters``; counts on past 64 bits."""
        return counters.incr(self, key, delta)[0]

    @transport("incr")
    def incr_announced(
        self, key: str, delta: int, stream: Any, fields: Mapping[str, str]
    ) -> tuple[int, bool]:
        """See ``OptionalMethods.incr_announced``: one script, one round trip."""
        return counters.incr(self, key, delta, (stream.key, stream.maxlen, fields))

    @transport("add_count")
    def add_count(
        self, key: str, delta: int, value: int, expires_at: float | None
    ) -> int | None:
        """See ``BaseTier`` and ``counters.add_count``: one Lua script."""
        return counters.add_count(self, key, delta, value, expires_at)

    @transport("replace_older")
    def replace_older(self, key: str, record: Record) -> int | None:
        """See ``BaseTier`` and ``replay``: a ``WATCH`` transaction on the key."""
        return replay.replace_older(self, key, record)

    # -- leases (stampede protection) -----------------------------------------

    holds_leases = True

    @transport("acquire_lease")
    def acquire_lease(self, key: str, seconds: float) -> str | None:
        """See ``BaseTier`` and ``leases``: ``SET NX PX`` at the key's primary."""
        return leases.acquire(self._writer(key), key, seconds)

    @transport("release_lease")
    def release_lease(self, key: str, token: str) -> None:
        """See ``BaseTier`` and ``leases``: a compare-and-delete script."""
        leases.release(self._writer(key), key, token)

    @transport("clear")
    def clear(self, namespace: str) -> int:
        """See ``BaseTier`` and ``namespaces.clear``: SCAN + UNLINK."""
        return namespaces.clear(self, namespace)

    # -- lifecycle ----------------------------------------------------------

    def describe(self) -> dict[str, Any]:
        info = super().describe()
        info["mode"] = self.mode
        info["location"] = [redact_url(url) for url in self._urls]
        if self._sentinels:
            info["sentinels"] = [list(s) for s in self._sentinels]
        return info

    # -- routing (overridden by RedisClusterTier) ---------------------------

    def _reader(self, key: str) -> redis.Redis:
        return self._client.get_client(write=False)

    def _writer(self, key: str) -> redis.Redis:
        return self._client.get_client(write=True)

    def _primaries(self) -> list[redis.Redis]:
        return [self._client.get_client(write=True)]

    def _slot_groups(self, keys: list[str]) -> list[list[str]]:
        """Split keys into groups a multi-key command may take at once."""
        return [keys] if keys else []

    def _batch(self, commands: list[tuple[str, tuple]], *, write: bool) -> list[Any]:
        """Run ``(routing key, args)`` commands; return results or exceptions.

        One server here: a transport error fails the whole batch (raised).
        """
        client = self._writer("") if write else self._reader("")
        if len(commands) == 1:
            try:
                return [client.execute_command(*commands[0][1])]
            except rex.ResponseError as exc:
                return [exc]
        pipe = client.pipeline(transaction=False)
        for _, args in commands:
            pipe.execute_command(*args)
        return pipe.execute(raise_on_error=False)

    def _unlink(self, client: redis.Redis, keys: list[bytes]) -> int:
        return client.unlink(*keys)

    def _recover(self, exc: BaseException) -> bool:
        """React to a transport error; return True if one more try may work."""
        return False

    # -- helpers ------------------------------------------------------------

    def _drop_refused(self, keys: list[str]) -> None:
        """Delete the older values of writes Redis refused for memory.

        Out of memory (``maxmemory`` with ``noeviction``) Redis refuses ``SET``,
        ``INCRBY`` and whatever a ``MULTI`` queues, but not a plain ``DEL``,
        which frees memory: the write fails, and the value it was to replace
        is not served any more by any process (docs/faults.rst #8). Best
        effort: a ``DEL`` that fails too leaves it (the caller reports the
        refusal either way).
        """
        groups = self._slot_groups(keys)
        with contextlib.suppress(*TRANSPORT_ERRORS):
            self._batch([(g[0], ("DEL", *g)) for g in groups], write=True)

    def _partial(self, op: str, failures: list[Exception], total: int) -> None:
        self.stats.error("partial")
        if _throttle.allow(f"partial:{self.name}:{op}"):
            logger.warning(
                "tier %s: %s got no answer for %d of %d slot group(s): %s",
                self.name,
                op,
                len(failures),
                total,
                failures[0],
            )

    def _raise_failures(self, op: str, results: list[Any]) -> None:
        failures = [r for r in results if isinstance(r, Exception)]
        if failures:
            raise unavailable(self.name, op, failures[0]) from failures[0]

    def _set_args(self, key: str, record: Record, *, nx: bool = False) -> tuple:
        """Return the command that stores ``record`` (``DEL`` once expired)."""
        return wire.set_args(key, record, self.encode, self.clock(), nx=nx)

    def _parse(self, key: str, data: bytes) -> Record | int | Any:
        """Return a live Record, MISSING, or a raw int (whose TTL is unknown)."""
        try:
            return wire.parse(key, data, self.clock(), self.serializer)
        except EnvelopeError as exc:
            self.reject(key, exc)
            return MISSING
