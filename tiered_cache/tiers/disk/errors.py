"""What the disk tier's failures mean, and the one mapping to ``TierUnavailable``.

The backend sees a disk or SQLite failure as a ``TierUnavailable`` chained to
its cause, whose ``kind`` and ``alive`` decide what the circuit breaker makes of
it; this module is where a failure is told apart:

* ``locked``: another writer holds the SQLite write lock for longer than the
  busy timeout (docs/faults.rst #28). It counts against the breaker, so a lock
  held for long makes the backend skip the tier for a while.
* ``corrupt``: a shard's ``cache.db`` is not a database, or SQLite found a
  damaged page ("database disk image is malformed", docs/faults.rst #30).
  ``PRAGMA quick_check`` tells which shard (``quarantine_if_corrupt``); it is
  renamed aside (``rename_aside``) so that the next open starts empty: a
  corrupt file costs at most one failed call, not a crash loop.
* ``disk_full``: the disk (or a file size or quota limit) refused to write a
  value file (an ``OSError``), or SQLite could not grow its files ("database
  or disk is full", docs/faults.rst #29). ``alive``: reads still work, so the
  breaker stays closed.
* ``opening``: a write found the directory still opening after
  ``OPEN_TIMEOUT`` (``not_open``); ``alive``, since it fails fast.
* ``busy``: the write waited too long behind the other writers of this
  process (``queue_full``). Back-pressure, not a fault: ``busy``, so it is
  counted in ``busy`` (not ``errors``) and the breaker never hears of it.
* anything else (``io``). A directory that cannot be opened or written
  (docs/faults.rst #31) is also logged, once per burst, since it needs an
  operator rather than time.

SQLite's result codes are read from ``sqlite_errorcode`` (Python >= 3.11); on
older Pythons the message is the only clue.
"""

from __future__ import annotations

import errno
import logging
import os
import sqlite3
import time

import diskcache
from diskcache.core import DBNAME

from ...exceptions import TierUnavailable
from ...resilience import LogThrottle

__all__ = [
    "TRANSPORT_ERRORS",
    "call_failed",
    "is_corruption",
    "is_full",
    "is_unwritable",
    "not_open",
    "open_failed",
    "quarantine_if_corrupt",
    "queue_full",
    "rename_aside",
]

logger = logging.getLogger(__name__)
_throttle = LogThrottle()

#: Everything the disk or SQLite can do wrong; any of them leaving a call
#: becomes a ``TierUnavailable`` through ``call_failed``.
TRANSPORT_ERRORS = (diskcache.Timeout, sqlite3.DatabaseError, OSError)

_SQLITE_PERM, _SQLITE_READONLY, _SQLITE_CORRUPT, _SQLITE_FULL = 3, 8, 11, 13
_SQLITE_CANTOPEN, _SQLITE_NOTADB = 14, 26
_UNWRITABLE_ERRNOS = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR}
_FULL_ERRNOS = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT}


def _sqlite_code(exc: BaseException) -> int | None:
    code = getattr(exc, "sqlite_errorcode", None)  # Python >= 3.11
    return None if code is None else code & 0xFF


def is_corruption(exc: BaseException | None) -> bool:
    """Return whether ``exc`` says a database file is not a (sound) database."""
    if not isinstance(exc, sqlite3.DatabaseError):
        return False
    code = _sqlite_code(exc)
    if code is not None:
        return code in (_SQLITE_CORRUPT, _SQLITE_NOTADB)
    text = str(exc)
    return "file is not a database" in text or "malformed" in text


def is_full(exc: BaseException) -> bool:
    """Return whether ``exc`` says the disk (or a size limit or quota) is full."""
    if isinstance(exc, OSError):
        return exc.errno in _FULL_ERRNOS
    if not isinstance(exc, sqlite3.DatabaseError):
        return False
    code = _sqlite_code(exc)
    if code is not None:
        return code == _SQLITE_FULL
    return "database or disk is full" in str(exc)


def is_unwritable(exc: BaseException) -> bool:
    """Return whether ``exc`` says the directory or its files may not be written."""
    if isinstance(exc, OSError):
        return exc.errno in _UNWRITABLE_ERRNOS
    code = _sqlite_code(exc)
    if code is not None:
        return code in (_SQLITE_PERM, _SQLITE_READONLY, _SQLITE_CANTOPEN)
    text = str(exc)
    return "readonly database" in text or "unable to open" in text


# -- the mapping to TierUnavailable ------------------------------------------------


def call_failed(
    name: str, directory: str, op: str, exc: BaseException, shard: diskcache.Cache
) -> TierUnavailable:
    """Return what the backend sees of ``exc``, raised by ``op`` on ``shard``.

    The caller raises it ``from exc``, and quarantines a corrupt shard first.
    """
    kind, alive = "io", False
    if isinstance(exc, diskcache.Timeout):
        detail = f"SQLite lock not acquired within {shard.timeout}s"
        kind = "locked"
    elif is_corruption(exc):
        detail = f"corrupt database in {shard.directory}: {exc}"
        kind = "corrupt"
    else:
        detail = str(exc) or type(exc).__name__
        if is_full(exc):
            kind, alive = "disk_full", True  # writes fail, reads still work
        if is_unwritable(exc) and _throttle.allow(f"unwritable:{directory}"):
            logger.error(
                "tier %s: cache directory %s is not writable: %s", name, directory, exc
            )
    return TierUnavailable(name, op, detail, kind=kind, alive=alive)


def not_open(name: str, directory: str, open_timeout: float) -> TierUnavailable:
    """Return the failure of a write that found the open still running.

    Kind ``opening``, ``alive``: the call failed fast (it waited once, up to
    ``OPEN_TIMEOUT``), so there is no timeout for the breaker to spare, and
    a slow first open on a busy machine must not open it.
    """
    return TierUnavailable(
        name,
        "open",
        f"{directory} not open after {open_timeout}s (SQLite lock held by another "
        "process?); still opening in the background",
        kind="opening",
        alive=True,
    )


def queue_full(name: str, op: str, waited: float) -> TierUnavailable:
    """Return the failure of a write that waited ``waited`` s for its turn."""
    return TierUnavailable(
        name,
        op,
        f"waited {waited}s behind this process's other writers of the shard",
        kind="busy",
        busy=True,
    )


def open_failed(name: str, directory: str, exc: BaseException) -> TierUnavailable:
    """Return the failure of a call whose open failed; log it once per burst.

    A corrupt shard that could be moved aside was opened again instead, so a
    corrupt open that gets here is one nothing could repair: it is logged too.
    """
    if _throttle.allow(f"open:{directory}"):
        logger.error(
            "tier %s: cannot open cache directory %s: %s; the tier is "
            "unavailable until it can",
            name,
            directory,
            exc,
        )
    return TierUnavailable(name, "open", str(exc))


# -- quarantine (docs/faults.rst #30) -------------------------------------------


def damage(db: str) -> str | None:
    """Return what ``PRAGMA quick_check`` finds wrong in ``db``, or ``None``.

    ``None`` too when the check cannot run for another reason (locked,
    unreadable): only a database SQLite calls corrupt is ever moved aside.
    quick_check reads every page (not the indexes against the rows), so it
    costs about one read of the file; it runs only after a corrupt error.
    """
    try:
        con = sqlite3.connect(db, timeout=1.0)
        try:
            rows = con.execute("PRAGMA quick_check").fetchall()
        finally:
            con.close()
    except sqlite3.DatabaseError as exc:
        return str(exc) if is_corruption(exc) else None
    problems = "; ".join(str(row[0]) for row in rows[:3] if row and row[0] != "ok")
    return problems[:300] or None


def quarantine_if_corrupt(name: str, shard_directory: str) -> bool:
    """Rename a shard aside if its database is damaged; return whether it was.

    Run after an open failed as corrupt, to find which shard it was.
    """
    db = os.path.join(shard_directory, DBNAME)
    if not os.path.exists(db):
        return False
    problem = damage(db)
    return problem is not None and rename_aside(name, shard_directory, problem)


def rename_aside(name: str, path: str, cause: object) -> bool:
    """Move a corrupt shard to ``<path>.corrupt-<time>-<pid>``; return whether done."""
    stamp = time.strftime("%Y%m%dT%H%M%S")
    target = f"{path}.corrupt-{stamp}-{os.getpid()}"
    try:
        os.rename(path, target)
    except OSError as exc:
        logger.error("tier %s: cannot quarantine %s: %s", name, path, exc)
        return False
    logger.error(
        "tier %s: %s is corrupt (%s); moved to %s, a fresh shard opens on the "
        "next call",
        name,
        path,
        cause,
        target,
    )
    return True
