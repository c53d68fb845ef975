from __future__ import annotations

import pytest

from tiered_cache.policy import REGISTRY, BasePolicy, LRUPolicy, load_policy
from tiered_cache.policy.events import AccessEvent


def test_lru_order():
    p = LRUPolicy()
    for key in "abc":
        p.on_insert(key, 1, None)
    p.on_hit("a")
    with pytest.raises(KeyError):  # allowed by the contract; the tier ignores it
        p.on_hit("zzz")
    assert p.victim() == "b"
    p.on_remove("b")
    p.on_remove("b")
    assert list(p) == ["c", "a"]
    assert len(p) == 2
    p.clear()
    assert p.victim() is None


def test_load_policy_by_name_path_and_class():
    assert isinstance(load_policy("lru"), LRUPolicy)
    assert isinstance(load_policy("tiered_cache.policy.lru.LRUPolicy"), LRUPolicy)
    assert isinstance(load_policy(LRUPolicy, {}), LRUPolicy)
    assert REGISTRY["lru"] is LRUPolicy
    with pytest.raises(ValueError):
        load_policy("mystery")
    with pytest.raises(ValueError):
        load_policy("no.such.Policy")
    with pytest.raises(TypeError):
        load_policy("collections.OrderedDict")


def test_base_policy_is_abstract():
    p = BasePolicy()
    assert p.admit("k", 1) is True
    for call in (
        lambda: p.on_insert("k", 1, None),
        lambda: p.on_hit("k"),
        lambda: p.on_remove("k"),
        p.victim,
        p.clear,
        lambda: len(p),
        lambda: iter(p),
    ):
        with pytest.raises(NotImplementedError):
            call()


def test_access_event_is_a_value():
    assert AccessEvent("k", True) == AccessEvent("k", True, 1, 0.0, "l1")
