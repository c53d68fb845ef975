"""A cache directory deleted, replaced or quarantined under a running process is
noticed within ``CHECK_INTERVAL`` and opened again (docs/faults.rst #30, #31):
processes do not split between unlinked files and a new folder, and the
unlinked files are released.
"""

from __future__ import annotations

import gc
import logging
import os
import shutil
from pathlib import Path

import diskcache
import pytest

from tests.tiers.disk.support import rec
from tiered_cache.envelope import decode, materialize
from tiered_cache.sentinels import MISSING
from tiered_cache.serializers import PICKLE


def _deleted_files_held(location: Path) -> list[str]:
    """Paths under ``location`` this process holds open although unlinked."""
    held = []
    for fd in os.listdir("/proc/self/fd"):
        with_link = f"/proc/self/fd/{fd}"
        try:
            target = os.readlink(with_link)
        except OSError:
            continue
        if target.startswith(str(location)) and target.endswith("(deleted)"):
            held.append(target)
    return held


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc")
def test_a_deleted_directory_is_noticed_and_opened_again(make, location, caplog):
    tier = make(shards=2, CHECK_INTERVAL=0)
    tier.set("old", rec("v"))
    shutil.rmtree(location)
    assert _deleted_files_held(location)  # what the process split came from
    with caplog.at_level(logging.ERROR, logger="tiered_cache.tiers.disk"):
        tier.set("new", rec("w"))
        tier.set("new2", rec("w2"))
    assert tier.get("old") is MISSING
    assert tier.get_value("new", None) == "w"
    assert tier.describe()["reopened"] == 1
    (line,) = [r.getMessage() for r in caplog.records]
    assert "was deleted" in line and "opening" in line
    other = diskcache.FanoutCache(str(location), shards=2)  # a process started now
    try:
        assert materialize(decode(other.get("new"), "new", PICKLE)) == "w"
    finally:
        other.close()
    gc.collect()
    assert _deleted_files_held(location) == []  # the old files' space is freed


def test_the_check_runs_at_most_every_check_interval(make, location):
    tier = make(shards=1, CHECK_INTERVAL=3600)
    tier.set("k", rec("v"))
    store = tier.files.open()
    shutil.rmtree(location)
    tier.set("k2", rec("w"))  # within the interval: not checked, not noticed
    assert tier.files.open() is store and not location.exists()
    store.check_due = 0.0  # the interval is over
    tier.set("k3", rec("x"))
    assert tier.files.open() is not store
    assert tier.get_value("k3", None) == "x"
    assert tier.describe()["reopened"] == 1


def test_a_directory_replaced_by_another_process_is_followed(make, location):
    tier = make(shards=1, CHECK_INTERVAL=0)
    tier.set("k", rec("mine"))
    location.rename(location.with_name("l3.aside"))  # e.g. quarantined elsewhere
    other = diskcache.FanoutCache(str(location), shards=1)
    try:
        other.set("theirs", b"not an envelope")
        tier.set("k", rec("after"))
        assert tier.get_value("k", None) == "after"
        assert other.get("k") is not None  # both write to the same files again
    finally:
        other.close()
    assert tier.describe()["reopened"] == 1


def test_healthy_files_are_not_reopened(make, location):
    tier = make(shards=2, CHECK_INTERVAL=0)
    store = tier.files.open()
    for i in range(20):
        tier.set(f"k{i}", rec(i))
        assert tier.get_value(f"k{i}", None) == i
    assert tier.files.open() is store
    assert tier.describe()["reopened"] == 0
