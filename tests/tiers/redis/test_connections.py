"""How RedisTier gets its connections: injected defaults, keyed pools, URLs."""

from __future__ import annotations

from typing import Any

import fakeredis
import pytest
import redis
from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

from tests.clock import FakeClock
from tests.tiers.redis.common import FAKE_URL, fake_setup, make_tier
from tiered_cache.tiers.redis import (
    TieredConnectionFactory,
    TieredSentinelConnectionFactory,
    redact_url,
    redis_options,
)
from tiered_cache.tiers.redis.connections import freeze


def test_defaults_are_injected_without_overriding_the_user(clock: FakeClock):
    t = fake_setup(clock).tier
    pool = t._writer("").connection_pool
    assert isinstance(pool, redis.BlockingConnectionPool)
    assert pool.max_connections == 50 and pool.timeout == 0.1
    kwargs = pool.connection_kwargs
    assert kwargs["socket_timeout"] == 0.1 and kwargs["socket_connect_timeout"] == 0.1
    assert kwargs["retry"].get_retries() == 0
    assert t.max_value_bytes == 8 * 2**20  # 50 MB would outlast the timeout
    assert fake_setup(clock, MAX_VALUE_BYTES=None).tier.max_value_bytes is None

    custom = fake_setup(
        clock, SOCKET_TIMEOUT=0.5, CONNECTION_POOL_CLASS="redis.ConnectionPool"
    ).tier._writer("")
    assert type(custom.connection_pool) is redis.ConnectionPool
    assert custom.connection_pool.connection_kwargs["socket_timeout"] == 0.5


def test_pools_are_shared_per_url_and_options_not_per_url(clock: FakeClock):
    server = fakeredis.FakeServer()
    kwargs = {"connection_class": fakeredis.FakeRedisConnection, "server": server}

    def pool(**options: Any) -> redis.ConnectionPool:
        options["CONNECTION_POOL_KWARGS"] = {**kwargs, **options.pop("extra", {})}
        return make_tier(FAKE_URL, clock, **options)._writer("").connection_pool

    assert pool() is pool()  # two tiers of one spec share a pool
    assert pool(extra={"max_connections": 7}).max_connections == 7
    assert pool(SOCKET_TIMEOUT=0.3) is not pool()


def test_describe_never_shows_passwords(clock: FakeClock):
    t = make_tier(
        ["redis://u:s3cret@10.0.0.1:6380/1", "redis://:s3cret@10.0.0.2/1?password=x"],
        clock,
    )
    info = t.describe()
    assert info["mode"] == "replicas" and info["name"] == "l2"
    assert "s3cret" not in repr(info) and "password" not in repr(info)
    assert info["location"][0] == "redis://u@10.0.0.1:6380/1"
    assert redact_url("redis://[::1]:7000/0") == "redis://[::1]:7000/0"


def test_unknown_compressor_is_a_configuration_error(clock: FakeClock):
    with pytest.raises(ImproperlyConfigured):
        make_tier(FAKE_URL, clock, COMPRESSOR="django_redis.compressors.zlib.Zlib")


def test_redis_options_hide_ours_and_upgrade_only_django_redis_factories():
    options = redis_options({"COMPRESSOR": "zstd", "MAX_VALUE_BYTES": 1})
    assert not options.keys() & {"COMPRESSOR", "MAX_VALUE_BYTES"}
    assert import_string(options["CONNECTION_FACTORY"]) is TieredConnectionFactory

    sentinel = redis_options(
        {"SENTINELS": [("127.0.0.1", 26379)], "CONNECTION_POOL_KWARGS": {"retry": 1}}
    )
    factory = import_string(sentinel["CONNECTION_FACTORY"])
    assert factory is TieredSentinelConnectionFactory
    assert "CONNECTION_POOL_CLASS" not in sentinel  # Sentinel pools cannot block
    assert sentinel["CONNECTION_POOL_KWARGS"] == {"retry": 1}  # the user's retry

    custom = redis_options({"CONNECTION_FACTORY": "my.Factory"})
    assert custom["CONNECTION_FACTORY"] == "my.Factory"


def test_freeze_is_order_independent_and_names_classes():
    a = freeze({"x": [1, {2, 3}], "cls": redis.ConnectionPool, "f": redact_url})
    b = freeze({"f": redact_url, "cls": redis.ConnectionPool, "x": (1, {3, 2})})
    assert a == b and hash(a) == hash(b)
    assert ("cls", "redis.connection.ConnectionPool") in a
    server = fakeredis.FakeServer()
    assert freeze(server) == freeze(server) != freeze(fakeredis.FakeServer())
