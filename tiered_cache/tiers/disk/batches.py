"""The disk tier's calls over many keys, batched per shard.

``set_many`` and ``delete_many`` take one transaction per shard and per
``BATCH`` keys: one per key cost ~0.1 ms each (10 s for 100 000 keys), one
for a whole batch would hold the lock past other writers' wait (docs/faults.rst
#28). ``clear`` deletes in the same batches; ``keys`` and ``clear`` page
through each shard's key index without reading values, and skip the keys
diskcache stored pickled (``rows.SafeDisk`` reads them as a marker, never
unpickled) like the bytes and number keys other programs use.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import diskcache

from .store import CacheDirectory

__all__ = ["BATCH", "clear", "delete_many", "keys", "set_many"]

#: Keys per transaction of set_many, delete_many and clear.
BATCH = 256

#: What ``DiskTier._encode`` makes of a record: (stored value, seconds, tag).
Row = tuple[Any, "float | None", Any]


def set_many(files: CacheDirectory, rows: Mapping[str, Row]) -> None:
    """Write encoded ``rows``; a row already expired deletes its key."""
    for index, batch in _by_shard(files, rows):
        with files.call("set_many", None, index) as shard, shard.transact():
            for key in batch:
                data, expire, tag = rows[key]
                if expire is not None and expire <= 0:
                    shard.delete(key)
                else:
                    shard.set(key, data, expire=expire, tag=tag)


def delete_many(files: CacheDirectory, keys: Iterable[str]) -> None:
    for index, batch in _by_shard(files, keys):
        with files.call("delete_many", None, index) as shard, shard.transact():
            for key in batch:
                shard.delete(key)


def _by_shard(
    files: CacheDirectory, keys: Iterable[str]
) -> Iterator[tuple[int, list[str]]]:
    """Yield (shard index, up to ``BATCH`` keys of that shard)."""
    store = files.open()
    assert store is not None
    shards: dict[int, list[str]] = {}
    for key in keys:
        shards.setdefault(store.hash(key) % store.count, []).append(key)
    for index, found in shards.items():
        for start in range(0, len(found), BATCH):
            yield index, found[start : start + BATCH]


def clear(files: CacheDirectory, namespace: str) -> int:
    """Delete the keys under ``namespace`` (compared literally); return how many."""
    count = 0
    for index in range(files.shard_count):
        with files.call("clear", None, index) as shard:
            batch: list[str] = []
            for key in _keys_under(shard, namespace):
                batch.append(key)
                if len(batch) >= BATCH:
                    count += _delete_batch(shard, batch)
            if batch:
                count += _delete_batch(shard, batch)
    return count


def _delete_batch(shard: diskcache.Cache, batch: list[str]) -> int:
    # One short transaction per batch: the lock is never held for long.
    with shard.transact():
        count = sum(shard.delete(key) for key in batch)
    batch.clear()
    return count


def keys(files: CacheDirectory, namespace: str) -> list[str]:
    """Return the keys under ``namespace``, shard by shard; no value is read."""
    found: list[str] = []
    for index in range(files.shard_count):
        with files.call("keys", None, index) as shard:
            found.extend(_keys_under(shard, namespace))
    return found


def _keys_under(shard: diskcache.Cache, namespace: str) -> Iterator[str]:
    """Yield the keys of ``shard`` that start with ``namespace``, in key order."""
    for key in shard.iterkeys():
        if type(key) is str and key.startswith(namespace):
            yield key
