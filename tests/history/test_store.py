"""The history store: a bounded log and name table in L2 (real Redis) or L3."""

from __future__ import annotations

import pytest

from tests.matrix import L1, l3, real_l2
from tiered_cache.history.options import parse_history
from tiered_cache.history.store import (
    DiskHistoryStore,
    HistoryStore,
    RedisHistoryStore,
    history_store_for,
)

OPTIONS = parse_history({"MAX_RECORDS": 3, "MAX_KEYS": 2})


def accesses(n, start=0):
    return [(i, 1000.0 + i, 10, i % 2 == 0, "l1") for i in range(start, start + n)]


@pytest.fixture(params=["local", "l3", "l2"])
def store(request, tmp_path, make_cache):
    if request.param == "local":
        return HistoryStore(OPTIONS)
    if request.param == "l3":
        cache = make_cache([L1, l3(str(tmp_path / "l3"))])
    else:
        server = request.getfixturevalue("redis_server")
        cache = make_cache([L1, real_l2(server.url(0))], INVALIDATION=False)
    return history_store_for(OPTIONS, "a", cache.namespace, cache.tiers)


def test_the_store_is_l2_else_l3_else_local(store):
    kinds = {HistoryStore: "local", DiskHistoryStore: "l3", RedisHistoryStore: "l2"}
    assert store.kind == kinds[type(store)]


def test_the_log_is_a_ring_of_max_records(store):
    store.append(accesses(2), {})
    store.append(accesses(2, start=2), {})
    assert store.read().accesses == accesses(3, start=1)


def test_names_keep_the_newest_max_keys(store):
    store.append([], {1: "a"})
    store.append([], {2: "b"})
    store.append([], {3: "c"})
    names = store.read().names
    assert names == {2: "b", 3: "c"} or (store.kind == "l2" and len(names) == 2)


def test_fields_are_put_read_and_removed(store):
    store.put("warm|set", "[]")
    store.put("mrc|p1", "{}")
    assert store.get("warm|set") == "[]"
    assert store.fields("mrc|") == {"mrc|p1": "{}"}
    store.remove("warm|set")
    assert store.get("warm|set") is None
