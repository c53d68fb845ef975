"""What counts as Redis failing, and how a failure is labelled and raised.

The backend needs one answer from L2 when a call goes wrong: could Redis serve
it or not. Everything a connection, a server or a cluster does wrong becomes
``TierUnavailable`` (chained to its cause), with a short, bounded ``kind`` for
counters and logs and an ``alive`` flag telling the breaker whether the
server answered. The exceptions that mean "Redis could not serve this call"
are listed in ``TRANSPORT_ERRORS``, here and nowhere else; anything outside
it (``DataError``: bad arguments) is a programming error and propagates.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import redis.exceptions as rex

from ...exceptions import TierUnavailable

__all__ = [
    "ALIVE_KINDS",
    "TRANSPORT_ERRORS",
    "error_kind",
    "is_wrongtype",
    "transport",
    "unavailable",
]

#: Exceptions meaning "Redis could not serve this call", mapped to
#: ``TierUnavailable``. The superclasses cover, among others: refused / reset
#: connections, ``AuthenticationError`` (NOAUTH, WRONGPASS), ``BusyLoadingError``,
#: ``MaxConnectionsError``, ``BlockingConnectionPool``'s "No connection
#: available.", Sentinel's ``MasterNotFoundError``/``SlaveNotFoundError``
#: (ConnectionError); every server error reply (ResponseError: OOM, MISCONF,
#: READONLY, NOPERM, CLUSTERDOWN, TRYAGAIN, MOVED, MASTERDOWN...); cluster
#: client errors (no reachable startup node, slot not covered); protocol
#: desync; socket errors redis-py did not wrap.
TRANSPORT_ERRORS: tuple[type[BaseException], ...] = (
    rex.ConnectionError,
    rex.TimeoutError,
    rex.ResponseError,
    rex.RedisClusterException,
    rex.InvalidResponse,
    OSError,
)

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
    # Concurrent writers kept changing the key under an optimistic update.
    (rex.WatchError, "contention"),
)

#: Error kinds of a server that answered: it refuses this write (out of memory,
#: failing RDB saves, a replica) or lost it to concurrent writers, but still
#: serves reads, so the breaker, which guards reachability, must not open
#: (docs/faults.rst #8, #10, #11).
ALIVE_KINDS = frozenset({"oom", "misconf", "readonly", "response", "contention"})


def error_kind(exc: BaseException) -> str:
    """Return a short, bounded label for a transport error (metrics, logs).

    OOM and auth failures need other reactions than a dead server
    (docs/faults.rst #8, #9), so they get labels of their own.
    """
    cause = exc.__cause__ if isinstance(exc, TierUnavailable) else exc
    if type(cause) is rex.ConnectionError and str(cause) == _POOL_EMPTY:
        return "pool"  # BlockingConnectionPool's wait ran out
    for cls, kind in _KINDS:
        if isinstance(cause, cls):
            return kind
    if isinstance(cause, rex.ResponseError):
        # In a pipeline redis-py prefixes the reply with the failed command.
        text = str(cause).rpartition(_PIPELINE_PREFIX_END)[2]
        code = getattr(cause, "status_code", None) or text.split(" ", 1)[0]
        if code == "MISCONF":
            return "misconf"
        return "response"
    return "connection"


#: The end of what redis-py puts before an error reply met in a pipeline
#: ("Command # 1 (SET ...) of pipeline caused error: MISCONF ...").
_PIPELINE_PREFIX_END = "of pipeline caused error: "

#: What redis-py's ``BlockingConnectionPool`` raises when no connection came
#: free within its ``timeout`` (a plain ``ConnectionError``).
_POOL_EMPTY = "No connection available."


def unavailable(tier: str, op: str, exc: BaseException) -> TierUnavailable:
    """Return the ``TierUnavailable`` reporting ``exc``; raise it ``from exc``."""
    kind = error_kind(exc)
    return TierUnavailable(
        tier,
        op,
        f"{type(exc).__name__}: {exc}",
        kind=kind,
        alive=kind in ALIVE_KINDS,
        busy=kind == "pool",
    )


def is_wrongtype(exc: BaseException) -> bool:
    """Return whether a reply error says the key holds a list, hash... not a string."""
    return str(exc).startswith("WRONGTYPE")


def transport(op: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Map transport errors of a tier method to ``TierUnavailable``.

    When the tier's ``_recover`` says one more try may work (a cluster MOVED
    reply, which patches the slot map), the call is tried once more; nothing
    else is retried on the request path.
    """

    def decorate(method: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(method)
        def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
            try:
                return method(self, *args, **kwargs)
            except TRANSPORT_ERRORS as exc:
                if not self._recover(exc):
                    raise unavailable(self.name, op, exc) from exc
            try:
                return method(self, *args, **kwargs)
            except TRANSPORT_ERRORS as exc:
                self._recover(exc)
                raise unavailable(self.name, op, exc) from exc

        return wrapper

    return decorate
