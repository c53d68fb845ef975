"""Small tiers that misbehave on purpose (Django's failing_cache.py idea).

They are real ``BaseTier`` subclasses, referenced by dotted path in TIERS.
"""

from __future__ import annotations

import threading
from typing import Any

from tiered_cache.envelope import Record
from tiered_cache.exceptions import TierUnavailable
from tiered_cache.tiers.base import Scope
from tiered_cache.tiers.memory import MemoryTier

#: Switches shared by every FlakyTier in the process, set by the tests.
FAULTS: dict[str, bool] = {}
CALLS: list[tuple[str, str]] = []
_lock = threading.Lock()


class FlakyTier(MemoryTier):
    """A deployment-wide tier that fails every call while ``FAULTS[name]`` is set.

    It stores data like the memory tier, so a test can watch a value survive an
    outage and come back when the fault is lifted.
    """

    scope = Scope.DEPLOYMENT
    fallible = True

    def __getattribute__(self, attr: str) -> Any:
        if attr in _OPERATIONS:
            name = object.__getattribute__(self, "name")
            with _lock:
                CALLS.append((name, attr))
            if FAULTS.get(name):
                raise _fail(name, attr)
        return object.__getattribute__(self, attr)


_OPERATIONS = frozenset(
    {
        "get",
        "get_value",
        "get_many",
        "has_key",
        "set",
        "set_many",
        "add",
        "delete",
        "delete_many",
        "touch",
        "incr",
        "clear",
    }
)


def _fail(name: str, op: str) -> TierUnavailable:
    try:
        raise ConnectionError(f"injected fault in {name}")
    except ConnectionError as cause:
        error = TierUnavailable(name, op, str(cause))
        error.__cause__ = cause
        return error


class RecordingTier(MemoryTier):
    """A memory tier that remembers the records it was given (promotion tests)."""

    scope = Scope.DEPLOYMENT
    fallible = True

    def configure(self) -> None:
        super().configure()
        self.written: list[tuple[str, Record]] = []

    def set(self, key: str, record: Record) -> None:
        self.written.append((key, record))
        super().set(key, record)
