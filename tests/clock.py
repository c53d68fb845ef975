"""A clock the tests move by hand, so expiry is tested without sleeping."""

from __future__ import annotations

import time


class FakeClock:
    """Callable clock returning ``now``; start at real time so TTLs stay sane."""

    def __init__(self, start: float | None = None) -> None:
        self.now = time.time() if start is None else start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

    def __repr__(self) -> str:
        return f"FakeClock({self.now})"
