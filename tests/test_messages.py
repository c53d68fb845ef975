"""Bus messages are parsed whole and checked before any part is applied."""

from __future__ import annotations

import json

import pytest

from tiered_cache.envelope import STAMP_MAX
from tiered_cache.messages import MalformedMessage, Message, parse

#: What anyone who can write to the stream might append (red team F1, F2).
MALFORMED = {
    "w not JSON": {"w": "not json"},
    "w not a list": {"w": json.dumps({"a": 1})},
    "w item not a pair": {"w": json.dumps([["k"]])},
    "w key not a string": {"w": json.dumps([[1, 2]])},
    "stamp a string": {"w": json.dumps([["k", "abc"]])},
    "stamp a bool": {"w": json.dumps([["k", True]])},
    "stamp negative": {"w": json.dumps([["k", -1]])},
    "stamp past u64": {"w": json.dumps([["k", STAMP_MAX + 1]])},
    "stamp Infinity": {"w": '[["k", Infinity]]'},
    "stamp a float": {"w": '[["k", 1e30]]'},
    "stamp 5000 digits": {"w": '[["k", ' + "9" * 5000 + "]]"},
    "x not a list": {"x": json.dumps(5)},
    "x key not a string": {"x": json.dumps([None])},
}


@pytest.mark.parametrize("fields", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_messages_are_refused_whole(fields):
    with pytest.raises(MalformedMessage):
        parse({"o": "someone", **fields})


def test_every_kind_of_message_parses():
    fields = {
        "o": "someone",
        "w": json.dumps([["k", 5], ["big", STAMP_MAX]]),
        "x": json.dumps(["n"]),
        "c": "ns",
        "a": "1",
    }
    assert parse(fields) == Message([("k", 5), ("big", STAMP_MAX)], ["n"], "ns", True)
    assert parse({"o": "someone"}) == Message()
