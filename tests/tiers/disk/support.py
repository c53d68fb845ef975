"""Helpers of the disk tier tests: a payload that must never run, and a way in
to the directory from outside the tier.

Rows are planted or inspected with a plain ``diskcache.Cache`` on a shard
directory (``shards=1`` in the tier), the way another program sharing the
directory would.
"""

from __future__ import annotations

from pathlib import Path

import diskcache

from tiered_cache.envelope import Record

#: What ``Poison`` payloads did; emptied before every test.
EXECUTED: list[str] = []


def _payload_ran(*args: object) -> str:
    EXECUTED.append("ran")
    return "pwned"


class Poison:
    """Unpickling this calls ``_payload_ran`` (a stand-in for ``os.system``)."""

    def __init__(self, padding: str = "") -> None:
        self.padding = padding

    def __reduce__(self):
        return (_payload_ran, (self.padding,))


def rec(value, expires_at=None) -> Record:
    return Record.for_value(value, expires_at)


def plain(location: Path, shard: int = 0) -> diskcache.Cache:
    """A plain diskcache on one shard: another program sharing the directory."""
    return diskcache.Cache(str(location / f"{shard:03d}"))


def shard_db(location: Path, shard: int = 0) -> str:
    return str(location / f"{shard:03d}" / "cache.db")


def opened(tier) -> None:
    """Wait until ``tier``'s directory and then its marks cache are open.

    Reads wait for neither (a copy is not trusted until the marks cache is
    open), so a test that reads a copy right after the first write waits here.
    """
    tier.files.open().marked.wait(10)
