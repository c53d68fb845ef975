"""Record tags: keys from SECRET_KEY (and fallbacks), and a decoder that only
ever answers with a record it verified or ``UntrustedRecord`` (faults.rst #33).

The fuzz tests feed ``decode`` arbitrary bytes, and valid records with bytes
flipped, cut or appended: the only outcome besides a verified record is an
``UntrustedRecord``, and nothing is unpickled (``decode`` never unpickles; a
``Poison`` payload records it if anything did).
"""

from __future__ import annotations

import pickle

import pytest
from django.test import override_settings
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.tiers.disk.support import EXECUTED, Poison
from tiered_cache import envelope, signing
from tiered_cache.envelope import (
    HEADER_SIZE,
    MAGIC,
    Record,
    decode,
    encode,
    materialize,
    verify,
)
from tiered_cache.exceptions import EnvelopeError, UntrustedRecord
from tiered_cache.serializers import PICKLE

FUZZ = settings(
    max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
KEY = "t:1:some-key"


@pytest.fixture(autouse=True)
def _nothing_ran():
    EXECUTED.clear()
    yield
    assert EXECUTED == []


def signed(value, key=KEY, **options):
    return encode(Record.for_value(value, None), key, **options)


def test_keys_are_derived_once_and_follow_the_settings():
    first = signing.keys()
    assert signing.keys() is first  # cached: no salted_hmac per record
    ours = first[0].digest()  # what the key alone hashes to: tells keys apart
    with override_settings(SECRET_KEY="another-secret-0123456789"):
        assert signing.keys()[0].digest() != ours
    assert signing.keys()[0].digest() == ours


def test_a_record_verifies_only_for_its_key_and_secret():
    data = signed({"a": 1})
    assert materialize(decode(data, KEY, PICKLE)) == {"a": 1}
    for other in ("t:1:some-ke", "t:1:some-key2", "T:1:some-key", ""):
        with pytest.raises(UntrustedRecord):
            decode(data, other, PICKLE)
    with override_settings(SECRET_KEY="another-secret-0123456789"):
        with pytest.raises(UntrustedRecord):
            decode(data, KEY, PICKLE)
        with override_settings(SECRET_KEY_FALLBACKS=["tiered-cache-tests-only"]):
            assert materialize(decode(data, KEY, PICKLE)) == {"a": 1}  # rotation
            moved = envelope.retime(data, 5.0, KEY)  # signs again with the new key
        assert decode(moved, KEY, PICKLE).expires_at == 5.0
    with pytest.raises(UntrustedRecord):
        decode(moved, KEY, PICKLE)  # the new key is not ours here


def test_no_byte_can_move_between_payload_and_key():
    # A record for "ab" must not verify as "a" with one more payload byte (a
    # pickle ignores what follows its STOP opcode, so that would serve it).
    data = signed("v", key="ab")
    with pytest.raises(UntrustedRecord):
        decode(data + b"a", "b", PICKLE)
    with pytest.raises(UntrustedRecord):
        decode(data[:-1], "ab"[:1] + chr(data[-1]), PICKLE)
    long_key = "k" * 300  # two-byte length suffix
    assert materialize(decode(signed("v", key=long_key), long_key, PICKLE)) == "v"
    with pytest.raises(UntrustedRecord):
        decode(signed("v", key=long_key), long_key[:-1], PICKLE)


@pytest.mark.parametrize("compress", [None, 10])
def test_every_flipped_byte_and_every_cut_is_untrusted(compress):
    data = signed("x" * 200, compress_min_bytes=compress)
    for i in range(len(data)):
        flipped = bytearray(data)
        flipped[i] ^= 0x01
        with pytest.raises(UntrustedRecord):
            decode(bytes(flipped), KEY, PICKLE)
    for n in range(len(data)):
        with pytest.raises(UntrustedRecord):
            decode(data[:n], KEY, PICKLE)
    with pytest.raises(UntrustedRecord):
        decode(data + b"\x00", KEY, PICKLE)


def test_a_poison_behind_a_valid_header_is_never_unpickled():
    evil = pickle.dumps(Poison(), pickle.HIGHEST_PROTOCOL)
    data = signed("legit" * 20)
    for n in range(len(data)):
        with pytest.raises(UntrustedRecord):
            decode(data[:n] + evil, KEY, PICKLE)
        with pytest.raises(UntrustedRecord):
            verify(data[:n] + evil, KEY)


@FUZZ
@given(st.binary(max_size=300))
def test_decode_of_arbitrary_bytes_is_untrusted(data):
    with pytest.raises(UntrustedRecord):
        decode(data, KEY, PICKLE)


@FUZZ
@given(
    st.binary(min_size=0, max_size=HEADER_SIZE),
    st.binary(max_size=200),
    st.sampled_from([b"", pickle.dumps(Poison(), pickle.HIGHEST_PROTOCOL)]),
)
def test_decode_of_envelope_shaped_bytes_is_untrusted(head, tail, evil):
    with pytest.raises(UntrustedRecord):
        decode(
            MAGIC + bytes([envelope.FORMAT_VERSION]) + head + tail + evil, KEY, PICKLE
        )


@FUZZ
@given(
    st.one_of(st.text(), st.binary(), st.integers(), st.lists(st.integers())),
    st.integers(min_value=0, max_value=400),
    st.binary(min_size=1, max_size=8),
)
def test_a_mutated_record_is_untrusted_and_an_intact_one_round_trips(
    value, position, noise
):
    data = signed(value, compress_min_bytes=64)
    if type(data) is int:  # a raw int: nothing to sign, nothing to unpickle
        return
    assert materialize(decode(data, KEY, PICKLE)) == value
    cut = position % (len(data) + 1)
    mutated = data[:cut] + noise + data[cut + len(noise) :]
    if mutated == data:
        return
    try:
        record = decode(mutated, KEY, PICKLE)
    except UntrustedRecord:
        return
    raise AssertionError(f"a mutated record verified: {record!r}")


def test_a_signed_payload_that_does_not_unpickle_is_only_an_envelope_error():
    record = decode(encode(Record(None, b"\x80\x05garbage", None, 1), KEY), KEY, PICKLE)
    with pytest.raises(EnvelopeError) as caught:
        materialize(record)
    assert not isinstance(caught.value, UntrustedRecord)


def test_an_empty_secret_key_says_why_the_cache_needs_one():
    from django.core.exceptions import ImproperlyConfigured

    with (
        override_settings(SECRET_KEY=""),
        pytest.raises(ImproperlyConfigured, match="tiered_cache signs"),
    ):
        signed("v")
    assert materialize(decode(signed("v"), KEY, PICKLE)) == "v"  # keys derived again


def test_the_table_of_encoded_keys_stays_bounded(monkeypatch):
    monkeypatch.setattr(envelope, "_NAMES_LIMIT", 3)
    monkeypatch.setattr(envelope, "_NAMES", {})
    keys = [f"key-{i}" for i in range(10)] + ["k" * 200]
    records = {key: signed(key, key=key) for key in keys}
    for key, data in records.items():
        assert materialize(decode(data, key, PICKLE)) == key
        with pytest.raises(UntrustedRecord):
            decode(data, key + "x", PICKLE)
    assert len(envelope._NAMES) <= 3
