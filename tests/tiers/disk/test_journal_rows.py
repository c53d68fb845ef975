"""``DiskTier`` keeps outage journals (``read_journal``/``update_journal``).

One row per journal, under a key no cache namespace starts with, updated in a
shard transaction: processes of one machine share it, ``clear()`` and
``keys()`` never meet it.
"""

from __future__ import annotations

import threading

from tests.tiers.disk.support import rec


def test_a_journal_round_trips_and_goes_when_empty(make):
    tier = make()
    assert tier.read_journal("j") is None
    tier.update_journal("j", lambda data: (data or b"") + b"x")
    assert tier.read_journal("j") == b"x"
    tier.update_journal("j", lambda data: None)
    assert tier.read_journal("j") is None


def test_a_journal_is_outside_every_namespace(make, location):
    tier = make()
    tier.set("ns:k", rec("v"))
    tier.update_journal("j", lambda data: b"kept")
    assert tier.keys("ns:") == ["ns:k"]
    tier.clear("ns:")
    assert tier.read_journal("j") == b"kept"
    again = make(location)  # another process of the machine opens the folder
    assert again.read_journal("j") == b"kept"


def test_concurrent_updates_lose_nothing(make):
    tier = make(timeout=5)  # lock waits are not under test here

    def add(n: int) -> None:
        for i in range(20):
            tier.update_journal(
                "j", lambda data, i=i: (data or b"") + f"{n}.{i};".encode()
            )

    threads = [threading.Thread(target=add, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(tier.read_journal("j").split(b";")) == 4 * 20 + 1


def test_a_planted_journal_row_is_no_journal_never_an_exception(make, location):
    """Any row shape is a miss (docs/faults.rst #30), the journal's too."""
    import sqlite3

    from tests.tiers.disk.support import EXECUTED, Poison, plain, shard_db
    from tiered_cache.tiers.disk.tier import _JOURNAL

    tier = make(shards=1)
    plain(location).set(_JOURNAL + "j", Poison())  # stored pickled
    assert tier.read_journal("j") is None
    tier.update_journal("j", lambda data: b"mine" if data is None else b"seen")
    assert tier.read_journal("j") == b"mine"
    con = sqlite3.connect(shard_db(location), isolation_level=None)
    try:  # a row naming a file outside the directory
        con.execute(
            "UPDATE Cache SET mode = 2, value = NULL, filename = ? WHERE key = ?",
            ("../../outside.val", _JOURNAL + "j"),
        )
    finally:
        con.close()
    assert tier.read_journal("j") is None
    tier.update_journal("j", lambda data: b"again" if data is None else b"seen")
    assert tier.read_journal("j") == b"again"
    assert EXECUTED == []
