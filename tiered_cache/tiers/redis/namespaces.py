"""Whole namespaces on Redis: list their keys, clear them (SCAN, never KEYS).

A cache's namespace is the prefix its stored keys share (``KEY_PREFIX``,
version, ``LOCATION``...). Both operations walk every primary with SCAN, so a
large database is never blocked the way ``KEYS``/``FLUSHDB`` would block it,
and they touch only keys under the namespace: it is glob-escaped (a key
prefix ``a*`` does not match ``ab``), and an empty namespace is refused, as it
would match every key of the database, including other applications'.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import wire
from .errors import TRANSPORT_ERRORS, unavailable

if TYPE_CHECKING:
    from .tier import RedisTier

__all__ = ["KEYS_LIMIT", "clear", "keys", "pattern"]

#: Most keys ``keys`` returns (it serves introspection, not iteration).
KEYS_LIMIT = 10_000
#: COUNT of each SCAN step, and keys per UNLINK.
SCAN_BATCH = 500


def pattern(namespace: str) -> str:
    """Return the SCAN pattern of ``namespace``; refuse the whole database."""
    if not namespace:
        raise ValueError("refusing an empty namespace: it matches every key")
    return wire.glob_escape(namespace) + "*"


def keys(tier: RedisTier, namespace: str) -> list[str]:
    """Return at most ``KEYS_LIMIT`` keys under ``namespace``, every primary.

    SCAN may return a key twice while Redis resizes its table, so the keys
    are collected in a dict (insertion-ordered, no repeats).
    """
    match = pattern(namespace)
    found: dict[str, None] = {}
    for client in tier._primaries():
        for key in client.scan_iter(match=match, count=SCAN_BATCH):
            try:
                found[key.decode()] = None
            except UnicodeDecodeError:  # not one of ours: we write str keys
                continue
            if len(found) >= KEYS_LIMIT:
                return list(found)
    return list(found)


def clear(tier: RedisTier, namespace: str) -> int:
    """Remove every key under ``namespace`` (SCAN + UNLINK); return how many.

    Every primary is tried even when one fails (on Cluster, a dead shard
    costs only its keys); then the first failure is raised.
    """
    match = pattern(namespace)
    removed = 0
    failures = []
    for client in tier._primaries():
        try:
            batch: list[bytes] = []
            for found in client.scan_iter(match=match, count=SCAN_BATCH):
                batch.append(found)
                if len(batch) >= SCAN_BATCH:
                    removed += tier._unlink(client, batch)
                    batch = []
            if batch:
                removed += tier._unlink(client, batch)
        except TRANSPORT_ERRORS as exc:
            tier._recover(exc)
            failures.append(exc)
    if failures:
        raise unavailable(tier.name, "clear", failures[0]) from failures[0]
    return removed
