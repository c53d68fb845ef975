"""The recording ``get``: installed only with HISTORY, sampled keys only."""

from __future__ import annotations

import pytest

from tests.matrix import L1, l3
from tiered_cache.history.recorder import built_recorder


def recorder_of(cache):
    return built_recorder(cache.options)


def drained(cache):
    recorder = recorder_of(cache)
    recorder.buffer.clear()
    recorder.known.clear()
    # Shared by every test of the same configuration: start afresh.
    recorder._memos.clear()
    recorder._countdown[0] = recorder.options.read_every or 2**62
    return recorder


def test_without_history_get_is_the_plain_method(make_cache):
    cache = make_cache([L1])
    assert "get" not in vars(cache)
    assert recorder_of(cache) is None


def test_every_read_of_a_sampled_key_is_recorded_with_its_tier(
    make_cache, tmp_path, clock
):
    cache = make_cache([L1, l3(str(tmp_path / "l3"))], HISTORY={"SAMPLE_RATE": 1.0})
    recorder = drained(cache)
    cache.set("p:1", "x" * 50)
    cache.tier("l1").delete(cache.stored_key("p:1"))
    assert cache.get("p:1") == "x" * 50  # from L3
    assert cache.get("p:1") == "x" * 50  # from L1 now
    assert cache.get("p:2", "dflt") == "dflt"
    accesses = list(recorder.buffer)
    assert [(a[3], a[4]) for a in accesses] == [(True, "l3"), (True, "l1"), (False, "")]
    assert accesses[0][1] == clock.now
    assert accesses[0][2] > 50 and accesses[2][2] == 0
    assert set(recorder.known.values()) == {"p:1", "p:2"}


def test_keys_outside_the_sample_are_not_recorded(make_cache):
    cache = make_cache([L1], HISTORY={"SAMPLE_RATE": 1e-12, "READ_EVERY": 0})
    recorder = drained(cache)
    cache.set("k", 1)
    assert cache.get("k") == 1
    assert cache.get("missing", 2) == 2
    assert list(recorder.buffer) == [] and recorder.known == {}


def test_keys_with_a_version_or_not_str_are_read_but_not_recorded(make_cache):
    cache = make_cache([L1], HISTORY={"SAMPLE_RATE": 1.0})
    recorder = drained(cache)
    cache.set("k", 1, version=3)
    assert cache.get("k", version=3) == 1
    assert list(recorder.buffer) == []


def test_the_buffer_is_bounded_and_keeps_the_newest(make_cache):
    cache = make_cache([L1], HISTORY={"SAMPLE_RATE": 1.0, "BUFFER": 3})
    recorder = drained(cache)
    for i in range(5):
        cache.get(f"k{i}")
    assert len(recorder.buffer) == 3
    assert [recorder.known[a[0]] for a in recorder.buffer] == ["k2", "k3", "k4"]


def test_drain_empties_the_buffer_and_feeds_the_curve(make_cache):
    cache = make_cache([L1], HISTORY={"SAMPLE_RATE": 1.0})
    recorder = drained(cache)
    recorder.curve.__init__(1.0)
    cache.set("a", 1)
    for _ in range(3):
        cache.get("a")
    accesses, names = recorder.drain()
    assert len(accesses) == 3 and list(names.values()) == ["a"]
    assert list(recorder.buffer) == []
    assert recorder.curve.hit_ratios([1]) == [pytest.approx(2 / 3)]
    cache.get("a")
    # Every drain names the keys its reads are of: a hot key's name stays
    # fresh in the store's side table.
    assert recorder.drain()[1] == names


@pytest.mark.parametrize(
    "history",
    [
        {"SAMPLE_RATE": 0},
        {"SAMPLE_RATE": 2},
        {"MAX_RECORDS": 0},
        {"READ_EVERY": -1},
        {"NOPE": 1},
        "yes",
    ],
)
def test_bad_history_options_are_refused(history):
    from django.core.exceptions import ImproperlyConfigured

    from tiered_cache.conf import parse_options

    with pytest.raises(ImproperlyConfigured):
        parse_options({"TIERS": [L1], "HISTORY": history})


def test_a_forked_child_does_not_send_its_parents_reads(make_cache):
    import os

    cache = make_cache([L1], HISTORY={"SAMPLE_RATE": 1.0})
    recorder = drained(cache)
    cache.get("k")
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report what its buffer holds, then leave
        os.write(write, str(len(recorder.buffer)).encode())
        os._exit(0)
    os.waitpid(pid, 0)
    assert os.read(read, 16) == b"0"
    assert len(recorder.buffer) == 1  # the parent keeps them


def test_one_read_in_read_every_of_other_keys_is_recorded(make_cache):
    cache = make_cache([L1], HISTORY={"SAMPLE_RATE": 1e-12, "READ_EVERY": 3})
    recorder = drained(cache)
    recorder.curve.__init__(1e-12)
    cache.set("hot", 1)
    for _ in range(7):  # the first read decides the key is outside the sample
        assert cache.get("hot") == 1
    assert [(a[3], a[4]) for a in recorder.buffer] == [(True, "l1")] * 2
    assert list(recorder.known.values()) == ["hot"]
    accesses, names = recorder.drain()
    assert list(names.values()) == ["hot"]
    assert recorder.curve.accesses == 0  # only the spatial sample feeds the curve


def test_read_every_0_records_no_other_key(make_cache):
    cache = make_cache([L1], HISTORY={"SAMPLE_RATE": 1e-12, "READ_EVERY": 0})
    recorder = drained(cache)
    for _ in range(50):
        cache.get("k")
    assert list(recorder.buffer) == []


def test_instances_of_one_cache_share_the_memo_and_the_countdown(clock):
    # Under ASGI Django builds a backend instance per request.
    from tiered_cache.backend import TieredCache

    params = {
        "KEY_PREFIX": "twins",
        "OPTIONS": {
            "CLOCK": clock,
            "TIERS": [L1],
            "HISTORY": {"SAMPLE_RATE": 1e-12, "READ_EVERY": 3},
        },
    }
    first, second = TieredCache("", params), TieredCache("", params)
    recorder = drained(first)
    for cache in (first, second):
        for _ in range(5):
            cache.get("hot")
    # 10 reads: the first decides, and one in three of the other 9 is recorded
    # (per instance it would be one in each: the countdown restarting).
    assert len(recorder.buffer) == 3
