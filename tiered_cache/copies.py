"""The copies a process keeps, as the invalidation bus sees them.

Tiers narrower than the authority hold copies (L1; L3 below an L2). The chain
wires them to the bus (``Chain._bus``); this module says how a message is
applied to one (``apply_to_copy``) and, for tiers whose copies outlive the
process, where those copies stand on the bus (``Anchor``).

Where persisted copies stand, across restarts. L1 dies with its process; L3
does not. A process that starts on a machine finds copies made by processes
that are gone, and must not serve one that a change it never heard of
replaced or deleted (docs/design.rst, "Coherence"). So the listeners of a
machine leave a *mark* in every tier whose copies outlive them
(``BaseTier.save_position``): the stream's generation and the last id whose
messages they applied, at most once a heartbeat. A process that starts:

1. trusts none of those copies (``trust_copies(False)``), before its first read;
2. reads the mark. When it names the stream's current generation and the
   stream still holds every message after it, the listener replays those
   messages (dropping what changed, as always) and trusts the copies again
   once it has read as far as the stream went when the process started;
3. otherwise (no mark, another generation: the server lost its data; trimmed
   past the mark, emptied or made again: ``StreamState.lost_after``; the tier
   did not answer) it drops them all with a *floor*:
   no copy made before it is trusted, in this process or any later one on the
   machine (``invalidate_all``).

A gap later in the process's life (``tiered_cache.coherence``) drops them the
same way. The mark is written only after the messages it names were applied,
and a floor is persisted before any mark that follows it: a mark never lets a
later process trust a copy that this one would not.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .exceptions import TierUnavailable
from .sentinels import UNAVAILABLE
from .slot import Slot
from .tiers.base import StreamState, implements
from .tiers.optional import stream_id

__all__ = ["Anchor", "anchor_for", "apply_to_copy", "quiet"]


def anchor_for(slots: Sequence[Slot], stream: str) -> Anchor | None:
    """Return the ``Anchor`` of the copy tiers among ``slots`` that outlive the
    process (they implement ``save_position``), or ``None``.
    """
    persistent = tuple(s for s in slots if implements(s.tier, "save_position"))
    return Anchor(persistent, stream) if persistent else None


def apply_to_copy(slot: Slot, op: str, *args: Any) -> Any:
    """Apply a bus message to a copy tier (``invalidate``, ``delete``, ``clear``).

    A tier that could not apply it may now keep a stale copy that nothing will
    mention again: it drops every copy instead (``invalidate_all`` never fails).
    """
    result = quiet(slot, op, *args)
    if result is UNAVAILABLE and implements(slot.tier, "invalidate_all"):
        slot.tier.invalidate_all()
    return result


class Anchor:
    """The tiers holding persisted copies, as one bus listener sees them."""

    def __init__(self, slots: Sequence[Slot], stream: str) -> None:
        self.slots = tuple(slots)
        self.stream = stream
        self._replaying: tuple[Slot, ...] = ()
        #: When the listener fixed its place (if it could at once): copies made
        #: since are this machine's own writes, heard of from there on.
        self.since = {slot: slot.tier.clock() for slot in self.slots}
        for slot in self.slots:  # nothing verified yet: trust nothing
            slot.tier.trust_copies(False)

    def resume(self, state: StreamState | None, *, early: bool) -> str | None:
        """Return the id to replay from for the tiers whose mark still holds.

        The others drop every copy made before the listener fixed its place:
        when the process started (``early``), else now. ``state`` is ``None``
        when the stream is not the one the listener started on.
        """
        start: str | None = None
        replaying = []
        for slot in self.slots:
            mark = quiet(slot, "load_position", self.stream)
            if state is not None and _replayable(mark, state):
                replaying.append(slot)
                if start is None or stream_id(mark[1]) < stream_id(start):
                    start = mark[1]
            else:
                slot.tier.invalidate_all(self.since[slot] if early and state else None)
        self._replaying = tuple(replaying)
        return start

    def caught_up(self) -> None:
        """The listener has applied what the replaying tiers missed: trust them."""
        for slot in self._replaying:
            slot.tier.trust_copies(True)
        self._replaying = ()

    def persist(self, generation: str, last_id: str) -> None:
        """Leave the mark: every message up to ``last_id`` is applied."""
        for slot in self.slots:
            quiet(slot, "save_position", self.stream, generation, last_id)


def _replayable(mark: Any, state: StreamState) -> bool:
    """Return whether every message after ``mark`` is still in the stream."""
    if not isinstance(mark, tuple):  # None, or UNAVAILABLE
        return False
    generation, last_id = mark
    if generation != state.generation:
        return False
    if last_id == "0-0" and state.first_id != "0-0":
        return False  # read nothing yet, and entries came since: be sure
    return not state.lost_after(last_id)


def quiet(slot: Slot, op: str, *args: Any) -> Any:
    """``slot.call``, but ``UNAVAILABLE`` even with FAIL_OPEN off.

    For work no caller waits for (the listener's thread, the clean-up of a
    miss): an error there must not reach a caller that did not ask for it, nor
    look to the listener as if the bus had failed.
    """
    try:
        return slot.call(op, *args)
    except TierUnavailable:
        return UNAVAILABLE
