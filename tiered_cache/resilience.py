"""Circuit breaker: skip a dead tier without paying its timeout on every call.

States (defaults in ``BreakerOptions``, the one place they are set; budgets in
docs/faults.rst): CLOSED counts failures; it opens after
``failure_threshold`` consecutive failures, or when at least ``min_calls`` calls
in the last ``window`` seconds failed at ``failure_rate`` or more. OPEN refuses
calls for ``open_seconds``; then one caller is let through as a HALF_OPEN probe:
its success closes the breaker, its failure opens it again.

Transitions are logged, never one line per failed call, and counted.
Opening and closing are logged at the same level (WARNING), so a log that
shows a tier breaking also shows it healing; the half-open probe is DEBUG.
The log is rate-limited per breaker: an opening is logged when the log does
not already say "open" and no opening was logged in the last
``LOG_INTERVAL`` seconds; a closing is logged when the last line said "open".
A dead tier whose probes keep failing therefore logs one line, and a flapping
one at most one open/close pair per interval, the next line saying how many
transitions went unlogged (docs/faults.rst I5).
The breaker is shared by every backend instance that shares the tier, so one
thread's discovery protects all others.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from .forksafe import renewed_lock

__all__ = ["CLOSED", "HALF_OPEN", "OPEN", "BreakerOptions", "CircuitBreaker"]

logger = logging.getLogger(__name__)

CLOSED = "closed"
OPEN = "open"
HALF_OPEN = "half_open"

#: Seconds between two logged openings of one breaker (see above).
LOG_INTERVAL = 10.0


@dataclass(frozen=True)
class BreakerOptions:
    """Breaker settings (``OPTIONS["BREAKER"]``, lower-cased); the defaults."""

    failure_threshold: int = 5
    failure_rate: float = 0.5
    min_calls: int = 20
    window: float = 10.0
    open_seconds: float = 5.0


_DEFAULT_OPTIONS = BreakerOptions()


class CircuitBreaker:
    """Closed / open / half-open breaker for one tier."""

    def __init__(
        self,
        name: str,
        options: BreakerOptions = _DEFAULT_OPTIONS,
        *,
        clock: Callable[[], float] = time.monotonic,
        on_open: Callable[[], None] | None = None,
    ) -> None:
        self.name = name
        self.failure_threshold = options.failure_threshold
        self.failure_rate = options.failure_rate
        self.min_calls = options.min_calls
        self.window = options.window
        self.open_seconds = options.open_seconds
        self._clock = clock
        self._on_open = on_open
        self._lock = renewed_lock(self)
        self.state = CLOSED
        self._consecutive = 0
        self._opened_at = 0.0
        self._probing = False
        self._probe_started = 0.0
        self._calls: deque[tuple[float, bool]] = deque()
        self._failures = 0  # failed calls in ``_calls``
        self._logged = CLOSED  # the state the last logged line showed
        self._logged_open_at = -math.inf
        self._unlogged = 0  # transitions since that line
        #: Closed with no failure in the window: a success has nothing to note
        #: (callers may skip ``record_success``, the common case).
        self.quiet = True
        #: (pid, thread) that ``hold`` lets through while the breaker stays open.
        self._holder: tuple[int, int] | None = None

    def allow(self) -> bool:
        """Return whether a call may be attempted now."""
        if self.state == CLOSED:
            return True
        holder = self._holder
        if holder is not None and holder[0] == os.getpid():  # not a fork's
            return holder[1] == threading.get_ident()
        with self._lock:
            if self.state == OPEN:
                if self._clock() - self._opened_at < self.open_seconds:
                    return False
                self._transition(HALF_OPEN)
            now = self._clock()
            if self._probing and now - self._probe_started < self.open_seconds:
                return False  # one probe at a time (a lost probe expires)
            self._probing = True
            self._probe_started = now
            return True

    def hold(self) -> None:
        """Keep the breaker open for every thread but this one, until ``release``.

        The outage journal reconciles what the tier missed before any
        request reads it again (``tiered_cache.journal``): its calls go
        through and decide nothing, the others are still skipped.
        """
        self._holder = (os.getpid(), threading.get_ident())

    def release(self, *, close: bool) -> None:
        """End ``hold``; close the breaker when ``close`` (the tier answered)."""
        self._holder = None
        if close:
            with self._lock:
                self._consecutive = 0
                self._probing = False
                self._transition(CLOSED)
                self._forget()

    def record_success(self) -> None:
        """Note a call that worked."""
        if self.quiet:
            return  # the common case costs nothing
        holder = self._holder
        if holder is not None and holder == (os.getpid(), threading.get_ident()):
            return  # held (``hold``): the holder's calls decide nothing
        with self._lock:
            self._consecutive = 0
            self._note(False)
            if self.state != CLOSED:
                self._probing = False
                self._transition(CLOSED)
                self._forget()
            elif not self._failures:  # the last failure left the window
                self._forget()

    def record_failure(self) -> None:
        """Note a call that failed; may open the breaker."""
        with self._lock:
            self.quiet = False
            self._consecutive += 1
            self._note(True)
            if self.state == HALF_OPEN:
                self._probing = False
                self._open()
            elif self.state == CLOSED and self._should_open():
                self._open()

    def reset(self) -> None:
        """Close the breaker and forget history (tests, admin actions)."""
        with self._lock:
            self._consecutive = 0
            self._probing = False
            if self.state != CLOSED:
                self._transition(CLOSED)
            self._forget()
            self._logged, self._logged_open_at, self._unlogged = CLOSED, -math.inf, 0

    def _forget(self) -> None:
        """Closed with nothing to remember: back to the quiet state."""
        self._calls.clear()
        self._failures = 0
        self.quiet = True

    def _note(self, failed: bool) -> None:
        now = self._clock()
        calls = self._calls
        calls.append((now, failed))
        self._failures += failed
        horizon = now - self.window
        while calls and calls[0][0] < horizon:
            self._failures -= calls.popleft()[1]

    def _should_open(self) -> bool:
        if self._consecutive >= self.failure_threshold:
            return True
        calls = self._calls
        if len(calls) < self.min_calls:
            return False
        return self._failures / len(calls) >= self.failure_rate

    def _open(self) -> None:
        self._opened_at = self._clock()
        self._transition(OPEN)
        if self._on_open is not None:
            self._on_open()

    def _transition(self, state: str) -> None:
        previous = self.state
        if state == previous:
            return
        self.state = state
        if state == HALF_OPEN:
            logger.debug("tier %s circuit breaker %s -> %s", self.name, previous, state)
            return
        now = self._clock()
        if state == OPEN:
            shown = self._logged != OPEN and now - self._logged_open_at >= LOG_INTERVAL
        else:
            shown = self._logged == OPEN
        if not shown:
            self._unlogged += 1
            return
        unlogged = (
            f" ({self._unlogged} transition{'s' if self._unlogged > 1 else ''}"
            " since the last line not logged)"
            if self._unlogged
            else ""
        )
        logger.warning(
            "tier %s circuit breaker %s -> %s%s", self.name, previous, state, unlogged
        )
        self._logged = state
        self._unlogged = 0
        if state == OPEN:
            self._logged_open_at = now


class LogThrottle:
    """Let one log line per kind through every ``interval`` seconds.

    A dead tier fails every call; one line per call would bury the log
    (docs/faults.rst I5: at most one line per kind per 10 s per process).
    """

    def __init__(
        self, interval: float = 10.0, clock: Callable[[], float] = time.monotonic
    ):
        self.interval = interval
        self._clock = clock
        self._last: dict[str, float] = {}

    def allow(self, kind: str) -> bool:
        """Return whether a line of ``kind`` may be logged now."""
        now = self._clock()
        last = self._last.get(kind)
        if last is not None and now - last < self.interval:
            return False
        self._last[kind] = now
        return True

    def reset(self) -> None:
        """Forget what was logged (tests, admin actions)."""
        self._last.clear()
