"""How a cache directory is opened, and what one open of it holds (``Store``).

* The layout is ``diskcache.FanoutCache``'s (shard ``000``, ``001``... each
  a ``diskcache.Cache`` with ``size_limit / shards``, keys routed by the
  first shard's ``Disk.hash``), so a ``FanoutCache`` of another program sees
  the same entries. The shards are built here, in parallel: ``Cache()`` runs
  some 30 small write transactions, and ``FanoutCache()`` builds its shards
  one after the other (a new directory of 8 shards took 220-850 ms on a
  loaded 2-core machine, 35-340 ms in parallel). They use ``rows.SafeDisk``
  (docs/faults.rst #33).
* Marks (``copies.py``): a small ``diskcache.Cache`` of its own,
  ``<directory>/cache/tiered_cache`` (where ``FanoutCache.cache`` puts it),
  with eviction off so that culling never forgets where the machine's copies
  stand. The opening thread opens it right after the shards (``open_marks``),
  so it adds nothing to the wait of the first calls; until it is open, calls
  to it fail as ``not_open`` (reads at once, others after ``OPEN_TIMEOUT``).
* Corruption (docs/faults.rst #30). An open that fails as corrupt runs
  ``PRAGMA quick_check`` on every shard (or on the marks cache) in the
  opening thread, moves the damaged ones aside and opens again.
* Watched files (docs/faults.rst #30, #31). The store keeps a descriptor on
  every ``cache.db`` it opened, the marks cache's included, so that
  ``Store.replaced`` can tell a database deleted or replaced under this
  process from the one it opened (``store.py`` checks every
  ``CHECK_INTERVAL``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import weakref
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import diskcache
from diskcache.core import DBNAME

from .errors import is_corruption, quarantine_if_corrupt
from .rows import SafeDisk

if TYPE_CHECKING:
    from .store import CacheDirectory

__all__ = ["MARKS", "Store", "open_marks", "open_store"]

_THREADS = "tiered_cache-l3"

logger = logging.getLogger(__name__)

#: Name of the marks cache, under ``<directory>/cache/`` (FanoutCache.cache).
MARKS = "tiered_cache"


class Store:
    """The opened shards (and marks cache) of one configuration in this process."""

    __slots__ = (
        "shards",
        "count",
        "hash",
        "inodes",
        "writers",
        "marks",
        "marks_inode",
        "marks_writer",
        "marked",
        "_files",
        "check_due",
        "__weakref__",
    )

    def __init__(self, shards: tuple[diskcache.Cache, ...]) -> None:
        self.shards = shards
        self.count = len(self.shards)
        self.hash = self.shards[0].disk.hash  # what FanoutCache routes with
        # Quarantine renames a shard only if it is still the one opened here.
        self.inodes = tuple(os.stat(shard.directory).st_ino for shard in self.shards)
        self.writers = tuple(threading.Lock() for _ in self.shards)
        #: The marks cache, once open; ``marked`` is set once it was tried.
        self.marks: diskcache.Cache | None = None
        self.marks_inode = 0
        self.marks_writer = threading.Lock()
        self.marked = threading.Event()
        # The databases as opened: a descriptor pins the inode, so a file that
        # was deleted or replaced cannot be mistaken for a new one that got its
        # inode number. Closed when the store is collected.
        self._files: list[tuple[str, int]] = []
        finalizer = weakref.finalize(self, _close_all, self._files)
        try:
            for shard in self.shards:
                self.watch(shard)
        except OSError:
            finalizer()
            raise
        self.check_due = 0.0

    def shard(self, key: str) -> diskcache.Cache:
        return self.shards[self.hash(key) % self.count]

    def inode(self, cache: diskcache.Cache) -> int:
        """Return the inode ``cache``'s directory had when it was opened."""
        if cache is self.marks:
            return self.marks_inode
        return self.inodes[self.shards.index(cache)]

    def watch(self, cache: diskcache.Cache) -> None:
        """Keep a descriptor on ``cache``'s database (``replaced``)."""
        path = os.path.join(cache.directory, DBNAME)
        self._files.append((path, os.open(path, os.O_RDONLY | os.O_CLOEXEC)))

    def volume(self) -> int:
        """Return the bytes the shards use on disk (``FanoutCache.volume``)."""
        return sum(shard.volume() for shard in self.shards)

    def replaced(self) -> str | None:
        """Return how a database opened here left its path, or ``None``."""
        for path, fd in list(self._files):
            try:
                held = os.fstat(fd)
                if held.st_nlink == 0:
                    return f"{path} was deleted"
                now = os.stat(path)
            except OSError as exc:
                return f"{path}: {exc.strerror or exc}"
            if (now.st_dev, now.st_ino) != (held.st_dev, held.st_ino):
                return f"{path} was replaced"
        return None


def _close_all(files: list[tuple[str, int]]) -> None:
    for _, fd in files:
        with contextlib.suppress(OSError):
            os.close(fd)
    files.clear()


def open_store(directory: CacheDirectory) -> Store:
    """Open the shards; if one is corrupt, quarantine it and open once more."""
    settings = dict(directory.settings)
    count = settings.pop("shards")
    settings["size_limit"] = settings["size_limit"] / count  # as FanoutCache

    def shard(index: int) -> diskcache.Cache:
        path = os.path.join(directory.path, f"{index:03d}")
        return diskcache.Cache(path, disk=SafeDisk, **settings)

    def attempt() -> Store:
        try:
            with ThreadPoolExecutor(count, thread_name_prefix=_THREADS) as pool:
                shards = tuple(pool.map(shard, range(count)))
        except RuntimeError as exc:
            if "interpreter shutdown" not in str(exc):
                raise
            # The interpreter is exiting (a short command's bus listener asks
            # at exit): no pool starts then, so open the shards one by one
            # rather than fail the call and count it an L3 error (issue 8).
            shards = tuple(shard(index) for index in range(count))
        for each in shards:
            each.disk.max_file_bytes = directory.read_limit
        return Store(shards)

    try:
        return attempt()
    except Exception as exc:
        if not is_corruption(exc):
            raise
        moved = 0
        for index in range(directory.shard_count):
            # FanoutCache's layout: one directory per shard, 000, 001...
            path = os.path.join(directory.path, f"{index:03d}")
            moved += quarantine_if_corrupt(directory.name, path)
        directory.quarantined += moved
        if not moved:
            raise
        return attempt()


def open_marks(directory: CacheDirectory, store: Store) -> None:
    """Open the marks cache of ``store`` (quarantined once if corrupt).

    It never fails: a marks cache that cannot open is logged, and calls to
    it keep failing as not open until the directory is opened again.
    """
    path = os.path.join(directory.path, "cache", MARKS)

    def attempt() -> diskcache.Cache:
        marks = diskcache.Cache(
            path,
            disk=SafeDisk,
            timeout=directory.settings["timeout"],
            eviction_policy="none",
        )
        marks.disk.max_file_bytes = directory.read_limit
        return marks

    try:
        try:
            marks = attempt()
        except Exception as exc:
            if not (is_corruption(exc) and quarantine_if_corrupt(directory.name, path)):
                raise
            directory.quarantined += 1
            marks = attempt()
        store.marks_inode = os.stat(marks.directory).st_ino
        store.watch(marks)
        store.marks = marks
    except Exception as exc:  # its calls keep failing as not open
        logger.error("tier %s: cannot open %s: %s", directory.name, path, exc)
    finally:
        store.marked.set()
