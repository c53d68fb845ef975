"""A tier written the way a third party would: against ``BaseTier`` alone.

It uses nothing but the documented contract (``BaseTier``, ``Record``,
``encode``/``decode``, ``MISSING``): if the backend needed anything else from
a tier, this tier would fail in the conformance matrix, where it runs as the
``l1+thirdparty`` cell.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Any

from tiered_cache.envelope import Record, decode, materialize
from tiered_cache.sentinels import MISSING
from tiered_cache.tiers.base import BaseTier, Scope


class DictTier(BaseTier):
    """Envelopes in a dict: a machine-wide tier for the matrix, in one process."""

    scope = Scope.MACHINE

    def configure(self) -> None:
        self._data: dict[str, tuple[bytes | int, float | None]] = {}
        self._lock = threading.Lock()

    def get(self, key: str) -> Record | Any:
        stored = self._data.get(key)
        if stored is None:
            return MISSING
        data, expires_at = stored
        if type(data) is int:  # encode() keeps 64-bit ints raw
            record = Record(data, None, expires_at, 0)
        else:
            record = decode(data, key, self.serializer)
        return record if record.is_live(self.clock()) else MISSING

    def set(self, key: str, record: Record) -> None:
        self._data[key] = (self.encode(key, record), record.expires_at)

    def add(self, key: str, record: Record) -> bool:
        with self._lock:
            if self.get(key) is not MISSING:
                return False
            self.set(key, record)
            return True

    def delete(self, key: str) -> bool:
        with self._lock:
            live = self.get(key) is not MISSING
            self._data.pop(key, None)
            return live

    def touch(self, key: str, expires_at: float | None) -> bool:
        with self._lock:
            record = self.get(key)
            if record is MISSING:
                return False
            record.expires_at = expires_at
            self.set(key, record)
            return True

    def incr(self, key: str, delta: int) -> int:
        with self._lock:
            record = self.get(key)
            if record is MISSING:
                raise ValueError(f"Key '{key}' not found")
            value = materialize(record)
            if type(value) is not int:
                raise TypeError(f"Key '{key}' does not hold an integer")
            value += delta
            self.set(key, Record.for_value(value, record.expires_at, self.serializer))
            return value

    def clear(self, namespace: str) -> int:
        with self._lock:
            doomed = [key for key in self._data if key.startswith(namespace)]
            for key in doomed:
                del self._data[key]
        return len(doomed)

    def keys(self, namespace: str) -> Iterable[str]:
        return [key for key in list(self._data) if key.startswith(namespace)]
