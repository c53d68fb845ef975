"""SERIALIZER: pickle (default), JSON, or a dotted path; issue 7 item 1.

What is pinned: the serializer id is written in the signed envelope flags; a
cache with SERIALIZER "json" never runs a pickle, even one signed with this
deployment's key (planted in a real Redis and in diskcache rows, with a
payload that records it if it ever runs); a pickle cache reads JSON records;
``get`` returns the JSON round trip from every tier; what JSON cannot encode
raises at ``set``; a bad SERIALIZER is a system check error with a hint.
"""

from __future__ import annotations

import json
import logging
import pickle

import pytest
import redis
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpResponse
from django.utils.safestring import mark_safe

from tests.matrix import L1, l3, real_l2
from tests.tiers.disk.support import EXECUTED, Poison, opened, plain
from tiered_cache import envelope, serializers
from tiered_cache.checks import check_tiered_caches
from tiered_cache.envelope import Record, decode, encode, materialize, new_stamp
from tiered_cache.exceptions import RefusedSerializer, UntrustedRecord
from tiered_cache.serializers import JSON, PICKLE, SerializerError
from tiered_cache.tiers import base

EVIL = pickle.dumps(Poison("x" * 40), pickle.HIGHEST_PROTOCOL)
FLAGS = 3 + 16 + 1  # offset of the flags byte: magic, tag, version


@pytest.fixture(autouse=True)
def _nothing_ran():
    EXECUTED.clear()
    yield
    assert EXECUTED == [], "a planted pickle was unpickled"


def signed_pickle(key: str, payload: bytes = EVIL) -> bytes:
    """A pickle record signed with this deployment's key (a leaked SECRET_KEY)."""
    return encode(Record(None, payload, None, new_stamp(), PICKLE), key)


# -- a custom serializer, by dotted path -----------------------------------------


class Reversed:
    """A custom serializer: JSON, reversed (so no other reader can read it)."""

    def dumps(self, value):
        return json.dumps(value).encode()[::-1]

    def loads(self, data):
        return json.loads(data[::-1])


reversed_serializer = Reversed()


class TextDumps:
    def dumps(self, value):
        return json.dumps(value)  # str, not bytes

    def loads(self, data):
        return json.loads(data)


class NeedsArguments:
    def __init__(self, level):
        self.level = level


no_loads = type("NoLoads", (), {"dumps": staticmethod(lambda value: b"")})()

# -- loading ---------------------------------------------------------------------


def test_builtin_names_and_default():
    assert serializers.load(None) is PICKLE
    assert serializers.load("pickle") is PICKLE
    assert serializers.load("json") is JSON


def test_a_dotted_path_names_an_object_a_class_or_a_module():
    for path in (
        "tests.test_serializers.reversed_serializer",
        "tests.test_serializers.Reversed",
    ):
        custom = serializers.load(path)
        assert custom.name == path
        assert custom.loads(custom.dumps({"a": [1]})) == {"a": [1]}
    module = serializers.load("tests.support.serializer_module")
    assert module.loads(module.dumps((1, "a"))) == (1, "a")


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("yaml", "neither 'pickle', 'json' nor a dotted path"),
        (42, "neither"),
        ("no.such.module.thing", "does not import"),
        ("tests.test_serializers.NeedsArguments", "cannot be built"),
        ("tests.test_serializers.no_loads", "no callable dumps"),
    ],
)
def test_a_bad_serializer_is_a_configuration_error_with_a_hint(name, problem):
    with pytest.raises(SerializerError) as caught:
        serializers.load(name)
    assert problem in str(caught.value)
    assert "json" in caught.value.hint
    assert isinstance(caught.value, ImproperlyConfigured)


def test_a_custom_dumps_must_return_bytes():
    custom = serializers.load("tests.test_serializers.TextDumps")
    with pytest.raises(TypeError, match="not bytes"):
        custom.dumps({"a": 1})


@pytest.mark.parametrize(
    "value", ["json", "tests.test_serializers.NeedsArguments", "nope.nope", 7]
)
def test_the_system_check_reports_a_bad_serializer(settings, value):
    settings.CACHES = {
        "default": {
            "BACKEND": "tiered_cache.TieredCache",
            "OPTIONS": {"TIERS": [L1], "SERIALIZER": value},
        }
    }
    messages = check_tiered_caches()
    if value == "json":
        assert messages == []
        return
    (error,) = messages
    assert error.id == "tiered_cache.E001"
    assert "SERIALIZER" in error.msg and "'json'" in error.hint


def test_a_bad_serializer_does_not_raise_from_the_constructor():
    from tiered_cache.backend import TieredCache

    options = {"TIERS": [L1], "SERIALIZER": "no.such.serializer"}
    cache = TieredCache("", {"OPTIONS": options})  # no traceback here
    with pytest.raises(ImproperlyConfigured, match="SERIALIZER"):
        cache.get("k")


def test_a_tier_serializer_option_points_to_the_cache_option(settings):
    settings.CACHES = {
        "default": {
            "BACKEND": "tiered_cache.TieredCache",
            "OPTIONS": {
                "TIERS": [
                    L1,
                    {
                        "NAME": "l2",
                        "BACKEND": "django_redis.cache.RedisCache",
                        "LOCATION": "redis://127.0.0.1:6399/0",
                        "OPTIONS": {"SERIALIZER": "x.JSONSerializer"},
                    },
                ]
            },
        }
    }
    (warning,) = check_tiered_caches()
    assert warning.id == "tiered_cache.W009"
    assert "TieredCache entry" in warning.hint


# -- the envelope ------------------------------------------------------------------


def test_the_serializer_id_is_in_the_signed_flags():
    pickled = encode(Record.for_value({"a": 1}, None), "k")
    as_json = encode(Record.for_value({"a": 1}, None, JSON), "k")
    assert pickled[FLAGS] == 0  # what every record written before looks like
    assert as_json[FLAGS] == 0x04
    assert as_json[envelope.HEADER_SIZE :] == b'{"a":1}'
    flipped = bytearray(as_json)
    flipped[FLAGS] = 0  # claim pickle: the tag no longer matches
    with pytest.raises(UntrustedRecord):
        decode(bytes(flipped), "k", PICKLE)


def test_a_json_reader_refuses_a_signed_pickle_before_running_it():
    data = signed_pickle("k")
    with pytest.raises(RefusedSerializer, match="pickle record"):
        decode(data, "k", JSON)
    compressed = encode(
        Record(None, EVIL * 40, None, 1, PICKLE), "k", compress_min_bytes=10
    )
    assert compressed[FLAGS] & 3  # refused before it is even decompressed
    with pytest.raises(RefusedSerializer):
        decode(compressed, "k", JSON)


def test_a_pickle_reader_reads_json_records():
    data = encode(Record.for_value({"t": (1, 2)}, None, JSON), "k")
    record = decode(data, "k", PICKLE)
    assert record.serializer is JSON
    assert materialize(record) == {"t": [1, 2]}


def test_custom_records_are_read_by_that_serializer_only():
    custom = serializers.load("tests.test_serializers.reversed_serializer")
    data = encode(Record.for_value([1, "a"], None, custom), "k")
    assert data[FLAGS] == 0x08
    assert materialize(decode(data, "k", custom)) == [1, "a"]
    for other in (PICKLE, JSON):
        with pytest.raises(RefusedSerializer):
            decode(data, "k", other)
    with pytest.raises(RefusedSerializer):
        decode(signed_pickle("k"), "k", custom)


def test_reserved_flag_bits_are_refused():
    record = Record.for_value("v", None, JSON)
    signed = envelope._FIELDS.pack(envelope.FORMAT_VERSION, 0x10, 0.0, 1) + b'"v"'
    data = envelope.MAGIC + envelope._tag(envelope.keys()[0], signed, "k") + signed
    assert materialize(decode(encode(record, "k"), "k", JSON)) == "v"
    for reader in (PICKLE, JSON):
        with pytest.raises(RefusedSerializer, match="flags 0x10"):
            decode(data, "k", reader)


def test_json_text_never_parses_as_a_pickle():
    """Bytes of a JSON record fed to pickle fail at the first opcode."""
    starts = [{"a": 1}, [1.5], "s", True, False, None, -1, float("nan")]
    starts += [float("inf"), -float("inf"), *range(10)]  # every first byte
    for value in starts:
        with pytest.raises(Exception):  # noqa: B017, PT011
            pickle.loads(JSON.dumps(value))


def test_a_tier_built_record_takes_the_tier_serializer():
    # incr's results and copies are built by tiers from live values.
    data = encode(Record(2**70, None, None, 1), "k", serializer=JSON)
    assert data[FLAGS] == 0x04
    assert materialize(decode(data, "k", JSON)) == 2**70


def test_json_round_trip_semantics():
    value = {"tuple": (1, 2), "nan": float("inf"), "text": "é\udc80", 1: "int key"}
    back = JSON.loads(JSON.dumps(value))
    assert back == {
        "tuple": [1, 2],
        "nan": float("inf"),
        "text": "é\udc80",
        "1": "int key",
    }


@pytest.mark.parametrize(
    "value",
    [b"bytes", {1, 2}, object(), HttpResponse("page"), {("tuple", "key"): 1}],
)
def test_what_json_cannot_encode_raises_type_error(value):
    with pytest.raises(TypeError, match="SERIALIZER 'json'"):
        Record.for_value(value, None, JSON)


def test_a_circular_value_raises_value_error():
    loop: list = []
    loop.append(loop)
    with pytest.raises(ValueError, match="Circular"):
        Record.for_value(loop, None, JSON)


# -- through the backend, in every tier ---------------------------------------------


VALUE = {"tuple": (1, [2, 3]), "text": mark_safe("<b>ok</b>"), "n": 2**70}
ROUND_TRIP = {"tuple": [1, [2, 3]], "text": "<b>ok</b>", "n": 2**70}


def answers(cache, key):
    """Return ``get`` from L1, from L2 (L1's copy dropped), from L1 again (the
    promoted copy), and L3's record of ``key`` read as a hit would be."""
    final = cache.stored_key(key)
    first = cache.get(key, "MISS")
    cache.tier("l1").delete(final)
    from_l2 = cache.get(key, "MISS")
    promoted = cache.get(key, "MISS")
    opened(cache.tier("l3"))  # a copy is trusted once the marks cache is open
    record = cache.tier("l3").get(final)
    return [first, from_l2, promoted, materialize(record)]


def test_json_round_trips_the_same_from_every_tier(make_cache, redis_url, tmp_path):
    cache = make_cache(
        [L1, real_l2(redis_url), l3(str(tmp_path / "l3"))],
        SERIALIZER="json",
        INVALIDATION=False,  # L3's copies are trusted at once
    )
    for key, value, expected in [
        ("dict", VALUE, ROUND_TRIP),
        ("tuple", (1, "a"), [1, "a"]),
        ("safe", mark_safe("<i>"), "<i>"),
        ("float", 1.5, 1.5),
        ("none", None, None),
        ("big", 2**70, 2**70),
    ]:
        cache.set(key, value)
        got = answers(cache, key)
        assert got == [expected] * 4, key
        assert {type(answer) for answer in got} == {type(expected)}, key


@pytest.mark.parametrize("tiers", ["l1", "l3"])
def test_json_in_local_tiers(make_cache, tmp_path, tiers):
    specs = [L1] if tiers == "l1" else [l3(str(tmp_path / "l3"))]
    cache = make_cache(specs, SERIALIZER="json")
    cache.set("k", VALUE)
    assert cache.get("k") == ROUND_TRIP
    got = cache.get("k")
    got["tuple"].append("mutated")  # a caller's copy, not the cached one
    assert cache.get("k") == ROUND_TRIP


def test_json_write_api(make_cache, redis_url, tmp_path):
    cache = make_cache(
        [L1, real_l2(redis_url), l3(str(tmp_path / "l3"))], SERIALIZER="json"
    )
    assert cache.add("a", (1,)) is True
    assert cache.get("a") == [1]
    assert cache.set_many({"b": (2,), "c": {"x": (3,)}}) == []
    assert cache.get_many(["a", "b", "c"]) == {"a": [1], "b": [2], "c": {"x": [3]}}
    assert cache.get_or_set("d", lambda: (4, 5)) == [4, 5]
    assert cache.get_or_set("e", (6,)) == [6]
    cache.set("n", 5)
    assert cache.incr("n", 2) == 7  # raw ints: never serialized
    assert redis.Redis.from_url(redis_url).get(cache.stored_key("n")) == b"7"
    cache.set("big", 2**63 - 1)
    assert cache.incr("big", 10) == 2**63 + 9  # past 64 bits: a JSON envelope
    stored = redis.Redis.from_url(redis_url).get(cache.stored_key("big"))
    assert stored[FLAGS] == 0x04
    cache.tier("l1").delete(cache.stored_key("big"))
    assert cache.get("big") == 2**63 + 9


def test_what_json_cannot_encode_raises_at_every_write(make_cache, tmp_path):
    cache = make_cache([L1, l3(str(tmp_path / "l3"))], SERIALIZER="json")
    cache.set("k", "old")
    for write in (
        lambda: cache.set("k", b"bytes"),
        lambda: cache.set("k", HttpResponse("page"), 0),
        lambda: cache.add("k", {1, 2}),
        lambda: cache.set_many({"ok": 1, "k": object()}),
        lambda: cache.get_or_set("new", lambda: b"bytes"),
    ):
        with pytest.raises(TypeError, match="JSON data only"):
            write()
    assert cache.get("k") == "old"
    assert cache.get("ok") is None  # set_many stored nothing
    assert cache.get("new") is None


def test_cache_page_with_json_is_a_clear_error(settings, rf, tmp_path):
    from django.core.cache import caches
    from django.views.decorators.cache import cache_page

    settings.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
        "data": {
            "BACKEND": "tiered_cache.TieredCache",
            "OPTIONS": {"TIERS": [L1], "SERIALIZER": "json"},
        },
    }

    @cache_page(60, cache="data")
    def view(request):
        return HttpResponse("page")

    with pytest.raises(TypeError, match="cache_page"):
        view(rf.get("/"))
    caches["data"].close()


# -- pickle and JSON caches over the same keys ---------------------------------------


def pair(make_cache, tiers):
    """A pickle cache and a JSON cache over the same tiers and keys."""
    return (
        make_cache(tiers, KEY_PREFIX="shared"),
        make_cache(tiers, KEY_PREFIX="shared", SERIALIZER="json"),
    )


@pytest.mark.parametrize("below", ["l2", "l3"])
def test_a_json_record_is_read_by_a_pickle_cache(
    make_cache, redis_url, tmp_path, below
):
    tier = real_l2(redis_url) if below == "l2" else l3(str(tmp_path / "l3"))
    by_pickle, by_json = pair(make_cache, [L1, tier])
    by_json.set("k", {"t": (1, 2)})
    assert by_pickle.get("k") == {"t": [1, 2]}  # from below, promoted
    assert by_pickle.get("k") == {"t": [1, 2]}  # from L1
    assert by_pickle.stats()[below]["hits"] == 1
    assert by_pickle.stats()["l1"]["hits"] == 1
    copy = by_pickle.tier("l1").get(by_pickle.stored_key("k"))  # raw access
    assert copy.serializer is JSON and materialize(copy) == {"t": [1, 2]}


def test_a_pickle_record_is_a_counted_logged_miss_for_json(
    make_cache, redis_url, tmp_path, caplog
):
    tiers = [L1, real_l2(redis_url), l3(str(tmp_path / "l3"))]
    by_pickle, by_json = pair(make_cache, tiers)
    base._throttle.reset()
    by_pickle.set("k", {"t": (1, 2)})
    by_pickle.tier("l3").drain()  # its L3 copy is written behind the call
    with caplog.at_level(logging.WARNING):
        assert by_json.get("k", "MISS") == "MISS"
    assert by_json.stats()["l2"]["rejected"] == 1
    assert by_json.stats()["l3"]["rejected"] == 1
    assert by_json.stats()["l2"]["poison_rejected"] == 0  # signed: not poison
    assert any("SERIALIZER 'json'" in r.getMessage() for r in caplog.records)
    by_json.set("k", [1])  # a JSON cache replaces it
    by_pickle.tier("l1").delete(by_pickle.stored_key("k"))  # (the bus is async)
    assert by_pickle.get("k") == [1]


@pytest.fixture
def raw(redis_url, clean_redis):
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


def test_signed_pickles_planted_in_redis_never_run_in_a_json_cache(
    make_cache, redis_url, raw
):
    cache = make_cache([L1, real_l2(redis_url)], SERIALIZER="json")
    for key in ("plain", "counter"):
        raw.set(cache.stored_key(key), signed_pickle(cache.stored_key(key)))
    assert cache.get("plain") is None
    assert cache.get_many(["plain"]) == {}
    assert cache.get_or_set("plain", lambda: "computed") == "computed"
    with pytest.raises(ValueError, match="not found"):
        cache.incr("counter")  # incr past 64 bits reads envelopes too
    assert cache.stats()["l2"]["rejected"] >= 4
    assert cache.stats()["l2"]["hits"] == 0


def test_signed_pickles_planted_in_diskcache_never_run_in_a_json_cache(
    make_cache, tmp_path
):
    spec = l3(str(tmp_path / "l3"))
    spec["OPTIONS"] = {**spec["OPTIONS"], "shards": 1}
    cache = make_cache([L1, spec], SERIALIZER="json")
    rows = plain(tmp_path / "l3")

    def plant(key):
        cache.set(key, "legit")  # (opens the directory)
        cache.tier("l1").delete(cache.stored_key(key))
        rows.set(cache.stored_key(key), signed_pickle(cache.stored_key(key)))

    plant("k")
    assert cache.get("k") is None
    assert rows.get(cache.stored_key("k")) is None  # refused and dropped
    plant("k")
    assert cache.get_many(["k"]) == {}
    plant("k")
    with pytest.raises(ValueError, match="not found"):
        cache.incr("k")
    assert cache.stats()["l3"]["rejected"] == 3
    assert cache.stats()["l3"]["hits"] == 0


def test_the_default_stays_pickle(make_cache, redis_url, raw):
    cache = make_cache([L1, real_l2(redis_url)])
    cache.set("k", (1, b"bytes"))
    assert raw.get(cache.stored_key("k"))[FLAGS] == 0
    cache.tier("l1").delete(cache.stored_key("k"))
    assert cache.get("k") == (1, b"bytes")
