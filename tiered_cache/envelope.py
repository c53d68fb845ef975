"""What a shared tier stores: a tag, format version, expiry, stamp, payload.

Layout (version 2), big-endian::

    magic "\\xa7TC" | tag 16 B | version u8 | flags u8 | expires_at f64
    | stamp u64 | payload

* ``expires_at`` is absolute (seconds on the backend's clock, ``inf`` = never),
  so a lower tier's hit can be promoted with its *remaining* lifetime and
  ``touch`` is exact.
* ``stamp`` orders writes of one key (hybrid clock: wall nanoseconds, bumped to
  stay monotonic in this process); the invalidation bus compares it.
* ``flags``: bits 0-1 say how the payload is compressed (zlib, zstd); bits 2-3
  which serializer wrote it (``serializers.ENVELOPE_IDS``: 0 pickle, 1 JSON,
  2 a custom one); bits 4-7 are zero.
* The payload is the value serialized once by the backend (compressed or not).

Why the version stays 2 with serializers: every record written before them
has bits 2-7 clear, which is exactly "pickle", so it reads as it always did
(a pickle cache serves it; a JSON cache refuses it as a pickle record: a
clean, counted miss). A version bump would have turned every stored value
into a miss for nothing. The other direction: a process still running code
from before serializers (nothing of it was released; 0.1.0 is the first)
would hand a JSON payload to ``pickle.loads``, and JSON text fails at
pickle's first opcode, so that too is a rejected miss, never a wrong value.

Authentication (docs/faults.rst #33). Redis and a disk folder can be written by
others, and a payload is unpickled, so every record carries a tag: a keyed
BLAKE2b (key derived from ``SECRET_KEY``, see ``signing``) of everything after
the tag (version, flags, expiry, stamp, payload as stored) followed by the
*final stored key* and that key's length (so no byte can move between key and
payload). ``decode`` checks it before anything is decompressed or unpickled: a
raw pickle, a forged or truncated record, one of an unknown version, or a
valid record copied from another key is an ``UntrustedRecord``, a counted,
logged miss. A record that verifies with a ``SECRET_KEY_FALLBACKS`` key is
trusted (key rotation); ``retime`` signs it again with ``SECRET_KEY``.

The serializer id is inside the signed part, so it cannot be changed without
the key. ``decode`` is given the reading cache's serializer and refuses, as a
``RefusedSerializer`` (a counted, logged miss, before decompression), a record
that serializer does not read: a cache with ``SERIALIZER: "json"`` never
unpickles, not even a record signed with a leaked ``SECRET_KEY``.

``peek`` reads the header alone (Redis ``GETRANGE``) and does *not* verify it:
its answers (expiry, stamp) only decide whether to report a delete, refuse an
``add`` or replay a write, never what is served.

Integers of exact type ``int`` are the one exception: shared tiers keep them
raw (Redis as a decimal string, diskcache as an SQLite integer) so ``incr`` is
atomic where they live (INCRBY, diskcache's transaction). A raw integer is
parsed, never deserialized, so it needs no tag.
"""

from __future__ import annotations

import math
import pickle
import struct
import time
import zlib
from hmac import compare_digest
from typing import Any

from .exceptions import EnvelopeError, RefusedSerializer, UntrustedRecord
from .forksafe import renewed_lock
from .serializers import ENVELOPE_IDS, PICKLE, PICKLE_PROTOCOL, Serializer
from .signing import KEYRING, TAG_SIZE, keys

__all__ = [
    "FORMAT_VERSION",
    "MAGIC",
    "MAX_STAMP_LEAD_NS",
    "PICKLE_PROTOCOL",
    "STAMP_MAX",
    "Record",
    "decode",
    "encode",
    "is_raw_int",
    "materialize",
    "new_stamp",
    "observe_stamp",
    "peek",
    "retime",
    "verify",
]

MAGIC = b"\xa7TC"
FORMAT_VERSION = 2

_HEADER = struct.Struct(f">3s{TAG_SIZE}sBBdQ")
_FIELDS = struct.Struct(">BBdQ")  # what follows the tag in the header
HEADER_SIZE = _HEADER.size
#: The tag covers every byte from here on, then the stored key.
_SIGNED = 3 + TAG_SIZE
#: Above this size the signed part is hashed through a memoryview, not copied.
_COPY_LIMIT = 4096
_FLAG_ZLIB = 0x01
_FLAG_ZSTD = 0x02
_COMPRESSION_FLAGS = _FLAG_ZLIB | _FLAG_ZSTD


class Record:
    """One value on its way into or out of a tier.

    ``payload`` is the serialized value, or ``None`` for a raw ``int``; it is
    serialized on first use when a tier handed over only a live immutable
    value. ``value`` is the live object when known (it is returned to callers
    and may be kept as-is by L1 when immutable). ``serializer`` wrote the
    payload (or will); ``None`` when a tier built the record from a live
    value: the tier that stores it serializes it with its own (``encode``).
    """

    __slots__ = ("value", "_payload", "expires_at", "stamp", "serializer")

    def __init__(
        self,
        value: Any,
        payload: bytes | None,
        expires_at: float | None,
        stamp: int,
        serializer: Serializer | None = None,
    ) -> None:
        self.value = value
        self._payload = payload
        self.expires_at = expires_at
        self.stamp = stamp
        self.serializer = serializer

    @classmethod
    def for_value(
        cls, value: Any, expires_at: float | None, serializer: Serializer = PICKLE
    ) -> Record:
        """Serialize ``value`` once for every tier (raises if it cannot be).

        A raw ``int`` is not serialized: shared tiers keep it as a number.
        """
        payload = None if is_raw_int(value) else serializer.dumps(value)
        return cls(value, payload, expires_at, new_stamp(), serializer)

    @property
    def payload(self) -> bytes | None:
        """Return the serialized value; ``None`` only for a raw ``int``."""
        payload = self._payload
        if payload is None and not is_raw_int(self.value):
            serializer = self.serializer
            if serializer is None:
                serializer = self.serializer = PICKLE
            payload = self._payload = serializer.dumps(self.value)
        return payload

    @property
    def size(self) -> int:
        """Return the payload size in bytes (what placement limits compare)."""
        payload = self.payload
        return 8 if payload is None else len(payload)

    def is_live(self, now: float) -> bool:
        """Return whether the record has not expired at ``now``."""
        expires_at = self.expires_at
        return expires_at is None or expires_at > now

    def remaining(self, now: float) -> float | None:
        """Return seconds left to live at ``now`` (``None`` = forever)."""
        return None if self.expires_at is None else self.expires_at - now

    def __repr__(self) -> str:
        return (
            f"Record(size={self.size}, expires_at={self.expires_at}, "
            f"stamp={self.stamp})"
        )


def is_raw_int(value: Any) -> bool:
    """Return whether ``value`` is kept raw in shared tiers (exact 64-bit int)."""
    return type(value) is int and _INT64_MIN <= value <= _INT64_MAX


_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1


class _StampClock:
    """A hybrid logical clock: wall-clock nanoseconds, never handing out a stamp
    twice, and moved past every stamp this process has seen from others.

    ``observe`` is called for stamps that arrive from other processes and
    machines (bus messages), so a write that follows a remote write it has
    heard of gets a larger stamp even when this machine's clock runs behind.
    """

    def __init__(self) -> None:
        self.last = 0
        self._lock = renewed_lock(self)

    def next(self) -> int:
        now = time.time_ns()
        with self._lock:
            if now <= self.last:
                now = self.last + 1
            self.last = now
        return now

    def observe(self, stamp: int) -> None:
        if stamp > self.last:
            with self._lock:
                if stamp > self.last:
                    self.last = stamp


_stamps = _StampClock()

#: The largest stamp an envelope holds (``u64``).
STAMP_MAX = 2**64 - 1

#: How far ahead of this machine's wall clock a stamp seen from elsewhere may
#: be and still move this process's clock: 5 minutes. Clocks of one
#: deployment agree far better (NTP); a stamp further ahead is a broken clock
#: or a forged message, and following it would push every later stamp of this
#: process (and of every process that hears of them) that far ahead, or past
#: ``STAMP_MAX``. Bounded by the wall clock, not by the clock's last stamp, so
#: a series of stamps cannot ratchet it further.
MAX_STAMP_LEAD_NS = 300 * 10**9


def observe_stamp(stamp: int) -> bool:
    """Move this process's clock past ``stamp`` (seen from another process).

    Return False, and leave the clock alone, for a stamp more than
    ``MAX_STAMP_LEAD_NS`` ahead of the wall clock. The message that carried
    it may still drop copies: dropping one is always safe.
    """
    if stamp > time.time_ns() + MAX_STAMP_LEAD_NS:
        return False
    _stamps.observe(stamp)
    return True


def new_stamp() -> int:
    """Return a stamp larger than any this process handed out before."""
    return _stamps.next()


def encode(
    record: Record,
    key: str,
    *,
    serializer: Serializer = PICKLE,
    compress_min_bytes: int | None = None,
    compressor: str = "zlib",
    compress_level: int | None = None,
) -> bytes | int:
    """Return what a shared tier stores for ``record`` under ``key``.

    ``key`` is the final key the tier stores it under (the tags bind it). A
    raw ``int`` is returned for integer records. ``serializer`` (the tier's)
    serializes a record that has neither a payload nor a serializer of its
    own; the one that wrote the payload is named in the flags. Payloads at
    least ``compress_min_bytes`` long are compressed when that shrinks them.
    """
    payload = record._payload
    writer = record.serializer or serializer
    if payload is None:
        value = record.value
        if is_raw_int(value):
            return value
        payload = writer.dumps(value)
    flags = writer.flag
    if compress_min_bytes is not None and len(payload) >= compress_min_bytes:
        packed, flag = _compress(payload, compressor, compress_level)
        if len(packed) < len(payload):
            payload, flags = packed, flags | flag
    expires_at = math.inf if record.expires_at is None else record.expires_at
    signed = _FIELDS.pack(FORMAT_VERSION, flags, expires_at, record.stamp) + payload
    return MAGIC + _tag(keys()[0], signed, key) + signed


def decode(data: bytes, key: str, reader: Serializer) -> Record:
    """Parse stored bytes into a ``Record`` whose ``value`` is not decoded yet.

    Raises ``UntrustedRecord`` (an ``EnvelopeError``) for anything that is not
    an envelope of this version signed for ``key`` by this deployment, and
    ``RefusedSerializer`` for a record written by a serializer that ``reader``
    (the reading cache's) does not decode, both before the payload is
    decompressed; ``EnvelopeError`` for a signed payload that does not
    decompress. The caller counts each and treats it as a miss. This is the
    L2-hit path: the check is written out here, one frame.
    """
    size = len(data)
    if size < HEADER_SIZE:
        raise UntrustedRecord("stored value is shorter than an envelope header")
    magic, tag, version, flags, expires_at, stamp = _HEADER.unpack_from(data)
    if magic != MAGIC:
        raise UntrustedRecord("stored value is not a tiered_cache envelope")
    if version != FORMAT_VERSION:
        raise UntrustedRecord(f"unknown envelope format version {version}")
    name = _NAMES.get(key) or _name(key)
    mac = (KEYRING or keys())[0].copy()
    if size <= _COPY_LIMIT:
        mac.update(data[_SIGNED:] + name)
    else:  # no copy of a large payload
        mac.update(memoryview(data)[_SIGNED:])
        mac.update(name)
    if not compare_digest(mac.digest(), tag) and not _signed_by_fallback(
        data, key, tag
    ):
        raise UntrustedRecord(_NOT_SIGNED)
    serializer = reader.readers[flags >> 2]
    if serializer is None:
        raise RefusedSerializer(_refusal(flags, reader))
    payload = data[HEADER_SIZE:]
    if flags & _COMPRESSION_FLAGS:
        payload = _decompress(payload, flags)
    return Record(
        MISSING_VALUE,
        payload,
        None if expires_at == math.inf else expires_at,
        stamp,
        serializer,
    )


def _refusal(flags: int, reader: Serializer) -> str:
    writer = {v << 2: k for k, v in ENVELOPE_IDS.items()}.get(flags & ~3)
    written = f"a {writer} record" if writer else f"a record with flags {flags:#04x}"
    return (
        f"{written}, and this cache's SERIALIZER {reader.name!r} does not read "
        "it (never deserialized)"
    )


def verify(data: bytes | bytearray | memoryview, key: str) -> tuple[float | None, int]:
    """Return ``(expires_at, stamp)`` of the whole record ``data`` once its tag
    checks for ``key`` (``UntrustedRecord`` otherwise); nothing is decompressed.
    """
    record = _signed_by(bytes(data), key)[1]
    return record.expires_at, record.stamp


def peek(data: bytes | bytearray | memoryview) -> tuple[float | None, int]:
    """Return ``(expires_at, stamp)`` from an envelope's header, *unverified*.

    For decisions that never serve a value (was a delete of a live entry, may
    ``add`` replace it, is a replayed write newer); raises ``UntrustedRecord``
    for what is not an envelope header of this version at all.
    """
    if len(data) < HEADER_SIZE:
        raise UntrustedRecord("stored value is shorter than an envelope header")
    magic, _tag, version, _flags, expires_at, stamp = _HEADER.unpack_from(data)
    if magic != MAGIC or version != FORMAT_VERSION:
        raise UntrustedRecord("stored value is not a known tiered_cache envelope")
    return (None if expires_at == math.inf else expires_at), stamp


def retime(data: bytes, expires_at: float | None, key: str) -> bytes:
    """Return the whole record ``data`` with a new absolute expiry, signed again.

    The tag must verify first (``UntrustedRecord``): a forged record is never
    re-signed. The new tag is SECRET_KEY's even when a fallback key verified.
    ``touch`` on Redis writes back only the first ``HEADER_SIZE`` bytes.
    """
    data = bytes(data)
    flags = _signed_by(data, key)[0]
    expiry = math.inf if expires_at is None else expires_at
    stamp = _HEADER.unpack_from(data)[5]
    signed = _FIELDS.pack(FORMAT_VERSION, flags, expiry, stamp) + data[HEADER_SIZE:]
    return MAGIC + _tag(keys()[0], signed, key) + signed


def _signed_by(data: bytes, key: str) -> tuple[int, Record]:
    """Return ``(flags, Record without payload)`` if ``data`` verifies."""
    if len(data) < HEADER_SIZE:
        raise UntrustedRecord("stored value is shorter than an envelope header")
    magic, tag, version, flags, expires_at, stamp = _HEADER.unpack_from(data)
    if magic != MAGIC or version != FORMAT_VERSION:
        raise UntrustedRecord("stored value is not a known tiered_cache envelope")
    signed = memoryview(data)[_SIGNED:]
    if not any(compare_digest(_tag(p, signed, key), tag) for p in keys()):
        raise UntrustedRecord(_NOT_SIGNED)
    expiry = None if expires_at == math.inf else expires_at
    return flags, Record(MISSING_VALUE, None, expiry, stamp)


def _tag(proto: Any, signed: bytes | memoryview, key: str) -> bytes:
    mac = proto.copy()
    mac.update(signed)
    mac.update(_NAMES.get(key) or _name(key))
    return mac.digest()


def _signed_by_fallback(data: bytes, key: str, tag: bytes) -> bool:
    """Return whether a SECRET_KEY_FALLBACKS key made ``tag`` (rotation)."""
    signed = memoryview(data)[_SIGNED:]
    return any(compare_digest(_tag(p, signed, key), tag) for p in keys()[1:])


def _name(key: str) -> bytes:
    """Return what the tag's message ends with for ``key``: the key, then its
    length (``_length``). Kept for the next read of the same key, up to
    ``_NAMES_LIMIT`` keys (then the table starts over)."""
    name = key.encode("utf-8", "surrogatepass")
    name += _length(len(name))
    if len(_NAMES) >= _NAMES_LIMIT:
        _NAMES.clear()
    _NAMES[key] = name
    return name


#: key -> ``_name(key)``: a read of a known key skips the encoding.
_NAMES: dict[str, bytes] = {}
_NAMES_LIMIT = 4096


def _length(size: int) -> bytes:
    """Return ``size`` as the suffix that ends a tag's message, read backwards.

    7 bits a byte, most significant first; only the first byte has its top bit
    clear, so reading from the end, the bytes with the bit set and then one
    without are the length, and no byte can move between the payload and the
    key. Keys under 128 bytes take one byte (``_SHORT_LENGTHS``): a message of
    18 bytes of fields, a 100-byte payload and a short key then fits in one
    128-byte BLAKE2b block.
    """
    if size < 128:
        return _SHORT_LENGTHS[size]
    groups = [0x80 | (size & 0x7F)] if size >= 128 else [size]
    size >>= 7
    while size:
        groups.append((0x80 if size >= 128 else 0) | (size & 0x7F))
        size >>= 7
    return bytes(reversed(groups))


_SHORT_LENGTHS = tuple(bytes([size]) for size in range(128))


_NOT_SIGNED = (
    "stored record is not signed for this key by SECRET_KEY "
    "(nor by a SECRET_KEY_FALLBACKS key)"
)


def materialize(record: Record) -> Any:
    """Return the record's value, deserializing the payload on first use.

    With the serializer that wrote it, as ``decode`` (or the memory tier)
    chose it for the reading cache.
    """
    value = record.value
    if value is MISSING_VALUE:
        # A record without its value always has its payload and its
        # serializer: no property. Pickle is called by name: on the L2-hit
        # path that is cheaper than the serializer's attribute.
        serializer = record.serializer
        try:
            if serializer is PICKLE:
                value = _pickle_loads(record._payload)  # type: ignore[arg-type]
            else:
                value = serializer.loads(record._payload)  # type: ignore[union-attr]
        except Exception as exc:
            raise EnvelopeError(f"payload does not deserialize: {exc!r}") from exc
        record.value = value
    return value


_pickle_loads = pickle.loads


class _MissingValue:
    __slots__ = ()

    def __repr__(self) -> str:
        return "<value not deserialized yet>"


MISSING_VALUE = _MissingValue()


def _compress(payload: bytes, compressor: str, level: int | None) -> tuple[bytes, int]:
    if compressor == "zstd":
        import zstandard  # optional: the [zstd] extra

        return zstandard.ZstdCompressor(level=level or 3).compress(payload), _FLAG_ZSTD
    return zlib.compress(payload, 6 if level is None else level), _FLAG_ZLIB


def _decompress(payload: bytes, flags: int) -> bytes:
    try:
        if flags & _FLAG_ZSTD:
            import zstandard

            return zstandard.ZstdDecompressor().decompress(payload)
        return zlib.decompress(payload)
    except Exception as exc:  # ImportError too: zstd payload, no zstandard
        raise EnvelopeError(f"payload does not decompress: {exc!r}") from exc
