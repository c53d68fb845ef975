"""tiered_cache: a Django cache backend chaining L1 memory, L2 Redis, L3 disk.

Importing this package touches neither settings nor optional dependencies; the
public names below load on first use.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

__all__ = ["MemoryTier", "TieredCache", "__version__", "cached", "warmer"]

_LAZY = {
    "TieredCache": "tiered_cache.backend",
    "MemoryTier": "tiered_cache.tiers.memory",
    "cached": "tiered_cache.decorators",
    "warmer": "tiered_cache.warming.registry",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(module), name)
