"""L2: Redis, single node, primary + replicas, Sentinel or Cluster.

django-redis parses LOCATION, picks the primary or a replica and builds the
(Sentinel) pools; we take only the raw ``redis.Redis`` objects its client hands
out and issue redis-py commands ourselves. What we store is the envelope from
``tiered_cache.envelope`` under the exact final key, so django-redis'
serializer, compressor and ``make_key`` are never used.

Expiry: an envelope carries its absolute expiry, so Redis gets a relative
``PX`` (immune to clock skew between hosts) only to collect garbage, and reads
judge the envelope on the backend's clock. Integers are stored as decimal
strings so that ``incr`` is a server-side ``INCRBY``; they have no envelope, so
Redis itself must hold their absolute expiry: ``PXAT`` on write,
``PEXPIRETIME`` on read (Redis >= 7.0), which keeps them exact under an
injected clock too, as long as that clock is wall-clock time.

Everything a connection, a server or a cluster does wrong becomes
``TierUnavailable``; the list of those exceptions lives in ``TRANSPORT_ERRORS``,
here and nowhere else.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import math
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import redis
import redis.exceptions as rex
from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string
from django_redis.pool import ConnectionFactory, SentinelConnectionFactory
from redis.backoff import NoBackoff
from redis.retry import Retry

from ..envelope import HEADER_SIZE, MAGIC, Record, decode, peek, retime
from ..exceptions import EnvelopeError, TierUnavailable
from ..forksafe import Registry, renewed_lock
from ..resilience import LogThrottle
from ..sentinels import MISSING
from .base import BaseTier

__all__ = [
    "ALIVE_KINDS",
    "TRANSPORT_ERRORS",
    "RedisClusterTier",
    "RedisTier",
    "TieredConnectionFactory",
    "TieredSentinelConnectionFactory",
    "error_kind",
    "glob_escape",
    "redact_url",
    "redis_options",
]

logger = logging.getLogger(__name__)
_throttle = LogThrottle()

#: Exceptions meaning "Redis could not serve this call", mapped to
#: ``TierUnavailable``. The superclasses cover, among others: refused / reset
#: connections, ``AuthenticationError`` (NOAUTH, WRONGPASS), ``BusyLoadingError``,
#: ``MaxConnectionsError``, ``BlockingConnectionPool``'s "No connection
#: available.", Sentinel's ``MasterNotFoundError``/``SlaveNotFoundError``
#: (ConnectionError); every server error reply (ResponseError: OOM, MISCONF,
#: READONLY, NOPERM, CLUSTERDOWN, TRYAGAIN, MOVED, MASTERDOWN...); cluster
#: client errors (no reachable startup node, slot not covered); protocol
#: desync; socket errors redis-py did not wrap. ``DataError`` (bad arguments)
#: is a programming error and propagates.
TRANSPORT_ERRORS: tuple[type[BaseException], ...] = (
    rex.ConnectionError,
    rex.TimeoutError,
    rex.ResponseError,
    rex.RedisClusterException,
    rex.InvalidResponse,
    OSError,
)

#: Defaults injected into OPTIONS when absent (see ``RedisTier``).
DEFAULT_SOCKET_TIMEOUT = 0.1
DEFAULT_MAX_CONNECTIONS = 50
DEFAULT_POOL_TIMEOUT = 0.1
#: Larger values skip L2 (and land in L3 when there is one): sending 50 MB
#: takes longer than the socket timeout, so it would fail and count against
#: the breaker. ``MAX_VALUE_BYTES: None`` lifts the cap.
DEFAULT_MAX_VALUE_BYTES = 8 * 2**20
#: CONNECTION_FACTORY values we upgrade to our keyed-pool subclasses.
_DJANGO_REDIS_FACTORIES = frozenset(
    {
        None,
        "django_redis.pool.ConnectionFactory",
        "django_redis.pool.SentinelConnectionFactory",
    }
)
#: Our OPTIONS, hidden from django-redis (it would import COMPRESSOR as a path).
_TIER_OPTIONS = frozenset(
    {"COMPRESSOR", "COMPRESS_MIN_BYTES", "COMPRESS_LEVEL", "MAX_VALUE_BYTES"}
)

#: The OPTIONS of django-redis that shape connections (client, pools,
#: factory). Its serializer, compressor and exception options do not apply:
#: the tier stores envelopes and the backend decides what a failure means.
_DJANGO_REDIS_OPTIONS = frozenset(
    {
        "CLIENT_CLASS",
        "CONNECTION_FACTORY",
        "CONNECTION_POOL_CLASS",
        "CONNECTION_POOL_KWARGS",
        "PARSER_CLASS",
        "PASSWORD",
        "USERNAME",
        "REDIS_CLIENT_CLASS",
        "REDIS_CLIENT_KWARGS",
        "REPLICA_READ_ONLY",
        "SENTINELS",
        "SENTINEL_KWARGS",
        "SOCKET_CONNECT_TIMEOUT",
        "SOCKET_TIMEOUT",
    }
)

_WATCH_ATTEMPTS = 3
_CLEAR_BATCH = 500
#: Longer lifetimes (~31 700 years) are stored without PX: Redis refuses expiry
#: times that overflow, and the envelope still carries the exact expiry.
_MAX_PX = 10**15
_CLUSTER_REFRESH_INTERVAL = 1.0
#: What INCRBY accepts as an integer (no "+", spaces or leading zeros).
_INT = re.compile(rb"-?(?:0|[1-9][0-9]*)")
_GLOB_SPECIAL = re.compile(r"([*?\[\]\\])")

# Check first: INCRBY alone would create a missing key (Django raises instead).
# PEXPIRETIME is -2 for a missing key, -1 without expiry, else the absolute
# expiry in ms, compared with the backend's clock (ARGV[2], ms).
_INCR_LUA = """\
local expires = redis.call('PEXPIRETIME', KEYS[1])
if expires == -2 or (expires >= 0 and expires <= tonumber(ARGV[2])) then
  return false
end
return redis.call('INCRBY', KEYS[1], ARGV[1])
"""
_INCR_SHA = hashlib.sha1(_INCR_LUA.encode()).hexdigest()

# Liveness of a stored entry, judged from its first HEADER_SIZE bytes.
_ABSENT, _LIVE, _DEAD, _BAD = "absent", "live", "dead", "bad"


def error_kind(exc: BaseException) -> str:
    """Return a short, bounded label for a transport error (metrics, logs).

    OOM and auth failures need other reactions than a dead server
    (RELIABILITY.md A8, A9), so they get labels of their own.
    """
    cause = exc.__cause__ if isinstance(exc, TierUnavailable) else exc
    for cls, kind in _KINDS:
        if isinstance(cause, cls):
            return kind
    if isinstance(cause, rex.ResponseError):
        code = getattr(cause, "status_code", None) or str(cause).split(" ", 1)[0]
        if code == "MISCONF":
            return "misconf"
        return "response"
    return "connection"


_KINDS: tuple[tuple[type[BaseException], str], ...] = (
    (rex.TimeoutError, "timeout"),
    (getattr(rex, "MaxConnectionsError", rex.TimeoutError), "pool"),
    (rex.AuthenticationError, "auth"),
    (rex.NoPermissionError, "auth"),
    (rex.BusyLoadingError, "loading"),
    (rex.OutOfMemoryError, "oom"),
    (rex.ReadOnlyError, "readonly"),
    (rex.ClusterDownError, "cluster"),
    (rex.TryAgainError, "cluster"),
    (rex.AskError, "cluster"),
    (rex.RedisClusterException, "cluster"),
    (rex.ConnectionError, "connection"),
)


#: Error kinds of a server that answered: it refuses this write (out of memory,
#: failing RDB saves, a replica) but still serves reads, so the breaker, which
#: guards reachability, must not open (RELIABILITY.md A8, A10, A11).
ALIVE_KINDS = frozenset({"oom", "misconf", "readonly", "response"})


def _transport(op: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Map transport errors of a tier method to ``TierUnavailable``.

    A cluster MOVED reply patches the slot map and the call is tried once more
    (``_recover``); nothing else is retried on the request path.
    """

    def decorate(method: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(method)
        def wrapper(self: RedisTier, *args: Any, **kwargs: Any) -> Any:
            try:
                return method(self, *args, **kwargs)
            except TRANSPORT_ERRORS as exc:
                if not self._recover(exc):
                    raise self._unavailable(op, exc) from exc
            try:
                return method(self, *args, **kwargs)
            except TRANSPORT_ERRORS as exc:
                self._recover(exc)
                raise self._unavailable(op, exc) from exc

        return wrapper

    return decorate


class RedisTier(BaseTier):
    """L2 adapter for a spec whose BACKEND is ``django_redis.cache.RedisCache``.

    LOCATION is one URL, a list (or comma string) of primary + replica URLs, or
    a Sentinel service URL with ``CLIENT_CLASS="django_redis.client.SentinelClient"``
    and ``SENTINELS``. Like django-redis, reads go to a replica when there is
    one (so a read right after a write may miss while replication lags).

    OPTIONS defaults injected when absent, so that a sick Redis costs one
    bounded wait and no retries (RELIABILITY.md budgets):

    ``SOCKET_CONNECT_TIMEOUT`` / ``SOCKET_TIMEOUT`` = 0.1 s
        redis-py >= 8 otherwise waits 5 s per call on a hung server.
    ``CONNECTION_POOL_CLASS`` = ``"redis.BlockingConnectionPool"``,
    ``CONNECTION_POOL_KWARGS`` += ``max_connections=50, timeout=0.1``
        Wait at most 0.1 s for a free connection instead of redis-py's
        ``MaxConnectionsError`` at 100 (99% errors under gevent/ASGI load).
        Sentinel keeps django-redis' ``SentinelConnectionPool``, which cannot
        block; only the timeouts apply there.
    ``CONNECTION_POOL_KWARGS["retry"]`` = ``Retry(NoBackoff(), 0)``
        No retry on the request path (unless ``retry``, ``retry_on_error`` or
        ``retry_on_timeout`` is given): the breaker, not a retry loop, handles
        a dead server.
    ``CONNECTION_FACTORY`` = ``TieredConnectionFactory`` (Sentinel:
    ``TieredSentinelConnectionFactory``)
        Also replaces django-redis' own two factories: they share one pool per
        URL, so a second cache on that URL silently got the first one's pool
        options. A custom factory is left alone.

    ``MAX_VALUE_BYTES`` = 8 MiB
        Bigger values skip L2: their transfer would outlast the socket
        timeout and count as failures against the breaker.

    Our own OPTIONS: ``COMPRESS_MIN_BYTES`` (None = never), ``COMPRESSOR``
    (``"zlib"`` or ``"zstd"``), ``COMPRESS_LEVEL``; they are not passed on.

    Needs Redis >= 7.0 (``PEXPIRETIME`` for integers, see the module docstring).

    Deviations from ``BaseTier``: ``clear("")`` raises ``ValueError`` (it would
    match every key of the database); ``touch`` that loses three optimistic
    races to concurrent writers returns True without touching (the newer
    writes carry their own expiry); a stored value that is neither an envelope
    nor an integer (or not a string at all) is a rejected miss, and ``add``
    overwrites it. A refused ``add`` costs a second round trip to check that
    the entry is live on our clock (it may only look live to Redis).
    """

    mode = "single"
    known_options = BaseTier.known_options | _DJANGO_REDIS_OPTIONS
    default_max_value_bytes = DEFAULT_MAX_VALUE_BYTES

    def configure(self) -> None:
        options = redis_options(self.options)
        client_cls = import_string(
            options.get("CLIENT_CLASS", "django_redis.client.DefaultClient")
        )
        if not callable(getattr(client_cls, "get_client", None)):
            raise ImproperlyConfigured(
                f"tier {self.name!r}: CLIENT_CLASS {client_cls!r} has no get_client()"
            )
        # backend=None: the client is only asked for raw redis.Redis objects.
        self._client = client_cls(
            self.location, {**self.params, "OPTIONS": options}, backend=None
        )
        self._urls: list[str] = list(self._client._server)
        if _is_sentinel(options):
            self.mode = "sentinel"
        elif len(self._urls) > 1:
            self.mode = "replicas"
        self._sentinels = options.get("SENTINELS") if self.mode == "sentinel" else None

    # -- reads --------------------------------------------------------------

    @_transport("get")
    def get(self, key: str) -> Record | Any:
        client = self._reader(key)
        try:
            data = client.get(key)
        except rex.ResponseError as exc:
            if not _is_wrongtype(exc):
                raise
            self.reject(key, "not a string")
            return MISSING
        if data is None:
            return MISSING
        parsed = self._parse(key, data)
        if type(parsed) is int:
            return self._int_record(client, key, parsed)
        return parsed

    @_transport("get_many")
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
                raise self._unavailable("get_many", failures[0]) from failures[0]
            self._partial("get_many", failures, len(groups))
        if ints:
            names = list(ints)
            expiries = self._batch(
                [(k, ("PEXPIRETIME", k)) for k in names], write=False
            )
            for key, ms in zip(names, expiries, strict=True):
                if not isinstance(ms, Exception):
                    record = self._int_from(ints[key], ms)
                    if record is not MISSING:
                        found[key] = record
        return found

    @_transport("has_key")
    def has_key(self, key: str) -> bool:
        state = self._probe(self._reader(key), key)[0]
        if state is _BAD:
            self.reject(key, "neither an envelope nor an integer")
        return state is _LIVE

    # -- writes -------------------------------------------------------------

    @_transport("set")
    def set(self, key: str, record: Record) -> None:
        self._writer(key).execute_command(*self._set_args(key, record))

    @_transport("set_many")
    def set_many(self, records: Mapping[str, Record]) -> None:
        """See ``BaseTier``; one round trip per server (pipeline).

        On Cluster every reachable shard is written before ``TierUnavailable``
        reports the shards that were not.
        """
        commands = [(k, self._set_args(k, r)) for k, r in records.items()]
        if commands:
            self._raise_failures("set_many", self._batch(commands, write=True))

    @_transport("add")
    def add(self, key: str, record: Record) -> bool:
        args = self._set_args(key, record, nx=True)
        client = self._writer(key)
        if args[0] == "DEL":  # already expired: nothing to store
            return self._probe(client, key)[0] is not _LIVE
        if client.execute_command(*args):
            return True
        # SET NX refused: the entry may still be dead on our clock (an injected
        # clock, or the <1 ms PX rounding); replace it only then, atomically.
        if self._probe(client, key)[0] is _LIVE:
            return False
        for _ in range(_WATCH_ATTEMPTS):
            with client.pipeline(transaction=True) as pipe:
                try:
                    pipe.watch(key)
                    if self._probe(pipe, key)[0] is _LIVE:
                        return False
                    pipe.multi()
                    pipe.execute_command(*args[:-1])  # without NX
                    pipe.execute()
                    return True
                except rex.WatchError:
                    continue
        return False

    @_transport("delete")
    def delete(self, key: str) -> bool:
        pipe = self._writer(key).pipeline(transaction=True)
        pipe.getrange(key, 0, HEADER_SIZE - 1)
        pipe.pexpiretime(key)
        pipe.delete(key)
        head, expires_ms, deleted = pipe.execute(raise_on_error=False)
        if isinstance(deleted, Exception):
            raise deleted
        if not deleted or isinstance(head, Exception):
            return False
        return self._state(head, expires_ms) is _LIVE

    @_transport("delete_many")
    def delete_many(self, keys: Iterable[str]) -> None:
        groups = self._slot_groups(list(keys))
        if groups:
            commands = [(g[0], ("DEL", *g)) for g in groups]
            self._raise_failures("delete_many", self._batch(commands, write=True))

    @_transport("touch")
    def touch(self, key: str, expires_at: float | None) -> bool:
        ms = self._ttl_ms(expires_at)
        client = self._writer(key)
        for _ in range(_WATCH_ATTEMPTS):
            with client.pipeline(transaction=True) as pipe:
                try:
                    pipe.watch(key)
                    state, head = self._probe(pipe, key)
                    if state is not _LIVE:
                        return False
                    envelope_head = head.startswith(MAGIC)  # type: ignore[union-attr]
                    pipe.multi()
                    if ms is not None and ms <= 0:
                        pipe.delete(key)
                    else:
                        if envelope_head:  # the payload is not sent back and forth
                            pipe.setrange(key, 0, retime(head, expires_at))
                        if ms is None or ms > _MAX_PX:
                            pipe.persist(key)
                        elif envelope_head:
                            pipe.pexpire(key, ms)
                        else:  # a raw int's expiry is absolute (see _set_args)
                            pipe.pexpireat(key, math.ceil(expires_at * 1000))  # type: ignore[operator]
                    pipe.execute()
                    return True
                except rex.WatchError:
                    continue
        return True

    @_transport("incr")
    def incr(self, key: str, delta: int) -> int:
        client = self._writer(key)
        now_ms = math.floor(self.clock() * 1000)
        try:
            try:
                result = client.evalsha(_INCR_SHA, 1, key, delta, now_ms)
            except rex.NoScriptError:
                result = client.eval(_INCR_LUA, 1, key, delta, now_ms)
        except rex.ResponseError as exc:
            message = str(exc)
            if "not an integer" not in message and "WRONGTYPE" not in message:
                raise
            if self._probe(client, key)[0] in (_ABSENT, _DEAD):
                raise ValueError(f"Key '{key}' not found") from None
            raise TypeError(
                f"cannot incr {key!r}: the stored value is not an integer or the "
                f"result does not fit in 64 bits ({message})"
            ) from exc
        if result is None:
            raise ValueError(f"Key '{key}' not found")
        return int(result)

    @_transport("clear")
    def clear(self, namespace: str) -> int:
        """See ``BaseTier``; SCAN + UNLINK (every primary on Cluster)."""
        if not namespace:
            raise ValueError(
                "refusing to clear an empty namespace: it matches every key"
            )
        pattern = glob_escape(namespace) + "*"
        removed = 0
        failures = []
        for client in self._primaries():
            try:
                batch: list[bytes] = []
                for found in client.scan_iter(match=pattern, count=_CLEAR_BATCH):
                    batch.append(found)
                    if len(batch) >= _CLEAR_BATCH:
                        removed += self._unlink(client, batch)
                        batch = []
                if batch:
                    removed += self._unlink(client, batch)
            except TRANSPORT_ERRORS as exc:
                self._recover(exc)
                failures.append(exc)
        if failures:
            raise self._unavailable("clear", failures[0]) from failures[0]
        return removed

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

    def _unavailable(self, op: str, exc: BaseException) -> TierUnavailable:
        kind = error_kind(exc)
        return TierUnavailable(
            self.name,
            op,
            f"{type(exc).__name__}: {exc}",
            kind=kind,
            alive=kind in ALIVE_KINDS,
        )

    def _partial(self, op: str, failures: list[Exception], total: int) -> None:
        self.stats.errors += 1
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
            raise self._unavailable(op, failures[0]) from failures[0]

    def _ttl_ms(self, expires_at: float | None) -> int | None:
        if expires_at is None:
            return None
        return math.ceil((expires_at - self.clock()) * 1000)

    def _set_args(self, key: str, record: Record, *, nx: bool = False) -> tuple:
        ms = self._ttl_ms(record.expires_at)
        if ms is not None and ms <= 0:
            return ("DEL", key)
        value = self.encode(record)
        args: tuple = ("SET", key, value)
        if ms is not None and ms <= _MAX_PX:
            if type(value) is int:  # no envelope: Redis keeps the absolute expiry
                args += ("PXAT", math.ceil(record.expires_at * 1000))  # type: ignore[operator]
            else:
                args += ("PX", ms)
        if nx:
            args += ("NX",)
        return args

    def _parse(self, key: str, data: bytes) -> Record | int | Any:
        """Return a live Record, MISSING, or a raw int (whose TTL is unknown)."""
        if data.startswith(MAGIC):
            try:
                record = decode(data)
            except EnvelopeError as exc:
                self.reject(key, exc)
                return MISSING
            # Our clock may run ahead of Redis' TTL.
            return record if record.is_live(self.clock()) else MISSING
        if _INT.fullmatch(data):
            return int(data)
        self.reject(key, "neither an envelope nor an integer")
        return MISSING

    def _int_record(self, client: redis.Redis, key: str, value: int) -> Record | Any:
        return self._int_from(value, client.pexpiretime(key))

    def _int_from(self, value: int, expires_ms: int) -> Record | Any:
        """Return the Record of a raw int given its PEXPIRETIME (ms, -1, -2)."""
        if expires_ms == -2:
            return MISSING
        if expires_ms == -1:
            return Record(value, None, None, 0)
        record = Record(value, None, expires_ms / 1000, 0)
        return record if record.is_live(self.clock()) else MISSING

    def _probe(self, client: Any, key: str) -> tuple[str, bytes | None]:
        """Return the entry's liveness on our clock, and its first bytes."""
        head = self._head(client, key)
        if head and _INT.fullmatch(head):
            return self._state(head, client.pexpiretime(key)), head
        return self._state(head), head

    @staticmethod
    def _head(client: Any, key: str) -> bytes | None:
        """Return the entry's first bytes, enough to judge it (None: not a string)."""
        try:
            return client.getrange(key, 0, HEADER_SIZE - 1)
        except rex.ResponseError as exc:
            if _is_wrongtype(exc):
                return None
            raise

    def _state(self, head: bytes | None, expires_ms: Any = -1) -> str:
        """Judge an entry by its first bytes (and PEXPIRETIME for raw ints)."""
        if head is None:
            return _BAD
        if not head or expires_ms == -2:
            return _ABSENT
        if head.startswith(MAGIC):
            try:
                expires_at = peek(head)[0]
            except EnvelopeError:
                return _BAD
            live = expires_at is None or expires_at > self.clock()
            return _LIVE if live else _DEAD
        if not _INT.fullmatch(head):
            return _BAD
        if isinstance(expires_ms, int) and 0 <= expires_ms <= self.clock() * 1000:
            return _DEAD
        return _LIVE


class RedisClusterTier(RedisTier):
    """L2 on Redis Cluster: BACKEND ``tiered_cache.tiers.RedisClusterTier``.

    LOCATION: one or more ``redis://[user:password@]host:port`` startup nodes
    (a list or a comma string). One ``redis.cluster.RedisCluster`` per
    normalized spec is shared by the process; it is created on first use, not
    at start-up. OPTIONS: ``SOCKET_TIMEOUT`` / ``SOCKET_CONNECT_TIMEOUT``
    (0.1 s), ``USERNAME``, ``PASSWORD``, ``CONNECTION_POOL_KWARGS`` (per-node
    pool kwargs such as ``max_connections``; a full pool fails at once with
    ``MaxConnectionsError`` since cluster nodes cannot use a blocking pool) and
    ``REDIS_CLIENT_KWARGS`` (passed to ``RedisCluster``).

    Commands go straight to the node that owns the key's slot, using
    RedisCluster's slot map and node clients, not through
    ``RedisCluster.execute_command``: the latter retries, sleeps 0.25 s on
    CLUSTERDOWN and re-reads the topology inline on every failing call, so one
    call could block for seconds. Here a call costs at most one socket timeout;
    a MOVED reply patches the slot map and is retried once; after a connection
    error the topology is re-read in a background thread, at most once a
    second per process (RELIABILITY.md B16, B18).

    Multi-key calls are split per slot and sent as one pipeline per node; a
    failing node loses only its own keys (see ``get_many``, ``set_many``).
    """

    mode = "cluster"
    known_options = BaseTier.known_options | {
        "SOCKET_TIMEOUT",
        "SOCKET_CONNECT_TIMEOUT",
        "USERNAME",
        "PASSWORD",
        "CONNECTION_POOL_KWARGS",
        "REDIS_CLIENT_KWARGS",
    }

    def configure(self) -> None:
        options = self.options
        urls = self.location
        if isinstance(urls, str):
            urls = urls.split(",")
        self._urls = [u.strip() for u in urls if u and u.strip()]
        if not self._urls:
            raise ImproperlyConfigured(f"tier {self.name!r}: LOCATION names no node")
        self._sentinels = None
        kwargs: dict[str, Any] = {
            "socket_timeout": options.get("SOCKET_TIMEOUT", DEFAULT_SOCKET_TIMEOUT),
            "socket_connect_timeout": options.get(
                "SOCKET_CONNECT_TIMEOUT", DEFAULT_SOCKET_TIMEOUT
            ),
            # Only decides whether a client can be built while some slots are
            # uncovered: yes, the other shards still serve.
            "require_full_coverage": False,
        }
        nodes = []
        for url in self._urls:
            parts = urlsplit(url if "://" in url else f"redis://{url}")
            nodes.append((parts.hostname or "127.0.0.1", parts.port or 6379))
            if parts.username and "username" not in kwargs:
                kwargs["username"] = parts.username
            if parts.password and "password" not in kwargs:
                kwargs["password"] = parts.password
            if parts.scheme == "rediss":
                kwargs["ssl"] = True
        if options.get("USERNAME"):
            kwargs["username"] = options["USERNAME"]
        if options.get("PASSWORD"):
            kwargs["password"] = options["PASSWORD"]
        kwargs.update(options.get("CONNECTION_POOL_KWARGS") or {})
        kwargs.update(options.get("REDIS_CLIENT_KWARGS") or {})
        key = (tuple(nodes), _freeze(kwargs))
        self._handle = _clusters.get_or_create(
            key, lambda: _ClusterHandle(nodes, kwargs)
        )

    # -- routing ------------------------------------------------------------

    def _node_client(self, key: str | bytes) -> redis.Redis:
        cluster = self._handle.get()
        node = cluster.nodes_manager.get_node_from_slot(cluster.keyslot(key))
        return cluster.get_redis_connection(node)

    _reader = _writer = _node_client

    def _primaries(self) -> list[redis.Redis]:
        cluster = self._handle.get()
        return [cluster.get_redis_connection(n) for n in cluster.get_primaries()]

    def _slot_groups(self, keys: list[str]) -> list[list[str]]:
        if not keys:
            return []
        keyslot = self._handle.get().keyslot
        groups: dict[int, list[str]] = {}
        for key in keys:
            groups.setdefault(keyslot(key), []).append(key)
        return list(groups.values())

    def _batch(self, commands: list[tuple[str, tuple]], *, write: bool) -> list[Any]:
        """Run commands as one pipeline per node; a node's failure is its own."""
        cluster = self._handle.get()
        results: list[Any] = [None] * len(commands)
        by_node: dict[int, tuple[redis.Redis, list[int]]] = {}
        for i, (key, _) in enumerate(commands):
            try:
                client = self._node_client(key)
            except TRANSPORT_ERRORS as exc:  # slot not covered
                self._recover(exc)
                results[i] = exc
                continue
            by_node.setdefault(id(client), (client, []))[1].append(i)
        for client, indexes in by_node.values():
            try:
                if len(indexes) == 1:
                    try:
                        out = [client.execute_command(*commands[indexes[0]][1])]
                    except (rex.MovedError, rex.AskError) as exc:
                        out = [exc]
                else:
                    pipe = client.pipeline(transaction=False)
                    for i in indexes:
                        pipe.execute_command(*commands[i][1])
                    out = pipe.execute(raise_on_error=False)
            except TRANSPORT_ERRORS as exc:
                self._recover(exc)
                for i in indexes:
                    results[i] = exc
                continue
            for i, result in zip(indexes, out, strict=True):
                if isinstance(result, (rex.MovedError, rex.AskError)):
                    # Resharding: let RedisCluster follow the redirect.
                    self._recover(result)
                    try:
                        result = cluster.execute_command(*commands[i][1])
                    except TRANSPORT_ERRORS as exc:
                        result = exc
                results[i] = result
        return results

    def _unlink(self, client: redis.Redis, keys: list[bytes]) -> int:
        keyslot = self._handle.get().keyslot
        slots: dict[int, list[bytes]] = {}
        for key in keys:
            slots.setdefault(keyslot(key), []).append(key)
        pipe = client.pipeline(transaction=False)
        for group in slots.values():
            pipe.unlink(*group)
        return sum(pipe.execute())

    def _recover(self, exc: BaseException) -> bool:
        if isinstance(exc, rex.MovedError):
            client = self._handle.client
            if client is not None:
                client.nodes_manager.move_slot(exc)
                return True
            return False
        if isinstance(
            exc,
            (
                rex.ConnectionError,
                rex.TimeoutError,
                rex.ClusterDownError,
                rex.ReadOnlyError,
                rex.SlotNotCoveredError,
                OSError,
            ),
        ):
            self._handle.refresh_soon()
        return False


# -- shared cluster clients ----------------------------------------------------

_clusters: Registry[_ClusterHandle] = Registry()


class _ClusterHandle:
    """One lazily built RedisCluster per spec, with rate-limited refreshes."""

    def __init__(self, nodes: list[tuple[str, int]], kwargs: dict[str, Any]) -> None:
        self.nodes = nodes
        self.kwargs = kwargs
        self.client: redis.cluster.RedisCluster | None = None
        self._lock = renewed_lock(self)
        self._last_failure = -math.inf
        self._failure: BaseException | None = None
        self._last_refresh = -math.inf
        self._refreshing = False
        # Waiting for another thread's connect beyond this would break I4.
        self._wait = (kwargs.get("socket_timeout") or 1.0) + (
            kwargs.get("socket_connect_timeout") or 1.0
        )

    def get(self) -> redis.cluster.RedisCluster:
        client = self.client
        if client is not None:
            return client
        if not self._lock.acquire(timeout=self._wait):
            raise rex.RedisClusterException("cluster client is being created")
        try:
            if self.client is None:
                if time.monotonic() - self._last_failure < _CLUSTER_REFRESH_INTERVAL:
                    raise rex.RedisClusterException(
                        f"cluster unreachable moments ago: {self._failure}"
                    )
                try:
                    self.client = self._create()
                except TRANSPORT_ERRORS as exc:
                    self._last_failure = time.monotonic()
                    self._failure = exc
                    raise
            return self.client
        finally:
            self._lock.release()

    def _create(self) -> redis.cluster.RedisCluster:
        from redis.cluster import ClusterNode, RedisCluster

        return RedisCluster(
            startup_nodes=[ClusterNode(host, port) for host, port in self.nodes],
            # Only used for the fallback after a redirect, which must not loop.
            retry=Retry(NoBackoff(), 0),
            **self.kwargs,
        )

    def refresh_soon(self) -> None:
        """Re-read the topology in the background, at most once a second."""
        now = time.monotonic()
        with self._lock:
            if (
                self.client is None
                or self._refreshing
                or now - self._last_refresh < _CLUSTER_REFRESH_INTERVAL
            ):
                return
            self._refreshing = True
            self._last_refresh = now
        threading.Thread(
            target=self._refresh, name="tiered-cache-cluster-refresh", daemon=True
        ).start()

    def _refresh(self) -> None:
        try:
            self.client.nodes_manager.initialize()  # type: ignore[union-attr]
        except Exception as exc:  # the next failing call schedules another try
            logger.debug("cluster topology refresh failed: %r", exc)
        finally:
            self._refreshing = False


# -- django-redis glue -----------------------------------------------------------


def redis_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """Return the OPTIONS handed to django-redis: ours removed, defaults added."""
    result = {k: v for k, v in options.items() if k not in _TIER_OPTIONS}
    sentinel = _is_sentinel(result)
    result.setdefault("SOCKET_CONNECT_TIMEOUT", DEFAULT_SOCKET_TIMEOUT)
    result.setdefault("SOCKET_TIMEOUT", DEFAULT_SOCKET_TIMEOUT)
    if result.get("CONNECTION_FACTORY") in _DJANGO_REDIS_FACTORIES:
        factory = (
            TieredSentinelConnectionFactory if sentinel else TieredConnectionFactory
        )
        result["CONNECTION_FACTORY"] = f"{__name__}.{factory.__name__}"
    pool_kwargs = dict(result.get("CONNECTION_POOL_KWARGS") or {})
    if not sentinel:
        result.setdefault("CONNECTION_POOL_CLASS", "redis.BlockingConnectionPool")
        pool_cls = import_string(result["CONNECTION_POOL_CLASS"])
        if issubclass(pool_cls, redis.BlockingConnectionPool):
            pool_kwargs.setdefault("max_connections", DEFAULT_MAX_CONNECTIONS)
            pool_kwargs.setdefault("timeout", DEFAULT_POOL_TIMEOUT)
    if not pool_kwargs.keys() & {"retry", "retry_on_error", "retry_on_timeout"}:
        pool_kwargs["retry"] = _NO_RETRY
    result["CONNECTION_POOL_KWARGS"] = pool_kwargs
    return result


_NO_RETRY = Retry(NoBackoff(), 0)


class _KeyedPools:
    """Share a pool per URL *and* per full option set, not per URL only."""

    _pools: Registry[Any] = Registry()  # shadows django-redis' per-URL dict

    def get_or_create_connection_pool(self, params: dict[str, Any]) -> Any:
        key = (type(self).__name__, _freeze(params), _freeze(self.options))  # type: ignore[attr-defined]
        return self._pools.get_or_create(
            key,
            lambda: self.get_connection_pool(params),  # type: ignore[attr-defined]
        )


class TieredConnectionFactory(_KeyedPools, ConnectionFactory):
    """django-redis' factory with pools keyed by URL plus every option."""


class TieredSentinelConnectionFactory(_KeyedPools, SentinelConnectionFactory):
    """django-redis' Sentinel factory with pools keyed by URL plus every option."""


# -- small helpers ---------------------------------------------------------------


def glob_escape(text: str) -> str:
    """Escape Redis glob characters so ``text`` matches only itself."""
    return _GLOB_SPECIAL.sub(r"\\\1", text)


def redact_url(url: str) -> str:
    """Return ``url`` without its password (userinfo or query string)."""
    parts = urlsplit(url)
    netloc = parts.hostname or ""
    if ":" in netloc:
        netloc = f"[{netloc}]"
    if parts.port:
        netloc = f"{netloc}:{parts.port}"
    if parts.username:
        netloc = f"{parts.username}@{netloc}"
    query = urlencode(
        [(k, v) for k, v in parse_qsl(parts.query) if k.lower() != "password"]
    )
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def _is_sentinel(options: Mapping[str, Any]) -> bool:
    return bool(options.get("SENTINELS")) or any(
        "Sentinel" in str(options.get(name) or "")
        for name in ("CLIENT_CLASS", "CONNECTION_FACTORY")
    )


def _is_wrongtype(exc: Exception) -> bool:
    return str(exc).startswith("WRONGTYPE")


def _freeze(value: Any) -> Any:
    """Return a hashable, order-independent form of an options structure.

    Classes and functions become dotted paths; other objects (a Retry, a
    FakeServer) count by identity, which errs on the side of separate pools.
    """
    if isinstance(value, Mapping):
        return tuple(sorted((str(k), _freeze(v)) for k, v in value.items()))
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(v) for v in value)
    if isinstance(value, (set, frozenset)):
        return tuple(sorted((_freeze(v) for v in value), key=repr))
    if value is None or isinstance(value, (str, bytes, int, float)):
        return (type(value).__name__, value)
    qualname = getattr(value, "__qualname__", None)
    if isinstance(value, type) or (callable(value) and qualname):
        return f"{value.__module__}.{qualname}"
    return (type(value).__qualname__, id(value))
