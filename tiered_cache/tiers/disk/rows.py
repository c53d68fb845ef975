"""``SafeDisk``: diskcache's ``Disk`` for rows anyone may have written.

A shard's SQLite file can be written by any program that opens the directory
(another application, a plain ``diskcache.Cache``, an attacker with the
cache user's rights), so every column of a row is untrusted input:

* Never unpickle (docs/faults.rst #33). diskcache unpickles every row marked
  as a pickle, and every key stored pickled. ``SafeDisk`` writes only bytes
  (envelopes) and 64-bit ints, and refuses to decode any other mode: such a
  row raises ``UntrustedRow`` (a rejected miss) and never reaches ``pickle``.
  A key stored pickled is read as a marker that is not a ``str``.
* Value files are diskcache's own names only (docs/faults.rst #30). diskcache
  joins the row's ``filename`` to the directory to read a value and to
  remove it when the row goes (``delete``, ``pop``, culling). A row with no
  file name made ``get`` raise ``TypeError``; one naming ``../../x`` would
  read, and then delete, a file outside the cache. A name that is not
  ``xx/yy/<28 hex>.val`` is an ``UntrustedRow`` on read and is never removed.
* No value file larger than the tier would write is read (docs/faults.rst
  #35): ``max_file_bytes`` (set from ``MAX_VALUE_BYTES``) is checked against
  the file's size before it is read, so a planted 1 GB file is a rejected
  miss, not 1 GB of memory.
* No partial value files (docs/faults.rst #29): a write that fails half way
  (``ENOSPC``, ``EFBIG``) removes what it wrote.
"""

from __future__ import annotations

import contextlib
import os
import re
import threading
from typing import Any

import diskcache
from diskcache.core import MODE_BINARY, MODE_RAW, UNKNOWN

from ...envelope import is_raw_int
from ...exceptions import UntrustedRecord

__all__ = ["FOREIGN_KEY", "SafeDisk", "UntrustedRow"]

#: What a key diskcache stored pickled reads as (never unpickled).
FOREIGN_KEY = object()

#: diskcache's value file names (``Disk.filename``), with either separator.
_VALUE_FILE = re.compile(r"[0-9a-f]{2}[/\\][0-9a-f]{2}[/\\][0-9a-f]{28}\.val")


class UntrustedRow(UntrustedRecord):
    """A row this tier did not write (a pickle, text, a foreign file name)."""


def is_value_file(filename: object) -> bool:
    """Return whether ``filename`` is a value file name diskcache makes."""
    return type(filename) is str and _VALUE_FILE.fullmatch(filename) is not None


class SafeDisk(diskcache.Disk):
    """diskcache's ``Disk`` that never unpickles and never leaves its directory.

    Values are stored as bytes (small ones in the row, large ones in a file)
    or as SQLite integers.
    """

    #: Largest value file read (``None``: any); set by the store after open.
    max_file_bytes: int | None = None

    def __init__(self, directory: str, **kwargs: Any) -> None:
        super().__init__(directory, **kwargs)
        self._local = threading.local()

    def store(self, value: Any, read: bool, key: Any = UNKNOWN) -> tuple:
        if not (type(value) is bytes or is_raw_int(value)):
            raise TypeError(f"DiskTier stores bytes or int64, not {type(value)}")
        self._local.path = None
        try:
            return super().store(value, read, key=key)
        except OSError:
            # diskcache leaves a partly written value file behind (ENOSPC,
            # EFBIG): remove it so a full disk does not fill up further.
            path = self._local.path
            if path is not None:
                with contextlib.suppress(OSError):
                    os.remove(path)
            raise

    def filename(self, key: Any = UNKNOWN, value: Any = UNKNOWN) -> tuple[str, str]:
        filename, full_path = super().filename(key, value)
        self._local.path = full_path
        return filename, full_path

    def fetch(self, mode: int, filename: Any, value: Any, read: bool) -> Any:
        if mode == MODE_RAW:
            return super().fetch(mode, filename, value, read)
        if mode == MODE_BINARY:
            if not is_value_file(filename):
                raise UntrustedRow(f"row names value file {filename!r}")
            limit = self.max_file_bytes
            if limit is not None:
                # An OSError here (no such file) is diskcache's miss, as below.
                size = os.path.getsize(os.path.join(self._directory, filename))
                if size > limit:
                    raise UntrustedRow(f"value file of {size} bytes (limit {limit})")
            return super().fetch(mode, filename, value, read)
        raise UntrustedRow(f"row stored in diskcache mode {mode!r} (not bytes/int)")

    def remove(self, file_path: Any) -> None:
        # Called with the filename column of every row that goes away.
        if is_value_file(file_path):
            super().remove(file_path)

    def get(self, key: Any, raw: bool) -> Any:
        return super().get(key, raw) if raw else FOREIGN_KEY
