"""The stored form of an outage journal, and what a valid one looks like.

A journal (``tiered_cache.journal``) is kept in L3 as one small document,
zlib-compressed JSON (never unpickled)::

    {"e": {key: [op, stamp] | ["s", stamp, expires_at]
                | ["i", stamp, delta, value, expires_at]}, "c": [prefix, ...]}

``op`` is ``"s"`` (set), ``"d"`` (delete) or ``"i"`` (incr); ``stamp`` the
stamp of the local write; ``expires_at`` the expiry given to that ``set``, or
the counter's (``null``: none), on the backend's clock; ``delta`` what was
counted locally in all, ``value`` the local count after it. Entries written
before the expiry was carried have two items and are still read (the replay
then takes the local copy's expiry).

The document is read by every process of the machine and is only data on a
disk: a row that is not exactly this shape (a bug, a torn or foreign write, a
planted file) is *malformed* (``parse`` returns ``None``) and the journal
decides what to do with it, rather than failing on it where it is used.
"""

from __future__ import annotations

import json
import math
import zlib
from typing import Any

__all__ = ["EXPIRED", "Doc", "dump", "empty", "json_expiry", "parse"]

# A journal document: {"e": {key: entry}, "c": [prefix, ...]}.
Doc = dict[str, Any]

_OPS = ("s", "d", "i")
#: An expiry in the past on any clock (a record stored with it is deleted).
EXPIRED = -1e18
_STAMP_LIMIT = 2**64  # stamps are u64 (``envelope``)


def empty() -> Doc:
    return {"e": {}, "c": []}


def parse(data: bytes | None) -> Doc | None:
    """Return the journal stored as ``data`` (empty for none), or ``None`` if
    it is malformed: not zlib, not JSON, or any entry of the wrong shape.
    """
    if not data:
        return empty()
    try:
        doc = json.loads(zlib.decompress(data))
    except (ValueError, TypeError, zlib.error):
        return None
    if not isinstance(doc, dict):
        return None
    entries, cover = doc.get("e", {}), doc.get("c", [])
    if not isinstance(entries, dict) or not isinstance(cover, list):
        return None
    if not all(isinstance(p, str) for p in cover):
        return None
    if not all(_entry(entry) for entry in entries.values()):
        return None
    return {"e": entries, "c": cover}


def _entry(entry: Any) -> bool:
    """Return whether ``entry`` is ``[op, stamp]``, ``["s", stamp, expires_at]``
    or ``["i", stamp, delta, value, expires_at]``."""
    if not isinstance(entry, list) or len(entry) not in (2, 3, 5):
        return False
    op, stamp = entry[0], entry[1]
    if op not in _OPS or not _is_int(stamp) or not 0 <= stamp < _STAMP_LIMIT:
        return False
    if op == "i":
        return len(entry) == 5 and all(map(_is_int, entry[2:4])) and _expiry(entry[4])
    if len(entry) == 3:
        return op == "s" and _expiry(entry[2])
    return len(entry) == 2


def _expiry(expires: Any) -> bool:
    return expires is None or (
        isinstance(expires, (int, float))
        and not isinstance(expires, bool)
        and math.isfinite(expires)
    )


def json_expiry(expires_at: float | None) -> float | None:
    """Return ``expires_at`` as JSON keeps it: ``inf`` is none, ``-inf`` past."""
    if expires_at is None or math.isfinite(expires_at):
        return expires_at
    return None if expires_at > 0 else EXPIRED


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def dump(doc: Doc) -> bytes | None:
    """Return the stored form of ``doc`` (``None`` when empty).

    Compressed: the keys of one journal share long starts, so a full journal
    (~50 kB of JSON) stays a few kB, kept in the database row rather than in
    a file of its own (diskcache's ``disk_min_file_size``), which halves the
    cost of a journaled write.
    """
    if not (doc["e"] or doc["c"]):
        return None
    return zlib.compress(json.dumps(doc, separators=(",", ":")).encode(), 1)
