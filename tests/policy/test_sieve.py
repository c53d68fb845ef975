"""SIEVE on hand-made traces: the hand, the visited bits, removals under it."""

from __future__ import annotations

from tests.policy.drive import Store
from tiered_cache.policy import SievePolicy


def test_the_hand_clears_visited_bits_and_stops_at_the_first_unvisited_key():
    policy = SievePolicy()
    store = Store(policy, 4)
    store.run("abcd")
    store.run("ab")  # a and b visited
    store.run("e")  # hand: a (clear), b (clear), c: victim
    assert store.evicted == ["c"]
    store.run("d")  # d visited
    store.run("f")  # hand resumes at d (clear) then e: victim
    assert store.evicted == ["c", "e"]
    store.run("g")  # hand wraps to the tail: a, no longer visited
    assert store.evicted == ["c", "e", "a"]


def test_new_keys_do_not_move_old_ones():
    """A hit reorders nothing: the queue stays in insertion order."""
    policy = SievePolicy()
    store = Store(policy, 3)
    store.run("abc" + "c" * 5)
    store.run("d")
    assert store.evicted == ["a"]


def test_removing_the_key_under_the_hand_moves_the_hand_on():
    policy = SievePolicy()
    store = Store(policy, 4)
    store.run("abcd" + "a")
    assert policy.victim() == "b"  # a's bit is cleared on the way
    policy.on_remove("b")  # deleted, not evicted
    store.keys.discard("b")
    store.run("b")  # room: no eviction
    store.run("x")  # the hand went on to c
    assert store.evicted == ["c"]


def test_all_visited_still_yields_a_victim_and_clear_resets():
    policy = SievePolicy()
    store = Store(policy, 3)
    store.run("abcabc")
    store.run("d")
    assert store.evicted == ["a"]
    policy.on_hit("gone")  # buffered hit on a key never stored: ignored
    policy.clear()
    assert policy.victim() is None and len(policy) == 0
