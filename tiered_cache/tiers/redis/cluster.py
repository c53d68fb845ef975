"""``RedisClusterTier``: L2 on Redis Cluster, and the cluster client it shares.

``RedisTier`` with another routing: each command goes straight to the node
that owns its key's slot, multi-key calls are split per slot, and ``clear``
visits every primary. The ``redis.cluster.RedisCluster`` of a spec is built
once per process, on first use (``_ClusterHandle``), so a cluster that is
down at start-up costs nothing until a call needs it, and topology refreshes
are rate-limited there (docs/faults.rst #16, #18).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from typing import Any
from urllib.parse import urlsplit

import redis
import redis.exceptions as rex
from redis.backoff import NoBackoff
from redis.retry import Retry

from ...exceptions import BadValue
from ...forksafe import Registry, renewed_lock
from ..base import BaseTier
from .connections import DEFAULT_SOCKET_TIMEOUT, freeze
from .errors import TRANSPORT_ERRORS
from .tier import RedisTier

__all__ = ["RedisClusterTier"]

logger = logging.getLogger(__name__)

_CLUSTER_REFRESH_INTERVAL = 1.0


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
    second per process (docs/faults.rst #16, #18).

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

    @classmethod
    def location_problems(cls, location: Any, *, name: str) -> list[BadValue]:
        """Nodes may be ``host:port``; LOCATION must name at least one."""
        if _node_urls(location):
            return []
        return [
            BadValue(
                name,
                "LOCATION",
                location,
                "one or more cluster nodes, e.g. 'redis://10.0.0.1:7000,"
                "redis://10.0.0.2:7000'",
            )
        ]

    def configure(self) -> None:
        options = self.options
        self._urls = _node_urls(self.location)  # not empty: location_problems
        self._sentinels = None
        self._streams = {}
        self.socket_timeout = options.get("SOCKET_TIMEOUT", DEFAULT_SOCKET_TIMEOUT)
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
        key = (tuple(nodes), freeze(kwargs))
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


def _node_urls(location: Any) -> list[str]:
    """Return the node URLs of a LOCATION (a comma-separated string or a list)."""
    urls = location.split(",") if isinstance(location, str) else location
    if not isinstance(urls, (list, tuple)):
        return []
    return [u.strip() for u in urls if isinstance(u, str) and u.strip()]


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
        # Waiting for another thread's connect longer would block a worker beyond
        # the bound of docs/faults.rst invariant I4.
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
