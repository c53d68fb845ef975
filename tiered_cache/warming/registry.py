"""``@tiered_cache.warmer("group")``: how ``warm_cache`` recomputes a key.

A warmer takes one key (as the application passes it to ``cache.get``,
without KEY_PREFIX or version) and returns its value; ``warm_cache`` writes
it with ``cache.set_many`` (through every tier, the authority first) with the
warmer's ``timeout``. The group of a key is the part before its first ``:``
(the whole key when there is none): ``"product:42"`` is warmed by the warmer
of ``"product"``. A warmer that raises fails that key only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.core.cache.backends.base import DEFAULT_TIMEOUT

__all__ = ["Warmer", "group_of", "warmer", "warmers"]


@dataclass(frozen=True)
class Warmer:
    """A registered warmer: the function, its group, cache alias and timeout."""

    group: str
    function: Callable[[str], Any]
    cache: str = "default"
    timeout: Any = DEFAULT_TIMEOUT


#: ``{(cache alias, group): Warmer}``, filled at import time of the modules
#: that declare warmers (import them from your AppConfig.ready()).
warmers: dict[tuple[str, str], Warmer] = {}


def group_of(key: str) -> str:
    """Return the group of ``key``: the part before its first ``:``."""
    return key.split(":", 1)[0]


def warmer(
    group: str, *, cache: str = "default", timeout: Any = DEFAULT_TIMEOUT
) -> Callable[[Callable[[str], Any]], Callable[[str], Any]]:
    """Register the decorated ``function(key) -> value`` as ``group``'s warmer.

    :param group: the key prefix before the first ``:`` this warmer serves.
    :param cache: the cache alias it warms (``"default"``).
    :param timeout: the timeout of the values it returns (the cache's
        default timeout if not given).
    """
    if not isinstance(group, str) or ":" in group:
        raise ValueError(f"a warmer group is a key prefix without ':', not {group!r}")

    def register(function: Callable[[str], Any]) -> Callable[[str], Any]:
        warmers[(cache, group)] = Warmer(group, function, cache, timeout)
        return function

    return register
