"""The history's tests drain recorders themselves: the process's flusher must not."""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True)
def no_background_flush() -> Iterator[None]:
    """Stop the metrics flusher's thread (it drains recorders) during a test."""
    from tiered_cache.metrics.flusher import flusher

    running = flusher.running()
    flusher.stop()
    yield
    if running:
        flusher.start()
