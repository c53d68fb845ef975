"""Read/write paths across tiers: promotion, placement, staleness, authority."""

from __future__ import annotations

import pytest

from tiered_cache.envelope import Record
from tiered_cache.sentinels import MISSING

L1 = {"NAME": "l1", "BACKEND": "tiered_cache.tiers.MemoryTier"}
L2 = {"NAME": "l2", "BACKEND": "tests.doubles.RecordingTier"}


def l1_small(limit: int) -> dict:
    return {**L1, "OPTIONS": {"MAX_VALUE_BYTES": limit}}


@pytest.fixture
def two(make_cache):
    return make_cache([L1, L2])


def test_lower_hit_is_promoted_with_remaining_lifetime(two, clock):
    two.set("k", {"v": 1}, timeout=100)
    final = two.stored_key("k")
    expires = two.tier("l2").get(final).expires_at
    two.tier("l1").delete(final)
    clock.advance(40)
    assert two.get("k") == {"v": 1}
    promoted = two.tier("l1").get(final)
    assert promoted is not MISSING
    assert promoted.expires_at == expires  # remaining lifetime, never extended
    assert two.tier("l1").stats.promotions == 1
    clock.advance(61)
    assert two.get("k") is None


def test_get_many_promotes(two):
    two.set_many({"a": 1, "b": 2})
    for key in ("a", "b"):
        two.tier("l1").delete(two.stored_key(key))
    assert two.get_many(["a", "b", "c"]) == {"a": 1, "b": 2}
    assert two.tier("l1").has_key(two.stored_key("a"))
    assert two.tier("l1").stats.promotions == 2


def test_promotion_never_replaces_a_newer_write(two):
    final = two.stored_key("k")
    old = Record.for_value("old", None)
    two.set("k", "new")
    two.tier("l1").set(final, old)  # a promotion that lost the race
    assert two.get("k") == "new"


def test_expired_record_is_not_promoted(two, clock):
    final = two.stored_key("k")
    two.set("k", "v", timeout=10)
    two.tier("l1").delete(final)
    clock.advance(11)
    assert two.get("k") is None
    assert not two.tier("l1").has_key(final)


def test_big_values_skip_l1_and_drop_its_old_copy(make_cache):
    cache = make_cache([l1_small(100), L2])
    final = cache.stored_key("k")
    cache.set("k", "small")
    assert cache.tier("l1").has_key(final)
    cache.set("k", "x" * 1000)
    assert not cache.tier("l1").has_key(final)
    assert cache.get("k") == "x" * 1000
    assert not cache.tier("l1").has_key(final)  # not promoted either
    cache.set_many({"k": "y" * 1000, "s": "small"})
    assert cache.get_many(["k", "s"]) == {"k": "y" * 1000, "s": "small"}
    assert cache.add("big", "z" * 1000) is True
    assert cache.tier("l1").stats.refused == 3  # set, set_many and add skipped L1


def test_value_too_big_for_every_tier_is_reported(make_cache):
    tiny_l2 = {**L2, "OPTIONS": {"MAX_VALUE_BYTES": 10}}
    cache = make_cache([l1_small(10), tiny_l2])
    cache.set("k", "x" * 100)
    assert cache.get("k") is None
    assert cache.set_many({"k": "x" * 100, "ok": 1}) == ["k"]
    assert cache.add("k", "x" * 100) is False


def test_l1_copy_trusted_at_most_max_staleness(make_cache, clock):
    cache = make_cache([L1, L2], L1_MAX_STALENESS=5)
    final = cache.stored_key("k")
    cache.set("k", "v1", timeout=None)
    # Another process writes the authority directly.
    cache.tier("l2").set(final, Record.for_value("v2", None))
    assert cache.get("k") == "v1"  # L1 still trusted
    clock.advance(5)
    assert cache.get("k") == "v2"  # re-read from the authority


def test_l1_alone_is_not_capped_by_staleness(make_cache, clock):
    cache = make_cache([L1], L1_MAX_STALENESS=5)
    cache.set("k", "v", timeout=None)
    clock.advance(3600)
    assert cache.get("k") == "v"


def test_set_writes_the_authority_first(two):
    two.set("k", "v")
    assert two.tier("l2").written[-1][0] == two.stored_key("k")


def test_incr_is_done_at_the_authority_and_drops_local_copies(two):
    two.set("n", 1)
    final = two.stored_key("n")
    assert two.tier("l1").has_key(final)
    assert two.incr("n", 5) == 6
    assert not two.tier("l1").has_key(final)
    assert two.get("n") == 6


def test_add_copies_into_other_tiers(two):
    assert two.add("k", "v") is True
    assert two.tier("l1").has_key(two.stored_key("k"))


def test_unreadable_lower_entry_is_a_logged_miss(two, caplog):
    final = two.stored_key("k")
    broken = Record(MISSING_VALUE(), b"not a pickle", None, 1)
    two.tier("l2").set(final, broken)
    assert two.get("k", "dflt") == "dflt"
    assert two.tier("l2").stats.rejected == 1
    assert not two.tier("l2").has_key(final)  # dropped
    assert "ignoring unreadable entry" in caplog.text


def MISSING_VALUE():
    from tiered_cache.envelope import MISSING_VALUE as value

    return value


def test_tier_lookup_and_stats(two):
    with pytest.raises(KeyError):
        two.tier("l9")
    assert [t.name for t in two.tiers] == ["l1", "l2"]
    two.get("nothing")
    stats = two.stats()
    assert stats["l1"]["misses"] == 1
    assert stats["l2"]["misses"] == 1
    assert stats["l2"]["breaker"] == "closed"
    two.set("a", 1)
    two.set_many({"b": 2, "c": 3})
    two.delete("a")
    two.delete("a")  # nothing left to delete: not counted
    stats = two.stats()
    assert (stats["l1"]["sets"], stats["l2"]["sets"]) == (3, 3)
    assert (stats["l1"]["deletes"], stats["l2"]["deletes"]) == (1, 1)
    assert two.tier("l1").describe()["policy"] == "lru"


def test_remembered_keys_follow_key_settings(two):
    two.set("k", "v")
    assert two.stored_key("k") == f"{two.key_prefix}:1:k"
    two.key_func = lambda key, prefix, version: f"other:{prefix}:{key}"
    assert two.get("k") is None
    two.set("k", "w")
    assert two.get("k") == "w"
    two.key_prefix = "fresh"
    assert two.get("k") is None
    two.version = 7
    two.set("k", "x")
    assert two.get("k") == "x"
    assert two.get("k", version=7) == "x"


def test_bad_keys_warn_on_every_call(two):
    from django.core.cache.backends.base import CacheKeyWarning

    for _ in range(2):
        with pytest.warns(CacheKeyWarning):
            two.get("bad key")


def test_key_memo_is_bounded(two, monkeypatch):
    from tiered_cache import backend

    monkeypatch.setattr(backend, "_KEY_MEMO_SIZE", 10)
    for i in range(25):
        two.get(f"k{i}")
    assert len(two._keys) <= 10


def test_location_names_a_store_like_locmem(make_cache):
    tiers = [L1, L2]
    default = make_cache(tiers, KEY_PREFIX="p")
    named = make_cache(tiers, KEY_PREFIX="p", LOCATION="other")
    default.set("k", "default")
    assert named.get("k") is None  # same tiers, same key, different store
    named.set("k", "other")
    assert default.get("k") == "default"
    assert named.get("k") == "other"
    assert named.stored_key("k") == "other|p:1:k"
    assert named.namespace == "other|p:"
    named.clear()
    assert default.get("k") == "default"
    assert named.get("k") is None


def test_expire_info_view_like_locmem(make_cache, clock):
    cache = make_cache([L1, L2], LOCATION="store")
    cache.set("ttl", 1, timeout=10)
    cache.set("forever", 1, timeout=None)
    info = cache._expire_info
    # Django's tests index it with make_key(); stored keys work as well.
    assert info[cache.make_key("ttl")] == pytest.approx(clock.now + 10)
    assert info[cache.stored_key("ttl")] == pytest.approx(clock.now + 10)
    assert info[cache.make_key("forever")] is None
    cache.tier("l1").delete(cache.stored_key("forever"))
    assert info[cache.make_key("forever")] is None  # from L2
    with pytest.raises(KeyError):
        info[cache.make_key("missing")]
    assert len(info) == 1 and list(info) == [cache.stored_key("ttl")]


@pytest.mark.filterwarnings("ignore::django.core.cache.backends.base.CacheKeyWarning")
def test_expire_info_maps_long_and_odd_keys_like_the_tiers(make_cache, clock):
    cache = make_cache([L1, L2], LOCATION="store")
    for key in ("k" * 2000, "surrogate-\udc00"):
        cache.set(key, 1, timeout=10)
        assert cache._expire_info[cache.make_key(key)] == pytest.approx(clock.now + 10)
