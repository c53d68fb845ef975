"""Any row diskcache's table can hold is a miss, never an exception, never code
run, never a file read or removed outside the directory (docs/faults.rst #30,
#33).

Rows are written with plain SQL, the way another program (or an attacker with
the cache user's rights) could write them, column by column.
"""

from __future__ import annotations

import itertools
import sqlite3
import time

import pytest

from tests.tiers.disk.support import EXECUTED, plain, rec, shard_db
from tiered_cache.envelope import Record, encode
from tiered_cache.sentinels import MISSING
from tiered_cache.tiers.disk.rows import SafeDisk, is_value_file

_VALID_NAME = "ab/cd/" + "0" * 28 + ".val"  # diskcache's shape, no such file

MODES = [1, 2, 3, 4, 0, 99, None, "x"]  # raw, binary, text, pickle, others
FILENAMES = [None, "", "../../outside.val", _VALID_NAME, 7]
VALUES = [None, b"garbage", "text", 7, 1.5]
EXPIRES = [None, "soon", b"\x00"]
TAGS = [None, b"t", "t", 1.5]


#: Every (mode, filename, value), then the expiry and tag columns around the
#: shapes that get that far.
SHAPES = [
    *itertools.product(MODES, FILENAMES, VALUES, [None], [None]),
    *itertools.product([1], [None], [7, b"garbage", None], EXPIRES, TAGS),
    *itertools.product(
        [2], [_VALID_NAME, "../../outside.val"], [None], EXPIRES, [None]
    ),
]


def _plant(con, key, mode, filename, value, expire_time, tag) -> None:
    con.execute(
        "INSERT OR REPLACE INTO Cache (key, raw, store_time, expire_time,"
        " access_time, access_count, tag, size, mode, filename, value)"
        " VALUES (?, 1, ?, ?, ?, 0, ?, 0, ?, ?, ?)",
        (key, time.time(), expire_time, time.time(), tag, mode, filename, value),
    )


def _outcome(value: object) -> bool:
    """A read gave a miss, or the one readable shape: a raw int of 7."""
    return value is MISSING or (isinstance(value, Record) and value.value == 7)


def test_every_row_shape_is_a_miss_or_its_int_never_an_exception(
    make, location, tmp_path
):
    outside = tmp_path / "outside.val"  # what "../../outside.val" names
    secret = encode(rec("secret"), "k")
    outside.write_bytes(secret)
    tier = make(shards=1)
    con = sqlite3.connect(shard_db(location), isolation_level=None, timeout=5)
    calls = [
        ("get", lambda: _outcome(tier.get("k"))),
        ("get_value", lambda: tier.get_value("k", "dflt") in ("dflt", 7)),
        ("has_key", lambda: tier.has_key("k") in (True, False)),
        ("delete", lambda: tier.delete("k") in (True, False)),
        ("add", lambda: tier.add("k", rec("mine")) in (True, False)),
        ("touch", lambda: tier.touch("k", None) in (True, False)),
        ("invalidate", lambda: tier.invalidate("k", 2**62) in (True, False)),
        ("incr", lambda: _incr(tier) in (8, "absent")),
        ("keys", lambda: tier.keys("k") in ([], ["k"])),
        ("clear", lambda: tier.clear("k") in (0, 1)),
    ]
    wrong = []
    try:
        for shape in SHAPES:
            for name, call in calls:
                _plant(con, "k", *shape)
                try:
                    ok = call()
                except Exception as exc:  # the test is that nothing gets here
                    wrong.append((shape, name, repr(exc)))
                    continue
                if not ok:
                    wrong.append((shape, name, "unexpected result"))
    finally:
        con.close()
    assert wrong == []
    assert EXECUTED == []
    assert outside.read_bytes() == secret  # never removed
    assert tier.get_value("k", "dflt") != "secret"


def _incr(tier) -> int | str:
    try:
        return tier.incr("k", 1)
    except ValueError:  # "not found": the row was not a readable int
        return "absent"


@pytest.mark.parametrize(
    "name",
    [
        None,
        "",
        "../../x.val",
        "/etc/passwd",
        "ab/cd/" + "0" * 28,
        "AB/CD/" + "0" * 28 + ".val",
        7,
    ],
)
def test_only_diskcache_value_file_names_are_read_or_removed(tmp_path, name):
    assert not is_value_file(name)
    disk = SafeDisk(str(tmp_path))
    disk.remove(name)  # a no-op, never an exception
    with pytest.raises(ValueError):  # UntrustedRow is an EnvelopeError
        disk.fetch(2, name, None, False)


def test_value_files_the_disk_writes_are_its_own_names(make, location):
    tier = make(shards=1, COMPRESS_MIN_BYTES=None)
    tier.set("big", rec(b"x" * 100_000))
    (value_file,) = location.rglob("*.val")
    assert is_value_file(str(value_file.relative_to(location / "000")))
    assert tier.delete("big")
    assert list(location.rglob("*.val")) == []


def test_a_truncated_value_file_is_a_rejected_miss(make, location):
    tier = make(shards=1, COMPRESS_MIN_BYTES=None)
    tier.set("k", rec(b"x" * 100_000))  # over disk_min_file_size: in a file
    (value_file,) = location.rglob("*.val")
    with open(value_file, "r+b") as f:
        f.truncate(50_000)
    assert tier.get_value("k", "dflt") == "dflt"
    assert tier.stats.rejected == 1
    assert tier.get("k") is MISSING
    assert list(location.rglob("*.val")) == []  # the entry and its file are gone


def test_a_value_file_over_the_size_cap_is_rejected_unread(make, location):
    tier = make(shards=1, MAX_VALUE_BYTES=50_000, COMPRESS_MIN_BYTES=None)
    other = plain(location)
    other.set("big", encode(rec(b"x" * 100_000), "big"))  # in a file, over the cap
    other.set("fits", encode(rec(b"y" * 40_000), "fits"))  # in a file, under it
    assert len(list(location.rglob("*.val"))) == 2
    assert tier.get("big") is MISSING
    assert tier.stats.rejected == 1
    assert "big" not in other  # the oversized entry and its file are gone
    assert len(list(location.rglob("*.val"))) == 1
    assert tier.get_value("fits", None) == b"y" * 40_000
    assert make(shards=1, MAX_VALUE_BYTES=None).get_value("fits", None) == b"y" * 40_000
