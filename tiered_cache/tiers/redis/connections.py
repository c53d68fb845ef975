"""How the Redis tiers get their connections: django-redis options and pools.

django-redis parses LOCATION, picks the primary or a replica and builds the
(Sentinel) pools; the tier only asks its client for raw ``redis.Redis``
objects. ``redis_options`` hands django-redis the tier's OPTIONS with ours
removed and with defaults that make a sick Redis cost one bounded wait and no
retries (docs/faults.rst #3, #12). django-redis shares one pool per URL, so
a second cache on that URL silently got the first one's pool options: our
factories key pools by URL *and* every option (``freeze``).

Also here: what a LOCATION may show in ``describe`` (``redact_url``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import redis
from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string
from django_redis.pool import ConnectionFactory, SentinelConnectionFactory
from redis.backoff import NoBackoff
from redis.retry import Retry

from ...exceptions import BadValue
from ...forksafe import Registry
from ..base import BaseTier
from ..values import SECONDS_OR_NONE
from .stack import ConnectionStack

__all__ = [
    "DEFAULT_MAX_CONNECTIONS",
    "DEFAULT_POOL_TIMEOUT",
    "DEFAULT_SOCKET_TIMEOUT",
    "DJANGO_REDIS_OPTIONS",
    "INEFFECTIVE_DJANGO_REDIS_OPTIONS",
    "TieredConnectionFactory",
    "TieredSentinelConnectionFactory",
    "freeze",
    "TIMEOUT_RULES",
    "check_url",
    "location_problems",
    "is_sentinel",
    "redact_url",
    "redis_options",
]

#: Defaults injected into OPTIONS when absent (see ``RedisTier``).
DEFAULT_SOCKET_TIMEOUT = 0.1
DEFAULT_MAX_CONNECTIONS = 50
DEFAULT_POOL_TIMEOUT = 0.1

#: The OPTIONS of django-redis that shape connections (client, pools,
#: factory). Its serializer, compressor and exception options do not apply:
#: the tier stores envelopes and the backend decides what a failure means.
DJANGO_REDIS_OPTIONS = frozenset(
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

#: django-redis OPTIONS a tier accepts but that have no effect in it: the tier
#: stores its own envelopes (serializer, pickle version) and the backend decides
#: what a failure means (FAIL_OPEN). Accepted, so that a configuration copied
#: from django-redis works; ``manage.py check`` warns (W009).
INEFFECTIVE_DJANGO_REDIS_OPTIONS = frozenset(
    {
        "SERIALIZER",
        "PICKLE_VERSION",
        "IGNORE_EXCEPTIONS",
        "LOG_IGNORED_EXCEPTIONS",
        "CLOSE_CONNECTION",
    }
)

#: CONNECTION_FACTORY values we upgrade to our keyed-pool subclasses.
_DJANGO_REDIS_FACTORIES = frozenset(
    {
        None,
        "django_redis.pool.ConnectionFactory",
        "django_redis.pool.SentinelConnectionFactory",
    }
)
_NO_RETRY = Retry(NoBackoff(), 0)


def redis_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """Return the OPTIONS handed to django-redis: ours removed, defaults added.

    Ours are hidden because django-redis would import COMPRESSOR as a path.
    """
    result = {k: v for k, v in options.items() if k not in BaseTier.known_options}
    sentinel = is_sentinel(result)
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
            pool_kwargs.setdefault("queue_class", ConnectionStack)
    if not pool_kwargs.keys() & _RETRY_KEYS:
        pool_kwargs["retry"] = _NO_RETRY
    result["CONNECTION_POOL_KWARGS"] = pool_kwargs
    if sentinel:
        # django-redis hands the sentinels only SENTINEL_KWARGS: without these,
        # redis-py's default timeouts and retries apply, and with every
        # sentinel down one L2 call took 22-24 s (docs/faults.rst #15).
        sentinel_kwargs = dict(result.get("SENTINEL_KWARGS") or {})
        sentinel_kwargs.setdefault("socket_timeout", result["SOCKET_TIMEOUT"])
        sentinel_kwargs.setdefault(
            "socket_connect_timeout", result["SOCKET_CONNECT_TIMEOUT"]
        )
        if not sentinel_kwargs.keys() & _RETRY_KEYS:
            sentinel_kwargs["retry"] = _NO_RETRY
        result["SENTINEL_KWARGS"] = sentinel_kwargs
    return result


_RETRY_KEYS = frozenset({"retry", "retry_on_error", "retry_on_timeout"})


def check_url(name: str, url: str) -> None:
    """Refuse a LOCATION redis-py would only reject at the first call."""
    problem = url_problem(url)
    if problem:
        raise ImproperlyConfigured(f"tier {name!r}: LOCATION {url!r} {problem}")


#: OPTIONS redis-py needs as numbers (a string fails at the first connection).
TIMEOUT_RULES = {
    "SOCKET_TIMEOUT": SECONDS_OR_NONE,
    "SOCKET_CONNECT_TIMEOUT": SECONDS_OR_NONE,
}


def location_problems(name: str, location: Any) -> list[BadValue]:
    """Return a ``BadValue`` per URL of a LOCATION django-redis cannot use."""
    urls = location.split(",") if isinstance(location, str) else location
    if not location or not isinstance(urls, (list, tuple)):
        return [
            BadValue(
                name,
                "LOCATION",
                location,
                "a redis://, rediss:// or unix:// URL, or a list of them",
            )
        ]
    return [
        BadValue(name, "LOCATION", url, f"a Redis URL: this one {problem}")
        for url in urls
        if (problem := url_problem(url))
    ]


def url_problem(url: Any) -> str:
    """Say what is wrong with one Redis URL of a LOCATION ('' when nothing)."""
    if not isinstance(url, str):
        return "must be a string"
    parts = urlsplit(url)
    try:
        parts.port  # noqa: B018  (parsing the port is the check)
    except ValueError as exc:
        return f"has a bad port: {exc}"
    if parts.scheme not in ("redis", "rediss", "unix"):
        return "must start with redis://, rediss:// or unix://"
    return ""


def is_sentinel(options: Mapping[str, Any]) -> bool:
    """Return whether OPTIONS describe a Sentinel deployment."""
    return bool(options.get("SENTINELS")) or any(
        "Sentinel" in str(options.get(name) or "")
        for name in ("CLIENT_CLASS", "CONNECTION_FACTORY")
    )


class _KeyedPools:
    """Share a pool per URL *and* per full option set, not per URL only."""

    _pools: Registry[Any] = Registry()  # shadows django-redis' per-URL dict

    def get_or_create_connection_pool(self, params: dict[str, Any]) -> Any:
        key = (type(self).__name__, freeze(params), freeze(self.options))  # type: ignore[attr-defined]
        return self._pools.get_or_create(
            key,
            lambda: self.get_connection_pool(params),  # type: ignore[attr-defined]
        )


class TieredConnectionFactory(_KeyedPools, ConnectionFactory):
    """django-redis' factory with pools keyed by URL plus every option."""


class TieredSentinelConnectionFactory(_KeyedPools, SentinelConnectionFactory):
    """django-redis' Sentinel factory with pools keyed by URL plus every option."""


def freeze(value: Any) -> Any:
    """Return a hashable, order-independent form of an options structure.

    Classes and functions become dotted paths; other objects (a Retry, a
    FakeServer) count by identity, which errs on the side of separate pools.
    """
    if isinstance(value, Mapping):
        return tuple(sorted((str(k), freeze(v)) for k, v in value.items()))
    if isinstance(value, (list, tuple)):
        return tuple(freeze(v) for v in value)
    if isinstance(value, (set, frozenset)):
        return tuple(sorted((freeze(v) for v in value), key=repr))
    if value is None or isinstance(value, (str, bytes, int, float)):
        return (type(value).__name__, value)
    qualname = getattr(value, "__qualname__", None)
    if isinstance(value, type) or (callable(value) and qualname):
        return f"{value.__module__}.{qualname}"
    return (type(value).__qualname__, id(value))


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
