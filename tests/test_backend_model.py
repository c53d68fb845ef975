"""TieredCache against a reference model, by random sequences of calls.

Hypothesis drives a state machine over every cell of the conformance matrix:
each step is one call of Django's cache API (``set``, ``add``, ``get``,
``get_or_set``, ``incr``, ``touch``, ``delete``, the ``*_many`` calls,
``has_key``, ``clear``) or a move of the fake clock, and its result is compared
with ``Model``: a plain dict of ``(value, expires_at)`` that follows Django's
``BaseCache`` semantics (``timeout=None`` forever, ``<= 0`` deletes, an entry is
live while ``expires_at > now``). Where the example tests of
``test_backend_matrix.py`` pin one behaviour each, this finds the sequences
nobody thought of: a touch after an incr after a promotion, say.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

KEYS = st.sampled_from(["a", "b", "c", "key with spaces", "ключ", "x" * 300])
VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([0, 2**63 - 1, -(2**63), 2**63]),
    st.floats(allow_nan=False),
    st.text(max_size=20),
    st.binary(max_size=20),
    st.lists(st.integers(), max_size=4),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=3),
)
TIMEOUTS = st.sampled_from([None, 0, -1, 1, 2.5, 10, 300])
#: Small steps, and steps across the 64-bit bounds that Redis and diskcache
#: count within (a result beyond them takes another path in both).
DELTAS = st.one_of(
    st.integers(min_value=-3, max_value=3),
    st.sampled_from([2**63, -(2**63), 2**64, 2**63 - 1]),
)
MISSING = object()

# Long keys and spaces are part of the point; Django warns about memcached.
pytestmark = pytest.mark.filterwarnings(
    "ignore::django.core.cache.backends.base.CacheKeyWarning"
)


class Model:
    """What Django's cache API promises, on the same fake clock."""

    def __init__(self, clock: Any) -> None:
        self.clock = clock
        self.data: dict[str, tuple[Any, float | None]] = {}

    def expiry(self, timeout: float | None) -> float | None:
        if timeout is None:
            return None
        return self.clock() + timeout if timeout > 0 else -math.inf

    def live(self, key: str) -> bool:
        entry = self.data.get(key)
        return entry is not None and (entry[1] is None or entry[1] > self.clock())

    def get(self, key: str, default: Any = None) -> Any:
        return self.data[key][0] if self.live(key) else default

    def set(self, key: str, value: Any, timeout: float | None) -> None:
        self.data[key] = (value, self.expiry(timeout))

    def delete(self, key: str) -> bool:
        existed = self.live(key)
        self.data.pop(key, None)
        return existed


class CacheMachine(RuleBasedStateMachine):
    cache: Any = None  # set by the test, per matrix cell
    clock: Any = None

    @initialize()
    def start(self) -> None:
        self.cache.clear()
        self.model = Model(self.clock)

    # -- writes ---------------------------------------------------------------

    @rule(key=KEYS, value=VALUES, timeout=TIMEOUTS)
    def set(self, key, value, timeout):
        self.cache.set(key, value, timeout)
        self.model.set(key, value, timeout)

    @rule(key=KEYS, value=VALUES, timeout=TIMEOUTS)
    def add(self, key, value, timeout):
        added = self.cache.add(key, value, timeout)
        expected = not self.model.live(key)
        if expected:
            self.model.set(key, value, timeout)
        assert added == expected

    @rule(items=st.dictionaries(KEYS, VALUES, max_size=3), timeout=TIMEOUTS)
    def set_many(self, items, timeout):
        assert self.cache.set_many(items, timeout) == []
        for key, value in items.items():
            self.model.set(key, value, timeout)

    @rule(key=KEYS)
    def delete(self, key):
        assert self.cache.delete(key) == self.model.delete(key)

    @rule(keys=st.lists(KEYS, max_size=3))
    def delete_many(self, keys):
        self.cache.delete_many(keys)
        for key in keys:
            self.model.delete(key)

    @rule(key=KEYS, delta=DELTAS)
    def incr(self, key, delta):
        current = self.model.get(key, MISSING)
        if current is MISSING:
            with pytest.raises(ValueError):
                self.cache.incr(key, delta)
            return
        if type(current) is not int:
            return  # incr of a non-integer is a TypeError in every backend
        assert self.cache.incr(key, delta) == current + delta
        self.model.data[key] = (current + delta, self.model.data[key][1])

    @rule(key=KEYS, timeout=TIMEOUTS)
    def touch(self, key, timeout):
        touched = self.cache.touch(key, timeout)
        expected = self.model.live(key)
        if expected:
            value = self.model.data[key][0]
            self.model.set(key, value, timeout)
        assert touched == expected

    @rule()
    def clear(self):
        self.cache.clear()
        self.model.data.clear()

    # -- reads ----------------------------------------------------------------

    @rule(key=KEYS)
    def get(self, key):
        assert self.cache.get(key, MISSING) == self.model.get(key, MISSING)

    @rule(keys=st.lists(KEYS, max_size=4))
    def get_many(self, keys):
        expected = {k: self.model.get(k) for k in keys if self.model.live(k)}
        assert self.cache.get_many(keys) == expected

    @rule(key=KEYS, value=VALUES, timeout=TIMEOUTS)
    def get_or_set(self, key, value, timeout):
        expected = self.model.get(key, MISSING)
        if expected is MISSING:
            expected = value
            self.model.set(key, value, timeout)
        assert self.cache.get_or_set(key, lambda: value, timeout) == expected

    @rule(key=KEYS)
    def has_key(self, key):
        assert self.cache.has_key(key) == self.model.live(key)

    # -- time -----------------------------------------------------------------

    @precondition(lambda self: self.model.data)
    @rule(seconds=st.sampled_from([0.5, 1, 3, 20, 400]))
    def advance(self, seconds):
        self.clock.advance(seconds)

    @invariant()
    def no_broken_invariant(self):
        assert self.cache.check() == []


def test_the_cache_behaves_like_the_model(cache, clock):
    CacheMachine.cache = cache
    CacheMachine.clock = clock
    run_state_machine_as_test(
        CacheMachine,
        settings=settings(
            max_examples=25,
            stateful_step_count=30,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
