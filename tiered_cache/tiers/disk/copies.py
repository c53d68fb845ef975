"""Which L3 copies this process may serve: their age, the floor, the bus.

Below an L2, L3 holds *copies* of values whose authority is L2
(``BaseTier.copies_of`` says which: those L2 would take; a value too big for
L2 lives in L3 as its own authority and none of this applies). A copy is
stored with the time it was copied, on the backend's clock, in diskcache's
``tag`` column, and it is served only while:

* it is younger than ``max_staleness`` (``L1_MAX_STALENESS``; shorter while
  the bus cannot read): trusted that long after it was *copied*, whatever the
  value's age. It is served with ``min(expiry, copied + bound)`` as its
  lifetime, so that a faster tier's copy of it is not trusted longer, and
  diskcache's own ``expire`` is set to the same, so diskcache removes it;
* it was copied after the machine's *floor*: the last time a listener on this
  machine could not know what it had missed (``invalidate_all``). The floor is
  persisted in the marks cache (``store.MARKS``), read once by a process and
  again once a heartbeat by its listener (``save_position``), so the other
  processes of the machine, and the ones that start later, see it too. A
  marks cache opened afresh (quarantined as corrupt, deleted or replaced:
  ``opening.py``) has lost it: a listener writes its floor there again
  before its next mark;
* this process trusts copies at all: a process with a bus trusts none until
  its listener has settled where the machine's copies stand
  (``tiered_cache.copies``).

A copy of a 64-bit int is stored as an envelope (serialized), not raw: the tag of
a raw int holds its expiry, and a copy is not where ``incr`` is atomic. A row
that the chain calls a copy but that has no copy time (written before this
version, or while the directory served a chain where L3 was the authority) is
never trusted.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from ...exceptions import TierUnavailable
from .store import CacheDirectory

__all__ = ["CopyTrust"]

_FLOOR = "floor"  # nanoseconds on the backend's clock (an int row)
_POSITION = "position:"  # + stream name -> b"<generation> <last id>"


class CopyTrust:
    """This process's trust in the copies of one L3 directory (one per tier)."""

    def __init__(self, files: CacheDirectory, clock: Callable[[], float]) -> None:
        self.files = files
        self.clock = clock
        #: False until the listener has settled (``BaseTier.trust_copies``).
        self.trusted = True
        #: Copies made before it are not trusted; None: not read yet.
        self.floor: float | None = None
        #: A floor raised here that the marks cache does not have yet.
        self._unsaved = False
        self._saved_position: tuple[str, str, str] | None = None
        #: The marks cache last saved to (a quarantined or replaced one is
        #: opened afresh, empty: the floor is written again before a mark).
        self._saved_to: object = None

    def until(self, copied_at: float | None, staleness: float | None) -> float | None:
        """Return until when a copy made at ``copied_at`` is trusted (None: not)."""
        if copied_at is None or not self.trusted:
            return None
        floor = self.floor
        if floor is None:
            try:
                with self.files.marks("get") as marks:
                    floor = self._merge(marks.get(_FLOOR))
            except TierUnavailable:
                return None  # unknown: not trusted this time, asked again next
        if copied_at < floor:
            return None
        return math.inf if staleness is None else copied_at + staleness

    def drop_all(self, before: float | None = None) -> None:
        """Raise the floor to ``before`` (default now): in memory at once, on
        disk when it can.
        """
        now = float(self.clock() if before is None else before)
        self.floor = now if self.floor is None else max(self.floor, now)
        self.trusted = True  # copies made from now on are fine
        self._unsaved = True
        try:
            with self.files.marks("invalidate_all") as marks, marks.transact():
                self._save_floor(marks)
        except TierUnavailable:
            pass  # kept unsaved: the next save_position writes it first

    def load_position(self, stream: str) -> tuple[str, str] | None:
        with self.files.marks("load_position") as marks:
            data = marks.get(_POSITION + stream)
            self._merge(marks.get(_FLOOR))
        if not isinstance(data, bytes):
            return None
        generation, _, last_id = data.decode().partition(" ")
        return (generation, last_id) if last_id else None

    def save_position(self, stream: str, generation: str, last_id: str) -> None:
        position = (stream, generation, last_id)
        with self.files.marks("save_position") as marks:
            if marks is not self._saved_to:
                known = self.floor is not None and math.isfinite(self.floor)
                self._unsaved = self._unsaved or known
                self._saved_position = None
            if self._unsaved or position != self._saved_position:
                with marks.transact():
                    if self._unsaved:  # a floor goes to disk before any later mark
                        self._save_floor(marks)
                    marks.set(_POSITION + stream, f"{generation} {last_id}".encode())
                self._saved_position = position
                self._saved_to = marks
            self._merge(marks.get(_FLOOR))

    def _save_floor(self, marks: object) -> None:
        stored = marks.get(_FLOOR)  # type: ignore[attr-defined]
        mine = math.ceil(self.floor * 1e9)  # type: ignore[operator]
        if not isinstance(stored, int) or stored < mine:
            marks.set(_FLOOR, mine)  # type: ignore[attr-defined]
        self._unsaved = False

    def _merge(self, stored: object) -> float:
        """Take the persisted floor (nanoseconds) if it is higher; return the floor."""
        floor = stored / 1e9 if isinstance(stored, int) else -math.inf
        if self.floor is not None and self.floor > floor:
            floor = self.floor
        self.floor = floor
        return floor
