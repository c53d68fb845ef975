"""Eviction policies by name, and the loader the memory tier uses."""

from __future__ import annotations

from importlib import import_module
from typing import Any

from .base import BasePolicy
from .learned import LearnedPolicy
from .lru import LRUPolicy
from .s3fifo import S3FIFOPolicy
from .sieve import SievePolicy
from .tinylfu import TinyLFUPolicy

__all__ = [
    "REGISTRY",
    "BasePolicy",
    "LRUPolicy",
    "LearnedPolicy",
    "S3FIFOPolicy",
    "SievePolicy",
    "TinyLFUPolicy",
    "load_policy",
]

#: Short names accepted in ``OPTIONS["POLICY"]``; a dotted path works too.
REGISTRY: dict[str, type[BasePolicy]] = {
    policy.name: policy
    for policy in (LRUPolicy, S3FIFOPolicy, SievePolicy, TinyLFUPolicy, LearnedPolicy)
}


def load_policy(
    name: str | type[BasePolicy], options: dict[str, Any] | None = None
) -> BasePolicy:
    """Build the policy named ``name`` (registry name, dotted path or class).

    Raises ``ValueError`` for an unknown name and ``TypeError`` for something
    that is not a ``BasePolicy``; the tier turns both into ImproperlyConfigured.
    """
    if isinstance(name, str):
        cls: Any = REGISTRY.get(name)
        if cls is None:
            if "." not in name:
                raise ValueError(
                    f"unknown eviction policy {name!r}; known: {sorted(REGISTRY)}"
                )
            module_path, _, attr = name.rpartition(".")
            try:
                cls = getattr(import_module(module_path), attr)
            except (ImportError, AttributeError) as exc:
                raise ValueError(
                    f"cannot import eviction policy {name!r}: {exc}"
                ) from exc
    else:
        cls = name
    if not (isinstance(cls, type) and issubclass(cls, BasePolicy)):
        raise TypeError(f"{name!r} is not a tiered_cache.policy.BasePolicy subclass")
    return cls(**(options or {}))
