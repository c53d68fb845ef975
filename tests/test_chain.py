"""The chain is arranged from what each tier declares, and slots do the counting."""

from __future__ import annotations

import pytest

from tests.matrix import L1, THIRD_PARTY, fake_l2, l3
from tests.tiers.disk.support import opened
from tests.tiers.thirdparty import DictTier
from tiered_cache.envelope import Record
from tiered_cache.sentinels import MISSING
from tiered_cache.tiers.base import Scope

NOT_AUTHORITY = {"NAME": "l2", "BACKEND": "tests.test_chain.ReadOnlyCopyTier"}


class ReadOnlyCopyTier(DictTier):
    """Deployment-wide, but declared unable to hold the authoritative copy."""

    scope = Scope.DEPLOYMENT
    may_be_authority = False


def names(slots):
    return [slot.name for slot in slots]


def test_three_tiers_write_widest_first_and_bound_l1(make_cache, l3_dir):
    cache = make_cache([L1, fake_l2(), l3(str(l3_dir))], L1_MAX_STALENESS=30)
    chain = cache._chain
    assert names(chain.slots) == ["l1", "l2", "l3"]
    assert names(chain.write_order) == ["l2", "l3", "l1"]
    assert chain.fast_top is cache.tier("l1")
    assert cache.tier("l1").max_staleness == 30
    # L3 holds copies of L2, bounded like L1's (docs/design.rst, "Coherence").
    assert chain.unbounded == ()
    assert cache.tier("l3").max_staleness == 30
    # A hit is promoted into narrower tiers only: never L3 into L2.
    assert [names(targets) for targets in chain.narrower] == [[], ["l1"], ["l1"]]
    assert chain.authority_for(Record.for_value("v", None)).name == "l2"


def test_embedded_shape_l3_is_the_authority(make_cache, l3_dir):
    cache = make_cache([L1, l3(str(l3_dir))])
    chain = cache._chain
    assert names(chain.write_order) == ["l3", "l1"]
    assert cache.tier("l1").max_staleness == 60.0
    assert chain.unbounded == ()


def test_memory_alone_holds_no_copies(make_cache):
    cache = make_cache([L1])
    assert cache.tier("l1").max_staleness is None
    assert cache.breaker_state("l1") is None
    assert "breaker" not in cache.stats()["l1"]


def test_a_tier_that_may_not_be_the_authority_never_is(make_cache):
    cache = make_cache([L1, NOT_AUTHORITY])
    chain = cache._chain
    assert names(chain.authorities) == ["l1"]
    assert cache.add("k", 1) is True
    assert cache.add("k", 2) is False  # decided at L1, atomically
    assert cache.get("k") == 1
    assert cache.tier("l2").get(cache.stored_key("k")).value == 1  # written through


def test_an_infallible_top_tier_is_read_without_a_slot(make_cache):
    cache = make_cache([L1, THIRD_PARTY])
    cache.set("k", "v")
    stats = cache.tier("l1").stats
    before = stats.hits
    assert cache.get("k") == "v"
    assert stats.hits == before + 1  # counted by the tier's own fast path


def test_slots_count_what_calls_returned(make_cache):
    cache = make_cache([L1, THIRD_PARTY])
    lower = cache.tier("l3").stats
    cache.set("a", 1)
    assert lower.sets == 1
    cache.tier("l1").delete(cache.stored_key("a"))
    assert cache.get("a") == 1  # a hit below, promoted into L1
    assert (lower.hits, cache.tier("l1").stats.promotions) == (1, 1)
    assert cache.get("missing") is None
    assert lower.misses == 1
    assert cache.delete("a") is True
    assert lower.deletes == 1


@pytest.mark.parametrize("value_bytes", [10, 10_000])
def test_a_refusing_tier_drops_its_old_copy(make_cache, value_bytes):
    small_l1 = {**L1, "OPTIONS": {"MAX_VALUE_BYTES": 1000}}
    cache = make_cache([small_l1, THIRD_PARTY])
    cache.set("k", "x")
    cache.set("k", "y" * value_bytes)
    assert cache.get("k") == "y" * value_bytes
    refused = cache.tier("l1").stats.refused
    assert refused == (1 if value_bytes > 1000 else 0)


class RecordedMachineTier(DictTier):
    """A machine-wide tier that notes every write, in order, with the others."""

    def set(self, key, record):
        ORDER.append((self.name, "set"))
        super().set(key, record)

    def delete(self, key):
        ORDER.append((self.name, "delete"))
        return super().delete(key)


class RecordedDeploymentTier(RecordedMachineTier):
    scope = Scope.DEPLOYMENT


ORDER: list[tuple[str, str]] = []


def test_a_tier_that_refuses_drops_its_copy_after_the_authority_stored(make_cache):
    """Else a reader in between finds the old value below and promotes it back."""
    cache = make_cache(
        [
            L1,
            {
                "NAME": "l2",
                "BACKEND": "tests.test_chain.RecordedDeploymentTier",
                "OPTIONS": {"MAX_VALUE_BYTES": 100},
            },
            {"NAME": "l3", "BACKEND": "tests.test_chain.RecordedMachineTier"},
        ]
    )
    cache.set("k", "small")
    ORDER.clear()
    cache.set("k", "x" * 1000)  # too big for L2: L3 is the authority
    assert ORDER == [("l3", "set"), ("l2", "delete")]
    assert cache.get("k") == "x" * 1000


def test_a_read_racing_a_delete_cannot_put_the_value_back_into_l1(make_cache):
    cache = make_cache([L1, THIRD_PARTY])
    cache.set("k", "old")
    final = cache.stored_key("k")
    read_before = cache.tier("l3").get(final)  # a reader fetched it from below...
    assert cache.delete("k") is True  # ...then the delete ran...
    cache._chain.promote({final: read_before}, cache._chain.slots[:1])  # ...then
    assert cache.get("k") is None  # the promotion: refused
    cache.set("k", "new")
    assert cache.get("k") == "new"


# -- no resurrection: an L2 miss disowns L3's copy --------------------------------


@pytest.fixture
def three(make_cache, l3_dir):
    """L1 + L2 (fakeredis) + L3; no bus, so that only the read rule is at work."""
    spec = {**fake_l2(), "OPTIONS": {**fake_l2()["OPTIONS"], "MAX_VALUE_BYTES": 1000}}
    cache = make_cache([L1, spec, l3(str(l3_dir))], INVALIDATION=False)
    opened(cache.tier("l3"))  # reads trust no copy until the marks cache is open
    return cache


def deleted_elsewhere(cache, key):
    """Another machine deleted ``key``: gone from L2; this machine's copies stay."""
    final = cache.stored_key(key)
    cache.tier("l2").delete(final)
    cache.tier("l1").delete(final)
    assert cache.tier("l3").get(final) is not MISSING
    return final


def open_breaker(cache, name="l2"):
    breaker = cache._chain.by_name[name].breaker
    for _ in range(5):
        breaker.record_failure()
    assert cache.breaker_state(name) == "open"


def test_an_l2_miss_disowns_the_l3_copy(three):
    three.set("k", "v")
    final = deleted_elsewhere(three, "k")
    assert three.get("k") is None
    assert three.tier("l2").get(final) is MISSING  # not promoted back
    assert three.tier("l3").get(final) is MISSING  # and dropped
    assert three.stats()["l3"]["hits"] == 0


@pytest.mark.parametrize(
    "read",
    [
        lambda c: c.get_many(["k", "other"]) == {"other": 1},
        lambda c: c.has_key("k") is False,
        lambda c: c.make_key("k") not in c._expire_info,
    ],
)
def test_every_read_disowns_it(three, read):
    three.set_many({"k": "v", "other": 1})
    deleted_elsewhere(three, "k")
    assert read(three)
    assert three.get("k") is None


def test_a_value_too_big_for_l2_is_l3s_own(three):
    three.set("big", "x" * 5000)  # L3 is its authority
    final = three.stored_key("big")
    three.tier("l1").delete(final)
    assert three.get("big") == "x" * 5000
    assert three.get_many(["big"]) == {"big": "x" * 5000}
    assert three.has_key("big")


def test_while_l2_does_not_answer_l3_serves_its_copy_without_promoting_it(three):
    three.set("k", "v")
    final = three.stored_key("k")
    three.tier("l1").delete(final)
    three.tier("l2").delete(final)  # so a promotion would show
    open_breaker(three)
    assert three.get("k") == "v"  # L3's copy, trusted for L1_MAX_STALENESS
    assert three.tier("l1").get(final) is not MISSING  # promoted into L1...
    three._chain.by_name["l2"].breaker.reset()
    assert three.tier("l2").get(final) is MISSING  # ...never into L2
    three.tier("l1").delete(final)
    assert three.get_many(["k"]) == {}  # L2 answers again: its miss disowns it


def test_l3_copies_are_bounded_like_l1s(three, clock):
    three.set("k", "v")
    final = three.stored_key("k")
    open_breaker(three)
    clock.advance(59)
    three.tier("l1").delete(final)
    assert three.get("k") == "v"
    promoted = three.tier("l1").get(final)
    assert promoted.expires_at == pytest.approx(clock() + 1)  # not 60 s more
    clock.advance(2)
    assert three.get("k") is None
