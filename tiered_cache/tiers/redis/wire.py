"""What the Redis tier stores under a key, and how it judges what it reads back.

A value is the envelope of ``tiered_cache.envelope`` (absolute expiry in its
header) stored under the exact final key, with a relative ``PX`` only so that
Redis collects the garbage: reads judge liveness from the header on the
backend's clock, which makes them immune to clock skew between hosts.

An integer that fits in 64 bits is stored as a decimal string instead, so that
``incr`` is a server-side ``INCRBY``. It has no header, so Redis itself keeps
its absolute expiry: ``PXAT`` on write, ``PEXPIRETIME`` on read (Redis >= 7.0),
which stays exact under an injected clock as long as that clock is wall-clock
time. Anything else found under a key (a foreign string, a list) is bad data:
a rejected miss, never an exception and never an unpickle.

The functions here build commands and judge replies; they take the time
(``now``, seconds on the backend's clock) as an argument and hold no state.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any

import redis.exceptions as rex

from ...envelope import HEADER_SIZE, MAGIC, Record, decode, peek, verify
from ...exceptions import EnvelopeError, UntrustedRecord
from ...sentinels import MISSING
from ...serializers import Serializer
from .errors import is_wrongtype

__all__ = [
    "ABSENT",
    "BAD",
    "DEAD",
    "INT",
    "LIVE",
    "glob_escape",
    "int_record",
    "parse",
    "probe",
    "set_args",
    "state",
    "ttl_ms",
]

#: Longer lifetimes (~31 700 years) are stored without PX: Redis refuses expiry
#: times that overflow, and the envelope still carries the exact expiry.
MAX_PX = 10**15
#: What INCRBY accepts as an integer (no "+", spaces or leading zeros).
INT = re.compile(rb"-?(?:0|[1-9][0-9]*)")
_GLOB_SPECIAL = re.compile(r"([*?\[\]\\])")

# Liveness of a stored entry, judged from its first HEADER_SIZE bytes.
ABSENT, LIVE, DEAD, BAD = "absent", "live", "dead", "bad"


def ttl_ms(expires_at: float | None, now: float) -> int | None:
    """Return the milliseconds left until ``expires_at`` (``None``: never)."""
    if expires_at is None:
        return None
    return math.ceil((expires_at - now) * 1000)


def pxat(expires_at: float) -> int:
    """Return ``expires_at`` in whole ms for ``PXAT``/``PEXPIREAT``, rounded down.

    Down, not up: a raw int carries no envelope, so this is its only expiry,
    and an entry must never outlive the timeout it was given (rounding up kept
    it live for up to 1 ms past its end, where every other tier had dropped it).
    """
    return math.floor(expires_at * 1000)


def set_args(
    key: str,
    record: Record,
    encode: Callable[[str, Record], bytes | int],
    now: float,
    *,
    nx: bool,
) -> tuple:
    """Return the command storing ``encode(record)`` under ``key``.

    A record already expired at ``now`` gives ``DEL`` (and is not encoded):
    storing an expired value deletes the key.
    """
    ms = ttl_ms(record.expires_at, now)
    if ms is not None and ms <= 0:
        return ("DEL", key)
    value = encode(key, record)
    args: tuple = ("SET", key, value)
    if ms is not None and ms <= MAX_PX:
        if type(value) is int:  # no envelope: Redis keeps the absolute expiry
            args += ("PXAT", pxat(record.expires_at))  # type: ignore[arg-type]
        else:
            args += ("PX", ms)
    if nx:
        args += ("NX",)
    return args


def parse(key: str, data: bytes, now: float, reader: Serializer) -> Record | int | Any:
    """Return the live ``Record`` in ``data`` (stored at ``key``), ``MISSING``
    or a raw int.

    A raw int's expiry is not in ``data``: see ``int_record``. Raise
    ``UntrustedRecord`` for bytes that are neither an envelope signed for
    ``key`` nor an integer, ``RefusedSerializer`` for an envelope ``reader``
    (the cache's serializer) does not read.
    """
    if data.startswith(MAGIC):
        record = decode(data, key, reader)
        # Our clock may run ahead of Redis' TTL.
        return record if record.is_live(now) else MISSING
    if INT.fullmatch(data):
        return int(data)
    raise UntrustedRecord("neither an envelope nor an integer")


def int_record(value: int, expires_ms: int, now: float) -> Record | Any:
    """Return the Record of a raw int given its PEXPIRETIME (ms, -1, -2)."""
    if expires_ms == -2:
        return MISSING
    if expires_ms == -1:
        return Record(value, None, None, 0)
    record = Record(value, None, expires_ms / 1000, 0)
    return record if record.is_live(now) else MISSING


def probe(
    client: Any, key: str, now: float, *, whole: bool = False
) -> tuple[str, bytes | None]:
    """Return the entry's liveness on our clock, and its first bytes.

    ``whole`` reads the whole value and checks its tag (``has_key``,
    ``touch``: what is not signed for ``key`` is then ``BAD``); otherwise only
    the header is read, and not verified (see ``envelope.peek``). ``client``
    may be a pipeline in WATCH mode (commands run at once).
    """
    head = _head(client, key, whole)
    if head and INT.fullmatch(head):
        return state(key, head, now, client.pexpiretime(key)), head
    return state(key, head, now, whole=whole), head


def state(
    key: str,
    head: bytes | None,
    now: float,
    expires_ms: Any = -1,
    *,
    whole: bool = False,
) -> str:
    """Judge the entry at ``key`` by its first bytes (and PEXPIRETIME for raw
    ints). ``whole``: ``head`` is the whole value, and one not signed for
    ``key`` is ``BAD``, like foreign data."""
    if head is None:
        return BAD
    if not head or expires_ms == -2:
        return ABSENT
    if head.startswith(MAGIC):
        try:
            expires_at = (verify(head, key) if whole else peek(head))[0]
        except EnvelopeError:
            return BAD
        live = expires_at is None or expires_at > now
        return LIVE if live else DEAD
    if not INT.fullmatch(head):
        return BAD
    if isinstance(expires_ms, int) and 0 <= expires_ms <= now * 1000:
        return DEAD
    return LIVE


def _head(client: Any, key: str, whole: bool) -> bytes | None:
    """Return the entry's first bytes, enough to judge it (None: not a string).

    ``whole``: all its bytes (``b""`` when absent, as GETRANGE answers).
    """
    try:
        if whole:
            return client.get(key) or b""
        return client.getrange(key, 0, HEADER_SIZE - 1)
    except rex.ResponseError as exc:
        if is_wrongtype(exc):
            return None
        raise


def glob_escape(text: str) -> str:
    """Escape Redis glob characters so ``text`` matches only itself."""
    return _GLOB_SPECIAL.sub(r"\\\1", text)
