"""``incr`` on Redis: atomic where the counter lives, in 64 bits and past them.

An integer that fits in 64 bits is stored raw (see ``wire``), so ``incr`` is a
server-side ``INCRBY``, wrapped in a Lua script that first checks the entry is
live on the backend's clock: INCRBY alone would create a missing key, where
Django raises ``ValueError``.

Redis refuses what does not fit in 64 bits ("increment or decrement would
overflow", a delta out of range) and anything that is not a raw integer. Those
refusals are data, not an outage: the counter is then read, added to in
Python and written back in one optimistic transaction (WATCH/MULTI), keeping
its absolute expiry. Past 64 bits it is stored as an envelope holding the
pickled int, the way Django's own get-and-set ``incr`` and the disk tier store
it; once the result fits again it is stored raw again. Only what is not an
integer at all raises ``TypeError``, with a message of our own.
"""

from __future__ import annotations

import hashlib
import math
from typing import TYPE_CHECKING, Any

import redis.exceptions as rex

from ...envelope import MAGIC, Record, decode, materialize, new_stamp
from ...exceptions import EnvelopeError, UntrustedRecord
from ...sentinels import MISSING, Constant
from ..base import Count
from . import direct
from .errors import is_wrongtype, unavailable
from .wire import INT, int_record, pxat

if TYPE_CHECKING:
    from .tier import RedisTier

__all__ = ["add_count", "incr"]

# PEXPIRETIME is -2 for a missing key, -1 without expiry, else the absolute
# expiry in ms. Only a raw integer's expiry was set on the backend's clock
# (PXAT, see ``wire``), so only then is it compared with that clock (ARGV[2],
# ms); anything longer than 20 bytes cannot be a 64-bit integer (an envelope's
# header alone is 21) and goes to Python ({1}), which reads the envelope's own
# expiry: a relative PX is on Redis' clock, which may differ from ours. The
# result is read back with GET, as a string: Lua holds numbers as doubles, so
# returning INCRBY's reply would round every count above 2**53. The expiry
# comes back with it: the chain keeps copies of the count until then.
# With a second key, the bus's stream, the change is announced in the same
# script (ARGV[3]: MAXLEN, ARGV[4]: field/value pairs, then the pairs), before
# INCRBY: a refused INCRBY then leaves a message that costs readers a miss,
# never a count no one was told of. The third value says whether it went out.
_INCR_LUA = """\
local expires = redis.call('PEXPIRETIME', KEYS[1])
if expires == -2 then
  return false
end
if redis.call('STRLEN', KEYS[1]) > 20 then
  return {1}
end
if expires >= 0 and expires <= tonumber(ARGV[2]) then
  return false
end
local appended = 0
if #KEYS > 1 then
  local xadd = {'XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], '*'}
  for i = 5, 4 + 2 * tonumber(ARGV[4]) do
    xadd[#xadd + 1] = ARGV[i]
  end
  local reply = redis.pcall(unpack(xadd))
  if not (type(reply) == 'table' and reply.err) then
    appended = 1
  end
end
redis.call('INCRBY', KEYS[1], ARGV[1])
return {redis.call('GET', KEYS[1]), expires, appended}
"""
_INCR_SHA = hashlib.sha1(_INCR_LUA.encode()).hexdigest()

# A journaled incr (``add_count``): a raw integer gets the delta (its expiry
# kept); no key takes the count kept elsewhere, with its expiry (ARGV[3], ms,
# or '' for none); anything else goes: a miss, never a wrong count. The count
# now stored comes back, as a string (Lua's numbers are doubles).
_ADD_COUNT_LUA = """\
local stored = redis.call('GET', KEYS[1])
if not stored then
  if ARGV[3] == '' then
    redis.call('SET', KEYS[1], ARGV[2])
  else
    redis.call('SET', KEYS[1], ARGV[2], 'PXAT', ARGV[3])
  end
  return ARGV[2]
end
if string.len(stored) <= 20 and string.match(stored, '^-?%d+$') then
  local ok = redis.pcall('INCRBY', KEYS[1], ARGV[1])
  if type(ok) == 'number' then
    return redis.call('GET', KEYS[1])
  end
end
redis.call('DEL', KEYS[1])
return false
"""

#: INCRBY's refusals that say "not a 64-bit integer here" (the stored value or
#: the result or the delta); any other error reply is the server's trouble.
_NOT_INT64 = (
    "increment or decrement would overflow",
    "value is not an integer or out of range",
)
_NOT_HERE = Constant("NOT_HERE")  # not a raw 64-bit counter: added in Python
#: Optimistic attempts before concurrent writers make ``incr`` give up.
_ATTEMPTS = 10


def incr(
    tier: RedisTier, key: str, delta: int, announce: tuple[Any, ...] = ()
) -> tuple[int, bool]:
    """Add ``delta`` to the integer at ``key`` atomically; return the result
    and whether the change was announced.

    ``announce`` is ``(stream key, MAXLEN, fields)``, or empty: then nothing
    is. Raise ``ValueError`` when the key is absent (or dead on our clock),
    ``TypeError`` when its value is not an integer.
    """
    client = tier._writer(key)
    keys, argv = [key], [delta, math.floor(tier.clock() * 1000)]
    if announce:
        stream_key, maxlen, fields = announce
        keys.append(stream_key)
        argv += (maxlen, len(fields))
        for field, value in fields.items():
            argv += (field, value)
    result = _incrby(client, keys, argv)
    if result is _NOT_HERE:
        return _incr_in_python(tier, client, key, delta), False
    if result is None:
        raise ValueError(f"Key '{key}' not found")
    value, expires_ms, appended = result
    count = Count(int(value), None if expires_ms < 0 else expires_ms / 1000)
    return count, appended == 1


def add_count(
    tier: RedisTier, key: str, delta: int, value: int, expires_at: float | None
) -> int | None:
    """See ``BaseTier.add_count``: one script at the key's primary."""
    if expires_at is not None and expires_at <= tier.clock():
        expires = "1"  # already over: stored dead, so nothing is filled in
    else:
        expires = "" if expires_at is None else str(pxat(expires_at))
    client = tier._writer(key)
    count = client.eval(_ADD_COUNT_LUA, 1, key, delta, value, expires)
    return None if count is None else int(count)


def _incrby(client: Any, keys: list[str], argv: list[Any]) -> Any:
    """Run the script: the result, ``None`` (no live key) or ``_NOT_HERE``.

    ``_NOT_HERE`` stands for INCRBY's refusal; its text names the Lua script,
    so it never reaches the caller, not even as an exception's context.
    """
    try:
        result = direct.script(client, _INCR_SHA, _INCR_LUA, keys, argv)
        if result is not None and len(result) == 1:  # {1}: not a raw counter
            return _NOT_HERE
        return result
    except rex.ResponseError as exc:
        if is_wrongtype(exc) or any(text in str(exc) for text in _NOT_INT64):
            return _NOT_HERE
        raise


def _incr_in_python(tier: RedisTier, client: Any, key: str, delta: int) -> int:
    """Read, add and write back under WATCH; the result is stored raw if it fits."""
    for _ in range(_ATTEMPTS):
        with client.pipeline(transaction=True) as pipe:
            try:
                pipe.watch(key)
                value, expires_at = _read(tier, pipe, key)
                result = value + delta
                record = Record(result, None, expires_at, new_stamp())
                pipe.multi()
                pipe.execute_command(*tier._set_args(key, record))
                pipe.execute()
                return Count(result, expires_at)
            except rex.WatchError:
                continue
    lost = rex.WatchError(f"{key!r} changed during each of {_ATTEMPTS} attempts")
    raise unavailable(tier.name, "incr", lost) from lost


def _read(tier: RedisTier, pipe: Any, key: str) -> tuple[int, float | None]:
    """Return the integer at ``key`` and its absolute expiry (a WATCHing pipe)."""
    try:
        data = pipe.get(key)
    except rex.ResponseError as exc:
        if not is_wrongtype(exc):
            raise
        raise _not_an_integer(key, "not a string") from None
    now = tier.clock()
    if data is None:
        raise ValueError(f"Key '{key}' not found")
    if INT.fullmatch(data):
        record = int_record(int(data), pipe.pexpiretime(key), now)
    elif data.startswith(MAGIC):
        try:
            record = decode(data, key, tier.serializer)
            if record.is_live(now):
                materialize(record)
        except EnvelopeError as exc:
            tier.reject(key, exc)  # a rejected miss, as on get
            raise ValueError(f"Key '{key}' not found") from None
    else:
        tier.reject(key, UntrustedRecord("neither an envelope nor an integer"))
        raise _not_an_integer(key, "neither an envelope nor an integer")
    if record is MISSING or not record.is_live(now):
        raise ValueError(f"Key '{key}' not found")
    if type(record.value) is not int:
        raise _not_an_integer(key, f"a {type(record.value).__name__}")
    return record.value, record.expires_at


def _not_an_integer(key: str, what: str) -> TypeError:
    return TypeError(
        f"cannot incr {key!r}: the stored value is not an integer ({what})"
    )
