"""A parent process that uses L3, then forks 8 workers that write to the same
directory at once (a pre-forking server with ``--preload``); prints JSON.

Run by ``test_store.py``: a fresh process, so that no other thread uses
SQLite while it forks.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import sys
import time

sys.path.insert(0, os.getcwd())

from tiered_cache.envelope import Record  # noqa: E402
from tiered_cache.exceptions import TierUnavailable  # noqa: E402
from tiered_cache.sentinels import MISSING  # noqa: E402
from tiered_cache.tiers.disk import DiskTier  # noqa: E402
from tiered_cache.tiers.disk.store import _handles  # noqa: E402


def _tier(location: str) -> DiskTier:
    options = {"shards": 2, "OPEN_TIMEOUT": 10.0}
    params = {"LOCATION": location, "OPTIONS": options}
    return DiskTier(location, params, name="l3", clock=time.time)


def _work(tier: DiskTier, n: int) -> dict:
    report: dict = {"kinds": {}, "other": [], "parent": None}
    start = time.monotonic()
    # 8 processes opening one directory at once wait for each other's set-up
    # writes (diskcache retries them for 60 s): measured, not tested.
    with contextlib.suppress(TierUnavailable):
        tier.files.open()
    _handles.get(tier.files.key).done.wait(60)
    report["open_s"] = time.monotonic() - start
    for i in range(100):
        try:
            tier.set(f"w{n}:{i % 10}", Record.for_value(i, None))
            report["parent"] = tier.get_value("from-parent", None)
        except TierUnavailable as exc:
            report["kinds"][exc.kind] = report["kinds"].get(exc.kind, 0) + 1
        except Exception as exc:  # the test is that nothing gets here
            report["other"].append(repr(exc))
    return report


def main(location: str) -> None:
    tier = _tier(location)
    tier.set("from-parent", Record.for_value("p", None))
    children = []
    for n in range(8):
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:  # a worker: report through the pipe, never return
            code = 1
            try:
                os.write(write_end, json.dumps(_work(tier, n)).encode())
                code = 0
            finally:
                os._exit(code)
        os.close(write_end)
        children.append((pid, read_end))
    reports = []
    for pid, read_end in children:
        with os.fdopen(read_end, "rb") as pipe:
            data = pipe.read()
        _, status = os.waitpid(pid, 0)
        if os.waitstatus_to_exitcode(status) != 0:
            raise SystemExit(f"worker {pid} failed")
        reports.append(json.loads(data))
    checks = []
    for index in range(2):
        con = sqlite3.connect(os.path.join(location, f"{index:03d}", "cache.db"))
        try:
            checks.append(con.execute("PRAGMA quick_check").fetchall())
        finally:
            con.close()
    missing = [n for n in range(8) if tier.get(f"w{n}:9") is MISSING]
    print(
        json.dumps(
            {
                "reports": reports,
                "quick_check": checks,
                "missing": missing,
                "parent": tier.get_value("from-parent", None),
            }
        )
    )


if __name__ == "__main__":
    main(sys.argv[1])
