"""The chain is arranged from what each tier declares, and slots do the counting."""

from __future__ import annotations

import pytest

from tests.matrix import L1, THIRD_PARTY, fake_l2, l3
from tests.tiers.thirdparty import DictTier
from tiered_cache.envelope import Record
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
    # L3 holds copies of L2 but cannot bound their age yet (issue #6).
    assert chain.unbounded == ("l3",)
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
