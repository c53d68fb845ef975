"""The conformance suite: Django's cache semantics, run over the config matrix.

Follows the behaviour pinned by ``BaseCacheTests`` in Django's
``tests/cache/tests.py`` (5.2), plus what tiers add: promotion with the
remaining lifetime, isolation from mutation, shared L1 across threads. Expiry
is tested by moving the fake clock, never by sleeping. After each test the
``make_cache`` fixture asserts ``cache.check()`` finds no broken invariant.
"""

from __future__ import annotations

import asyncio
import pickle
import threading
from decimal import Decimal

import pytest
from django.core.cache.backends.base import CacheKeyWarning
from django.utils.safestring import SafeString

from tiered_cache.sentinels import MISSING


class Unpicklable:
    def __getstate__(self):
        raise pickle.PickleError("not today")


DATA_TYPES = {
    "string": "this is a string",
    "int": 42,
    "bool": True,
    "float": 1.5,
    "decimal": Decimal("1.10"),
    "list": [1, 2, "three"],
    "dict": {"a": [1, 2], "b": {"c": None}},
    "tuple": (1, [2]),
    "bytes": b"\x00\xff binary",
    "none": None,
    "unicode": "Iñtërnâtiônàlizætiøn ✓",
}


def test_get_missing_returns_default(cache):
    assert cache.get("nope") is None
    assert cache.get("nope", "dflt") == "dflt"


@pytest.mark.parametrize("name", sorted(DATA_TYPES))
def test_set_get_round_trips_every_type(cache, name):
    value = DATA_TYPES[name]
    cache.set(name, value)
    assert cache.get(name, "MISS") == value
    assert type(cache.get(name, "MISS")) is type(value)


def test_cached_none_is_a_hit(cache):
    cache.set("n", None)
    assert cache.get("n", "default") is None
    assert cache.has_key("n")
    assert "n" in cache


def test_falsy_values_are_hits(cache):
    for key, value in {"zero": 0, "false": False, "empty": "", "list": []}.items():
        cache.set(key, value)
        assert cache.get(key, "MISS") == value


def test_default_timeout_expires(cache, clock):
    cache.set("k", "v")
    clock.advance(299)
    assert cache.get("k") == "v"
    clock.advance(2)
    assert cache.get("k") is None
    assert not cache.has_key("k")


def test_explicit_and_float_timeouts(cache, clock):
    cache.set("a", 1, timeout=10)
    cache.set("b", 2, timeout=10.5)
    clock.advance(10.2)
    assert cache.get("a") is None
    assert cache.get("b") == 2
    clock.advance(0.5)
    assert cache.get("b") is None


def test_timeout_none_never_expires(cache, clock):
    cache.set("forever", "v", timeout=None)
    clock.advance(10 * 365 * 86400)
    assert cache.get("forever") == "v"
    assert cache.add("forever", "other", timeout=None) is False


def test_zero_and_negative_timeout_do_not_store(cache):
    cache.set("k", "old")
    cache.set("k", "new", 0)
    assert cache.get("k") is None
    cache.set("neg", "v", -5)
    assert cache.get("neg") is None
    assert cache.add("added", "v", 0) is True
    assert cache.get("added") is None
    cache.set_many({"m1": 1, "m2": 2}, 0)
    assert cache.get_many(["m1", "m2"]) == {}


def test_long_timeout(cache, clock):
    cache.set("long", "v", 60 * 60 * 24 * 30 + 1)
    cache.set("huge", "v", 2**32)
    clock.advance(60 * 60 * 24 * 30)
    assert cache.get("long") == "v"
    assert cache.get("huge") == "v"


@pytest.mark.parametrize("timeout", ["10", object(), [1]])
def test_bad_timeout_type_raises(cache, timeout):
    with pytest.raises(TypeError):
        cache.set("k", "v", timeout)


def test_add(cache, clock):
    assert cache.add("k", "first") is True
    assert cache.add("k", "second") is False
    assert cache.get("k") == "first"
    clock.advance(301)
    assert cache.add("k", "third") is True
    assert cache.get("k") == "third"


def test_delete(cache):
    cache.set("k", "v")
    assert cache.delete("k") is True
    assert cache.get("k") is None
    assert cache.delete("k") is False


def test_touch(cache, clock):
    cache.set("k", "v", timeout=10)
    assert cache.touch("k", 100) is True
    clock.advance(50)
    assert cache.get("k") == "v"
    assert cache.touch("k", None) is True
    clock.advance(1000)
    assert cache.get("k") == "v"
    assert cache.touch("missing") is False
    assert cache.touch("k", 0) is True
    assert cache.get("k") is None


def test_get_set_delete_many(cache):
    assert cache.set_many({"a": 1, "b": "two", "c": [3]}) == []
    assert cache.get_many(["a", "b", "c", "d"]) == {"a": 1, "b": "two", "c": [3]}
    assert cache.get_many([]) == {}
    cache.delete_many(["a", "c", "nope"])
    assert cache.get_many(["a", "b", "c"]) == {"b": "two"}
    cache.delete_many([])
    assert cache.set_many({}) == []


def test_incr_decr(cache):
    cache.set("n", 1)
    assert cache.incr("n") == 2
    assert cache.incr("n", 10) == 12
    assert cache.get("n") == 12
    assert cache.decr("n") == 11
    assert cache.decr("n", 5) == 6
    assert cache.get("n") == 6
    with pytest.raises(ValueError):
        cache.incr("missing")
    with pytest.raises(ValueError):
        cache.decr("missing")
    assert cache.get("missing") is None


def test_incr_keeps_ttl(cache, clock):
    # Checked on the stored expiry, not by moving the clock: Redis keeps raw
    # integers under its own TTL, which a fake clock cannot move.
    cache.set("n", 1, timeout=10)
    cache.incr("n")
    final = cache.stored_key("n")
    records = [t.get(final) for t in cache.tiers]
    records = [r for r in records if r is not MISSING]
    assert records
    for record in records:
        assert abs(record.expires_at - (clock.now + 10)) < 1


def test_incr_of_a_string_raises_type_error(cache):
    cache.set("s", "text")
    with pytest.raises(TypeError):
        cache.incr("s")


def test_get_or_set(cache):
    assert cache.get_or_set("k", "v") == "v"
    assert cache.get_or_set("k", "other") == "v"
    assert cache.get_or_set("c", lambda: "computed") == "computed"
    assert cache.get_or_set("none", None) is None
    calls = []

    def compute():
        calls.append(1)
        return "x"

    cache.get_or_set("once", compute)
    cache.get_or_set("once", compute)
    assert calls == [1]


def test_versions(cache):
    cache.set("k", "v1", version=1)
    cache.set("k", "v2", version=2)
    assert cache.get("k") == "v1"
    assert cache.get("k", version=2) == "v2"
    assert cache.incr_version("k", version=2) == 3
    assert cache.get("k", version=3) == "v2"
    assert cache.get("k", version=2) is None
    assert cache.decr_version("k", version=3) == 2
    assert cache.get("k", version=2) == "v2"
    with pytest.raises(ValueError):
        cache.incr_version("missing")


def test_clear_removes_only_this_caches_keys(cache, make_cache, tiers):
    other = make_cache(tiers)
    cache.set("a", 1)
    other.set("a", 2)
    cache.clear()
    assert cache.get("a") is None
    assert other.get("a") == 2


def test_keys_are_namespaced_by_prefix(cache, make_cache, tiers):
    other = make_cache(tiers)
    cache.set("k", "mine")
    assert other.get("k") is None
    assert not other.has_key("k")


def test_same_configuration_shares_data(cache, make_cache, tiers):
    twin = make_cache(tiers, KEY_PREFIX=cache.key_prefix)
    cache.set("k", "v")
    assert twin.get("k") == "v"


@pytest.mark.parametrize(
    ("key", "message"),
    [
        ("key with spaces", "contains characters"),
        ("a" * 251, "longer than 250"),
        ("nul\x00key", "contains characters"),
    ],
)
def test_bad_keys_warn_like_django(cache, key, message):
    for call in (
        lambda: cache.set(key, 1),
        lambda: cache.get(key),
        lambda: cache.get_many([key]),
        lambda: cache.delete(key),
        lambda: cache.touch(key),
        lambda: cache.add(key, 1),
    ):
        with pytest.warns(CacheKeyWarning, match=message):
            call()


def test_unpicklable_value_raises_at_set(cache):
    with pytest.raises(pickle.PickleError):
        cache.set("u", Unpicklable())
    with pytest.raises(pickle.PickleError):
        cache.add("u", Unpicklable())
    with pytest.raises(pickle.PickleError):
        cache.set_many({"u": Unpicklable()})
    assert cache.get("u") is None


def test_local_objects_raise_as_unpicklable_not_attribute_error(cache):
    class Local:
        pass

    def local():
        pass

    for value in (Local(), local, Local):
        with pytest.raises(pickle.PicklingError, match="cannot cache"):
            cache.set("u", value)
    with pytest.raises(TypeError):
        cache.set("u", threading.Lock())
    assert cache.get("u") is None


def test_values_are_isolated_from_mutation(cache):
    value = {"list": [1, 2]}
    cache.set("k", value)
    value["list"].append(3)
    got = cache.get("k")
    assert got == {"list": [1, 2]}
    got["list"].append(4)
    assert cache.get("k") == {"list": [1, 2]}
    assert cache.get_many(["k"]) == {"k": {"list": [1, 2]}}


def test_threads_share_data(cache, make_cache, tiers):
    seen = []

    def reader():
        twin = make_cache(tiers, KEY_PREFIX=cache.key_prefix)
        seen.append(twin.get("k"))

    cache.set("k", "from main thread")
    thread = threading.Thread(target=reader)
    thread.start()
    thread.join()
    assert seen == ["from main thread"]


def test_async_variants(cache):
    async def scenario():
        await cache.aset("k", "v")
        assert await cache.aget("k") == "v"
        assert await cache.aadd("k", "x") is False
        assert await cache.ahas_key("k")
        await cache.aset_many({"a": 1, "b": 2})
        assert await cache.aget_many(["a", "b"]) == {"a": 1, "b": 2}
        assert await cache.aincr("a") == 2
        assert await cache.adecr("a") == 1
        assert await cache.atouch("k", 10)
        assert await cache.aget_or_set("g", "gv") == "gv"
        assert await cache.adelete("k")
        await cache.adelete_many(["a", "b"])
        assert await cache.aget_many(["a", "b"]) == {}
        await cache.aset("v", 1)
        assert await cache.aincr_version("v") == 2
        assert await cache.adecr_version("v", version=2) == 1
        await cache.aclear()
        assert await cache.aget("g") is None
        await cache.aclose()

    asyncio.run(scenario())


def test_close_keeps_data(cache):
    cache.set("k", "v")
    cache.close()
    assert cache.get("k") == "v"


def test_promotion_keeps_the_remaining_lifetime(cache, clock):
    if len(cache.tiers) < 2:
        pytest.skip("a single tier has nothing to promote into")
    top = cache.tiers[0]
    final = cache.stored_key("k")
    cache.set("k", {"v": 1}, timeout=100)
    expires = clock() + 100
    top.delete(final)
    clock.advance(30)
    assert cache.get("k") == {"v": 1}
    promoted = top.get(final)
    assert promoted is not MISSING
    assert abs(promoted.expires_at - expires) < 1e-3  # never extended
    clock.advance(71)
    assert cache.get("k") is None


HOSTILE_KEYS = [
    "",
    "k" * 250,
    "k" * 251,
    "k" * 10_000,
    "k" * 2**20,
    "with spaces",
    "line\r\nbreak",
    "nul\x00byte",
    "lone \ud800 surrogate",
    "caf\u00e9",  # composed
    "cafe\u0301",  # decomposed twin
    "a*",
    "a?",
    "[ab]",
    "back\\slash",
    7,
    b"bytes",
]


@pytest.mark.filterwarnings("ignore::django.core.cache.backends.base.CacheKeyWarning")
def test_hostile_keys_map_consistently_without_collisions(cache, make_cache, tiers):
    for index, key in enumerate(HOSTILE_KEYS):
        cache.set(key, index)
        cache.set(f"{key!r}-neighbour", "n")
    for index, key in enumerate(HOSTILE_KEYS):
        assert cache.get(key) == index, repr(key)[:40]
    twin = make_cache(tiers, KEY_PREFIX=cache.key_prefix)  # fresh instance, no memo
    assert twin.get_many(HOSTILE_KEYS) == {k: i for i, k in enumerate(HOSTILE_KEYS)}
    assert cache.delete("a*") is True
    assert cache.get("a?") == HOSTILE_KEYS.index("a?")  # no glob in our keys
    assert cache.incr(7) == HOSTILE_KEYS.index(7) + 1
    cache.clear()  # reaches hashed keys too: they stay under the namespace
    assert twin.get_many(HOSTILE_KEYS) == {}


# -- SERIALIZER "json" in every cell (tests/test_serializers.py has the rest) ----

JSON_CASES = {
    "string": ("text", "text"),
    "safe": (SafeString("<b>"), "<b>"),
    "int": (42, 42),
    "big": (2**70, 2**70),
    "float": (1.5, 1.5),
    "bool": (True, True),
    "none": (None, None),
    "list": ([1, "two"], [1, "two"]),
    "tuple": ((1, [2]), [1, [2]]),
    "dict": ({"a": (1,), 2: None}, {"a": [1], "2": None}),
}


@pytest.fixture
def json_cache(make_cache, tiers):
    return make_cache(tiers, SERIALIZER="json")


@pytest.mark.parametrize("name", sorted(JSON_CASES))
def test_json_returns_the_json_round_trip(json_cache, name):
    value, expected = JSON_CASES[name]
    json_cache.set(name, value)
    for _ in range(2):  # the first read may promote; the second reads the copy
        got = json_cache.get(name, "MISS")
        assert got == expected and type(got) is type(expected)
    assert json_cache.get_many([name]) == {name: expected}


def test_json_refuses_what_it_cannot_encode(json_cache):
    json_cache.set("k", "kept")
    for value in (b"bytes", Decimal("1.5"), {1, 2}):
        with pytest.raises(TypeError):
            json_cache.set("k", value)
        with pytest.raises(TypeError):
            json_cache.add("other", value)
    assert json_cache.get("k") == "kept"
    assert json_cache.get("other") is None


def test_json_counters_and_writes(json_cache):
    json_cache.set("n", 1)
    assert json_cache.incr("n", 4) == 5
    assert json_cache.get("n") == 5
    assert json_cache.add("a", (1,)) is True
    assert json_cache.get_or_set("a", (2,)) == [1]
    assert json_cache.set_many({"b": (2,)}) == []
    assert json_cache.get_many(["a", "b"]) == {"a": [1], "b": [2]}
