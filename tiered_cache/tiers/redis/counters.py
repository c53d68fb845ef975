"""``incr`` on Redis: a server-side INCRBY on the raw integer.

An integer that fits in 64 bits is stored raw (see ``wire``), so ``incr`` is a
server-side ``INCRBY``, wrapped in a Lua script that first checks the entry is
live on the backend's clock: INCRBY alone would create a missing key, where
Django raises ``ValueError``.
"""

from __future__ import annotations

import hashlib
import math
from typing import TYPE_CHECKING

import redis.exceptions as rex

from . import wire

if TYPE_CHECKING:
    from .tier import RedisTier

__all__ = ["incr"]

# PEXPIRETIME is -2 for a missing key, -1 without expiry, else the absolute
# expiry in ms, compared with the backend's clock (ARGV[2], ms).
_INCR_LUA = """\
local expires = redis.call('PEXPIRETIME', KEYS[1])
if expires == -2 or (expires >= 0 and expires <= tonumber(ARGV[2])) then
  return false
end
return redis.call('INCRBY', KEYS[1], ARGV[1])
"""
_INCR_SHA = hashlib.sha1(_INCR_LUA.encode()).hexdigest()


def incr(tier: RedisTier, key: str, delta: int) -> int:
    """Add ``delta`` to the integer at ``key`` atomically; return the result.

    Raise ``ValueError`` when the key is absent (or dead on our clock),
    ``TypeError`` when its value is not an integer.
    """
    client = tier._writer(key)
    now_ms = math.floor(tier.clock() * 1000)
    try:
        try:
            result = client.evalsha(_INCR_SHA, 1, key, delta, now_ms)
        except rex.NoScriptError:
            result = client.eval(_INCR_LUA, 1, key, delta, now_ms)
    except rex.ResponseError as exc:
        message = str(exc)
        if "not an integer" not in message and "WRONGTYPE" not in message:
            raise
        if wire.probe(client, key, tier.clock())[0] in (wire.ABSENT, wire.DEAD):
            raise ValueError(f"Key '{key}' not found") from None
        raise TypeError(
            f"cannot incr {key!r}: the stored value is not an integer or the "
            f"result does not fit in 64 bits ({message})"
        ) from exc
    if result is None:
        raise ValueError(f"Key '{key}' not found")
    return int(result)
