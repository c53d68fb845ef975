from __future__ import annotations

import math
import pickle
import struct

import pytest

from tiered_cache import envelope, signing
from tiered_cache.envelope import Record, decode, encode, materialize, new_stamp
from tiered_cache.exceptions import EnvelopeError, UntrustedRecord
from tiered_cache.serializers import PICKLE


def test_round_trip_keeps_expiry_and_stamp():
    record = Record.for_value({"a": 1}, 1234.5)
    decoded = decode(encode(record, "k"), "k", PICKLE)
    assert decoded.expires_at == 1234.5
    assert decoded.stamp == record.stamp
    assert materialize(decoded) == {"a": 1}


def test_never_expiring_round_trip():
    assert (
        decode(encode(Record.for_value("v", None), "k"), "k", PICKLE).expires_at is None
    )


def test_raw_ints_stay_raw():
    record = Record.for_value(42, None)
    assert record.payload is None
    assert encode(record, "k") == 42
    assert Record.for_value(True, None).payload is not None  # bool is not an int here


@pytest.mark.parametrize("compressor", ["zlib", "zstd"])
def test_compression_above_threshold(compressor):
    pytest.importorskip("zstandard") if compressor == "zstd" else None
    value = "x" * 5000
    record = Record.for_value(value, None)
    packed = encode(record, "k", compress_min_bytes=100, compressor=compressor)
    assert len(packed) < len(record.payload)
    assert materialize(decode(packed, "k", PICKLE)) == value
    small = encode(record, "k", compress_min_bytes=10**6, compressor=compressor)
    assert len(small) > len(record.payload)


def test_incompressible_payload_is_stored_plain():
    import os

    record = Record.for_value(os.urandom(2000), None)
    packed = encode(record, "k", compress_min_bytes=10)
    assert packed[20] == 0  # no compression flag (after magic, tag, version)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"short",
        pickle.dumps({"raw": "pickle"}) * 3,
        envelope.MAGIC + bytes([99, 0]) + struct.pack(">dQ", 0.0, 0) + b"x" * 40,
        envelope.MAGIC + bytes([1, 0]) + struct.pack(">dQ", math.inf, 0) + b"x" * 40,
        envelope.MAGIC + bytes([2, 0]) + struct.pack(">dQ", math.inf, 0) + b"x" * 40,
    ],
)
def test_bad_bytes_are_untrusted(data):
    with pytest.raises(UntrustedRecord):
        decode(data, "k", PICKLE)


def test_a_signed_payload_that_does_not_decompress_is_an_envelope_error():
    signed = encode(Record(None, b"z" * 200, None, 1), "k", compress_min_bytes=10)
    assert signed[20] & 1  # zlib
    bad = signed[19 : envelope.HEADER_SIZE] + b"not zlib"
    forged_by_us = envelope.MAGIC + envelope._tag(signing.keys()[0], bad, "k") + bad
    with pytest.raises(EnvelopeError) as caught:
        decode(forged_by_us, "k", PICKLE)
    assert not isinstance(caught.value, UntrustedRecord)


def test_bad_payload_is_an_envelope_error_on_materialize():
    record = decode(encode(Record(None, b"\x80\x05garbage", None, 1), "k"), "k", PICKLE)
    with pytest.raises(EnvelopeError):
        materialize(record)


def test_stamps_are_strictly_increasing():
    stamps = [new_stamp() for _ in range(1000)]
    assert stamps == sorted(set(stamps))


def test_record_helpers():
    record = Record.for_value("v", 100.0)
    assert record.remaining(40.0) == 60.0
    assert Record.for_value("v", None).remaining(1.0) is None
    assert "size=" in repr(record)
    assert repr(envelope.MISSING_VALUE) == "<value not deserialized yet>"
    lazy = Record("immutable", None, None, 0)
    assert pickle.loads(lazy.payload) == "immutable"
    assert lazy.size == len(lazy.payload)


def test_peek_and_retime_leave_the_payload_alone():
    from tiered_cache.envelope import peek, retime, verify

    record = Record.for_value("x" * 3000, 100.0)
    packed = encode(record, "k", compress_min_bytes=10)
    assert peek(packed) == (100.0, record.stamp)
    assert verify(packed, "k") == (100.0, record.stamp)
    moved = retime(packed, None, "k")
    assert peek(moved) == (None, record.stamp)
    assert moved[envelope.HEADER_SIZE :] == packed[envelope.HEADER_SIZE :]
    assert materialize(decode(moved, "k", PICKLE)) == "x" * 3000
    head = retime(packed, 5.0, "k")[: envelope.HEADER_SIZE]  # what touch sends
    assert (
        materialize(decode(head + packed[envelope.HEADER_SIZE :], "k", PICKLE))
        == "x" * 3000
    )
    for bad in (b"xx", b"y" * 60):
        with pytest.raises(UntrustedRecord):
            peek(bad)
    for bad in (b"xx", b"y" * 60, packed, packed[:-1]):
        with pytest.raises(UntrustedRecord):
            verify(bad, "other" if bad is packed else "k")
    with pytest.raises(UntrustedRecord):
        retime(b"y" * 60, 1.0, "k")
    with pytest.raises(UntrustedRecord):  # never re-signs another key's record
        retime(packed, 1.0, "other")


def test_only_64_bit_ints_stay_raw():
    from tiered_cache.envelope import is_raw_int

    assert is_raw_int(2**63 - 1) and is_raw_int(-(2**63))
    assert not is_raw_int(2**63)
    big = Record.for_value(2**70, None)
    assert big.payload is not None
    assert materialize(decode(encode(big, "k"), "k", PICKLE)) == 2**70


def test_a_stamp_far_ahead_does_not_move_the_clock():
    """A forged or broken stamp must not push every later stamp past u64."""
    for stamp in (envelope.STAMP_MAX, new_stamp() + 2 * envelope.MAX_STAMP_LEAD_NS):
        assert envelope.observe_stamp(stamp) is False
        assert new_stamp() < stamp
    encode(Record.for_value("v", None), "k")  # still packs


def test_a_stamp_a_little_ahead_moves_the_clock():
    ahead = new_stamp() + 10**6  # a clock 1 ms ahead: followed
    assert envelope.observe_stamp(ahead) is True
    assert new_stamp() > ahead
