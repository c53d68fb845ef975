"""L3: diskcache on local disk, shared by the processes of one machine.

The adapter is more than a thin wrapper because of the disk faults in
docs/faults.rst; one module per concern:

* ``tier``: ``DiskTier``, the tier contract over the shards of one
  ``diskcache.FanoutCache`` directory: rows to records on the backend's
  clock, copies judged by ``copies``.
* ``options``: which OPTIONS are diskcache settings, and their defaults.
* ``batches``: calls over many keys, one transaction per shard and batch;
  listing and clearing keys by namespace.
* ``copies``: which L3 copies of L2's values this process may serve (their
  age, the machine's floor, the bus position), kept in the marks cache.
* ``store``: the store every call goes through: one open handle per
  configuration and process, opened lazily in the background with a bounded
  wait for writes and none for reads (#28, #31), watched for deletion or
  replacement of its files (#30, #31), dropped in a forked child (#32); the
  routing of a call to its shard (or the marks cache), one writer per shard
  and process.
* ``opening``: how a directory is opened: the shards in parallel in
  FanoutCache's layout, then the marks cache; a corrupt one quarantined.
* ``rows``: ``SafeDisk``, diskcache's ``Disk`` for rows anyone may have
  written: it never unpickles (#33) and never reads or removes a file outside
  the directory.
* ``errors``: what a disk or SQLite failure means (locked, corrupt, disk full,
  unwritable, busy), the quarantine of a corrupt shard found by
  ``PRAGMA quick_check`` (#30), and the one mapping to
  ``TierUnavailable``.

``tiered_cache.tiers.DiskTier`` and the ``diskcache.DjangoCache`` BACKEND name
``DiskTier`` through this package (``tiers.ADAPTERS``).
"""

from __future__ import annotations

from .tier import DiskTier

__all__ = ["DiskTier"]
