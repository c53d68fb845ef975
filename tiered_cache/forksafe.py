"""Locks and shared registries that a forked child re-creates.

``fork()`` copies a lock in whatever state it was: if another thread of the
parent held it at that instant (gunicorn ``--preload``, a worker recycled while
a background thread wrote to L1), the child's copy stays locked forever and
the first write in the child hangs (docs/faults.rst #32). Every lock of the
package is therefore made here: objects that own a ``_lock`` take it from
``renewed_lock``, process-wide tables of shared objects are a ``Registry``, and
each child gets fresh locks before it runs any of our code.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

__all__ = ["Registry", "after_fork_in_child", "renewed_lock"]

T = TypeVar("T")

_owners: weakref.WeakSet = weakref.WeakSet()


def renewed_lock(owner: object) -> threading.Lock:
    """Return a new lock for ``owner._lock``, re-created in forked children."""
    _owners.add(owner)
    return threading.Lock()


class Registry(Generic[T]):
    """A process-wide table of objects shared by configuration.

    Django builds one backend per thread and per request, so anything costly
    (tier chains, connection pools, open SQLite files) is built once per
    process per configuration and looked up here. ``forget_in_child`` is for
    objects that must not cross a fork (open database handles): a child starts
    with an empty table and builds its own, while the inherited objects stay
    referenced so that nothing of the parent's is closed from the child.
    """

    def __init__(self, *, forget_in_child: bool = False) -> None:
        self._items: dict[Hashable, T] = {}
        self._inherited: list[T] = []
        self._forget_in_child = forget_in_child
        self._lock = renewed_lock(self)
        _registries.add(self)

    def get(self, key: Hashable) -> T | None:
        """Return the object for ``key``, or ``None``; takes no lock."""
        return self._items.get(key)

    def get_or_create(self, key: Hashable, build: Callable[[], T]) -> T:
        """Return the object for ``key``, building it once per process."""
        item = self._items.get(key)
        if item is None:
            with self._lock:
                item = self._items.get(key)
                if item is None:
                    item = self._items[key] = build()
        return item

    def replace(self, key: Hashable, build: Callable[[T | None], T | None]) -> T | None:
        """Store ``build(current)`` under ``key`` atomically (None removes it)."""
        with self._lock:
            item = build(self._items.get(key))
            if item is None:
                self._items.pop(key, None)
            else:
                self._items[key] = item
            return item

    def items(self) -> list[tuple[Hashable, T]]:
        """Return ``(key, object)`` pairs built in this process."""
        return list(self._items.items())

    def discard(self, key: Hashable) -> None:
        """Forget the object for ``key``; the next use builds a new one."""
        with self._lock:
            self._items.pop(key, None)

    def _after_fork(self) -> None:
        if self._forget_in_child:
            self._inherited.extend(self._items.values())
            self._items.clear()


_registries: weakref.WeakSet = weakref.WeakSet()
_callbacks: list[Callable[[], None]] = []


def after_fork_in_child(callback: Callable[[], None]) -> None:
    """Run ``callback`` in every forked child, after the locks are renewed.

    For state that must not be shared with the parent: a background thread
    (which does not survive ``fork()``), a per-process identity.
    """
    _callbacks.append(callback)


def _after_fork_in_child() -> None:
    for owner in list(_owners):
        owner._lock = threading.Lock()  # type: ignore[attr-defined]
    for registry in list(_registries):
        registry._after_fork()
    for callback in list(_callbacks):
        callback()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
