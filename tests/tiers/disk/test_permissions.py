"""A cache directory the process may not write (docs/faults.rst #31), tested as
a user without rights on it: L3 is switched off with one ERROR line, and L1
carries on.

Root ignores file modes, so the worker (``permission_worker.py``) runs as
``nobody`` through ``setpriv``; the directories are made by root in a scratch
folder under /tmp that ``nobody`` may enter.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import diskcache
import pytest

ROOT = Path(__file__).resolve().parents[3]
WORKER = Path(__file__).with_name("permission_worker.py")
SETPRIV = shutil.which("setpriv")

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or SETPRIV is None,
    reason="needs root and setpriv(1) to run the worker as another user",
)


@pytest.fixture
def scratch() -> Iterator[Path]:
    where = Path(tempfile.mkdtemp(prefix="tiered-cache-perm-"))
    where.chmod(0o755)  # nobody may enter, not write
    yield where
    shutil.rmtree(where, ignore_errors=True)


def _run_as_nobody(location: Path) -> dict:
    done = subprocess.run(
        [
            SETPRIV,
            "--reuid=nobody",
            "--regid=nogroup",
            "--clear-groups",
            sys.executable,
            str(WORKER),
            str(location),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    # An interpreter under root's private home (pyenv in /root) cannot be run
    # by nobody: its files or its shared library are out of reach. The other
    # cells of the matrix run these tests.
    cannot_run = ("Permission denied", "error while loading shared libraries")
    if done.returncode != 0 and any(text in done.stderr for text in cannot_run):
        pytest.skip(f"nobody cannot run this Python: {done.stderr[-300:]}")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


def _assert_l3_off_and_l1_serving(outcome: dict, what: str) -> None:
    assert outcome["uid"] != 0
    assert outcome["got"] == list(range(20))  # every read answered, from L1
    assert outcome["l3_errors"] >= 1
    assert outcome["l3_breaker"] == "open"
    (line,) = outcome["error_lines"]  # one ERROR line, not one per call
    assert what in line


def test_a_read_only_directory_switches_l3_off_with_one_error(scratch):
    location = scratch / "l3"
    location.mkdir(mode=0o555)
    location.chmod(0o555)  # whatever the umask
    outcome = _run_as_nobody(location)
    _assert_l3_off_and_l1_serving(outcome, "could not be created")
    assert list(location.iterdir()) == []


def test_a_cache_owned_by_another_user_switches_l3_off_with_one_error(scratch):
    location = scratch / "l3"
    made = diskcache.FanoutCache(str(location), shards=8)  # root's cache
    made.set("k", b"root's")
    made.close()
    before = sorted(p.name for p in location.rglob("*"))
    outcome = _run_as_nobody(location)
    _assert_l3_off_and_l1_serving(outcome, "readonly database")
    assert sorted(p.name for p in location.rglob("*")) == before
