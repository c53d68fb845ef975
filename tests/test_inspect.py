"""``TieredCache.inspect``: where a key is held, uncounted, values only on request."""

from __future__ import annotations

import pytest

from tests.matrix import L1, l3, real_l2
from tiered_cache.envelope import Record

UNPICKLED: list[int] = []


def _unpickle(n: int) -> int:
    UNPICKLED.append(n)
    return n


class Tracked:
    def __reduce__(self):
        return _unpickle, (7,)


def test_inspect_reports_ttl_and_size_per_tier_without_counting(
    make_cache, tmp_path, clock
):
    cache = make_cache([L1, l3(str(tmp_path))])
    cache.set("k", "value", timeout=100)
    clock.advance(40)
    before = cache.stats()
    held = cache.inspect("k")
    assert set(held) == {"l1", "l3"}
    assert held["l3"]["ttl"] == pytest.approx(60)
    size = Record.for_value("value", None).size
    assert held["l1"]["size"] == held["l3"]["size"] == size
    assert "value" not in held["l1"]
    assert cache.stats() == before  # no hit, miss or promotion counted


def test_inspect_leaves_out_tiers_without_the_key(make_cache, tmp_path):
    cache = make_cache([L1, l3(str(tmp_path))])
    cache.set("k", 1, timeout=None)
    cache.tier("l1").clear(cache.namespace)
    assert cache.inspect("k") == {"l3": {"ttl": None, "size": 8}}
    assert cache.inspect("absent") == {}
    assert cache.get("k") == 1


def test_inspect_unpickles_only_when_asked(make_cache, tmp_path):
    cache = make_cache([L1, l3(str(tmp_path))])
    cache.set("k", Tracked())
    cache.tier("l1").clear(cache.namespace)
    UNPICKLED.clear()
    assert "value" not in cache.inspect("k")["l3"]
    assert UNPICKLED == []
    assert cache.inspect("k", values=True)["l3"]["value"] == 7
    assert UNPICKLED == [7]


def test_inspect_honours_version(make_cache):
    cache = make_cache([L1])
    cache.set("k", "v2", version=2)
    assert cache.inspect("k") == {}
    assert set(cache.inspect("k", version=2)) == {"l1"}


def test_inspect_marks_a_tier_that_does_not_answer(make_cache, tmp_path):
    from tests.support.redis_servers import find_free_port

    dead = real_l2(f"redis://127.0.0.1:{find_free_port()}/0")
    dead["OPTIONS"] = {"SOCKET_CONNECT_TIMEOUT": 0.2, "SOCKET_TIMEOUT": 0.2}
    cache = make_cache([L1, dead])
    cache.set("k", "v")
    assert cache.inspect("k") == {
        "l1": {"ttl": pytest.approx(300), "size": Record.for_value("v", None).size},
        "l2": {"error": "unavailable"},
    }
