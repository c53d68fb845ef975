"""The invalidation bus's transport on Redis: a Stream and a generation key.

A Redis Stream keeps messages after they are read, so a listener that lost
its connection resumes from the last id it saw and misses nothing, unlike
pub/sub, which drops messages silently while a subscriber is away or slow
(docs/faults.rst #21, #22). ``MAXLEN ~`` bounds it; ``XINFO STREAM`` tells a
reader whether trimming went past it (the first entry kept is after the last
one it read), the stream was emptied (no entry, but it generated ids past the
reader's) or deleted and made again (its last id is behind the reader's):
``StreamState.lost_after``.

A write and its announcement go in one script (``_WRITE_LUA``) when the stream
and the written keys live on one server (single, replicas, Sentinel: the
writes go to the primary, and so does the stream): one round trip, one
command and one reply, run atomically, so no reader sees the value without its
announcement. A ``MULTI``/``EXEC`` did the same with four commands and four
replies to parse: twice django-redis's client work for a ``set``. On Cluster
the stream's slot is not the key's, so ``joins_writes`` is False and the
chain appends separately (``coherence`` queues what fails).

A restart that loses the data (no persistence, a flush) would leave a reader
waiting on ids that no longer mean anything. The *generation* key holds a
random token written once (``SET NX``): a reader that finds another token, or
none, knows the server's data is not what it was, and must treat everything
before as missed. Both keys share a hash tag, so on Cluster they live in one
slot; when that slot's master fails over, its replica serves both.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import redis.exceptions as rex

from ..base import Stream, StreamState
from . import direct
from .errors import TRANSPORT_ERRORS, unavailable

__all__ = ["RedisStream"]

#: Entries kept (approximately): a reader away for longer has a gap.
DEFAULT_MAXLEN = 100_000

#: Append the message, then run the writes. KEYS: the stream, then one key per
#: write; ARGV: MAXLEN, the number of field/value pairs and the pairs, then per
#: write its argument count and its arguments (the command's name first, the
#: key left out: it is in KEYS). The message goes first: if Redis refuses a
#: write (out of memory), an announcement without its value costs readers a
#: miss, while a value without its announcement would leave other processes'
#: copies stale. A message refused (out of memory, no permission) refuses
#: the writes, but for one reason: the stream key holds another type, which
#: only the message can fix (a new stream); then the writes are made and the
#: reply is 0.
_WRITE_LUA = """
local xadd = {'XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*'}
local i = 3
for _ = 1, 2 * tonumber(ARGV[2]) do
    xadd[#xadd + 1] = ARGV[i]
    i = i + 1
end
local appended = redis.pcall(unpack(xadd))
local refused = type(appended) == 'table' and appended.err
if refused and string.sub(appended.err, 1, 9) ~= 'WRONGTYPE' then
    return redis.error_reply(appended.err)
end
for k = 2, #KEYS do
    local argc = tonumber(ARGV[i])
    local command = {ARGV[i + 1], KEYS[k]}
    for a = 2, argc do
        command[#command + 1] = ARGV[i + a]
    end
    i = i + argc + 1
    redis.call(unpack(command))
end
if refused then
    return 0
end
return 1
"""
_WRITE_SHA = hashlib.sha1(_WRITE_LUA.encode()).hexdigest()


class RedisStream(Stream):
    """One Redis Stream ``{name}`` and its generation key, through a tier."""

    def __init__(self, tier: Any, name: str, maxlen: int = DEFAULT_MAXLEN) -> None:
        self.tier = tier
        self.key = f"{{{name}}}"  # one hash slot with the generation key
        self.generation_key = f"{self.key}:generation"
        self.maxlen = maxlen
        self.joins_writes = tier.mode != "cluster"
        timeout = tier.socket_timeout
        #: A blocking read must answer well within the socket timeout.
        self.max_block = 0.05 if timeout is None else min(0.05, timeout / 2)

    def _client(self) -> Any:
        return self.tier._writer(self.key)

    def _failed(self, op: str, exc: BaseException) -> Exception:
        """Return the ``TierUnavailable`` for ``exc``, after the tier's recovery.

        On Cluster, ``_recover`` re-reads the slot map: without it a bus whose
        slot moved in a failover kept failing until a request path call of
        the tier happened to refresh the topology.
        """
        self.tier._recover(exc)
        return unavailable(self.tier.name, op, exc)

    def append(self, fields: Mapping[str, str]) -> str:
        try:
            entry = self._client().xadd(
                self.key, dict(fields), maxlen=self.maxlen, approximate=True
            )
        except TRANSPORT_ERRORS as exc:
            raise self._failed("announce", exc) from exc
        return _text(entry)

    def append_after(
        self, commands: Sequence[tuple], fields: Mapping[str, str]
    ) -> bool:
        """Append ``fields`` and run write ``commands`` in one script.

        ``commands`` are ``(name, key, *args)``. Return whether the message was
        appended. Transport errors are raised as they are (the calling tier
        method maps them): then nothing was stored, or, if the connection died
        after the script ran, both were. A write Redis refuses (``OOM``,
        ``READONLY``, ``NOPERM``) raises its error: the message may have gone
        out, the value did not (``_WRITE_LUA``).
        """
        keys = [self.key]
        argv: list[Any] = [self.maxlen, len(fields)]
        for field, value in fields.items():
            argv += (field, value)
        for name, key, *rest in commands:
            keys.append(key)
            argv += (len(rest) + 1, name, *rest)
        appended = direct.script(self._client(), _WRITE_SHA, _WRITE_LUA, keys, argv)
        return bool(appended)

    def new_generation(self) -> None:
        try:
            self._client().set(self.generation_key, uuid.uuid4().hex)
        except TRANSPORT_ERRORS as exc:
            raise self._failed("announce", exc) from exc

    def read(
        self, after: str, block: float, count: int
    ) -> tuple[list[tuple[str, dict]], bool]:
        """``XRANGE after after`` then ``XREAD``, pipelined: Redis runs one
        client's queued commands back to back, so nothing trims the stream
        between the two. Trimming removes the oldest entries first: while
        ``after`` is held, so is everything after it.
        """
        block_ms = int(min(block, self.max_block) * 1000)
        try:
            pipe = self._client().pipeline(transaction=False)
            if after != "0-0":
                pipe.xrange(self.key, after, after)
            pipe.xread({self.key: after}, count=count, block=block_ms or None)
            *kept, reply = pipe.execute()
        except TRANSPORT_ERRORS as exc:
            raise self._failed("listen", exc) from exc
        messages = []
        for _stream, entries in reply or ():
            for entry_id, fields in entries:
                messages.append(
                    (_text(entry_id), {_text(k): _text(v) for k, v in fields.items()})
                )
        return messages, not kept or bool(kept[0])

    def state(self) -> StreamState:
        client = self._client()
        try:
            pipe = client.pipeline(transaction=False)
            pipe.set(self.generation_key, uuid.uuid4().hex, nx=True)
            pipe.get(self.generation_key)
            _, generation = pipe.execute()
            try:
                info = client.xinfo_stream(self.key)
            except rex.ResponseError as exc:
                if "no such key" not in str(exc).lower():
                    raise
                info = {}
        except TRANSPORT_ERRORS as exc:
            raise self._failed("listen", exc) from exc
        return StreamState(
            generation=_text(generation),
            last_id=_text(info.get("last-generated-id", "0-0")),
            first_id=_text((info.get("first-entry") or ("0-0",))[0]),
            entries_added=info.get("entries-added"),
            length=info.get("length"),
        )


def _text(value: Any) -> str:
    # Anyone may append anything: bytes that are not UTF-8 must not make the
    # read fail on every try (the listener could never move past them).
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)
