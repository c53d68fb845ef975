"""Locks that a forked child re-creates.

``fork()`` copies a lock in whatever state it was: if another thread of the
parent held it at that instant (gunicorn ``--preload``, a worker recycled while
a background thread wrote to L1), the child's copy stays locked forever and
the first write in the child hangs. Objects that own a ``_lock`` register
here; each child gets fresh locks before it runs any of our code
(RELIABILITY.md #32). Module-level locks use ``at_fork`` directly.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Callable

__all__ = ["at_fork", "renewed_lock"]

_owners: weakref.WeakSet = weakref.WeakSet()


def renewed_lock(owner: object) -> threading.Lock:
    """Return a new lock for ``owner._lock``, re-created in forked children."""
    _owners.add(owner)
    return threading.Lock()


def at_fork(after_in_child: Callable[[], None]) -> None:
    """Run ``after_in_child`` in every forked child (no-op where fork is absent)."""
    if hasattr(os, "register_at_fork"):
        os.register_at_fork(after_in_child=after_in_child)


def _renew_owned_locks() -> None:
    for owner in list(_owners):
        owner._lock = threading.Lock()  # type: ignore[attr-defined]


at_fork(_renew_owned_locks)
