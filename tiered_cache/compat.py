"""Views for code written against Django's ``LocMemCache``.

Code, Django's own tests among it, peeks at LocMemCache's private
``_expire_info[cache.make_key(key)]`` to see a key's expiry. ``TieredCache``
offers the same as a read-only view over its tiers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from .sentinels import MISSING

__all__ = ["ExpiryView"]


class ExpiryView(Mapping):
    """Read-only ``{key: expires_at}`` over the tiers of one cache.

    Keys are ``make_key`` results or stored keys (``find`` maps them);
    iteration yields stored keys.
    """

    def __init__(
        self,
        *,
        find: Callable[[str], Any],
        keys: Callable[[], Iterable[str]],
    ) -> None:
        self._find = find
        self._keys = keys

    def __getitem__(self, key: str) -> float | None:
        record = self._find(key)
        if record is MISSING:
            raise KeyError(key)
        return record.expires_at

    def __iter__(self) -> Iterator[str]:
        """Iterate over this cache's keys in the top tier (L1)."""
        return iter(self._keys())

    def __len__(self) -> int:
        return len(list(iter(self)))
