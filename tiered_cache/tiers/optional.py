"""The optional parts of the tier contract, and the bus's transport.

``BaseTier`` (``tiers/base.py``) is what every tier implements; this module
holds what only some tiers can do, each part with its default (raise
``NotImplementedError``) and the contract a tier that does it must keep:

* leases, for stampede protection (``holds_leases``: L2);
* copies that outlive the process: a machine-wide tier (L3) persists where the
  machine's bus listeners stand, so a process that starts does not trust a
  copy that a change it never heard of replaced (``tiered_cache.copies``);
* the outage journal: ``replace_older`` at the authority, journal documents
  where they survive a restart (``tiered_cache.journal``);
* the invalidation bus's transport: ``Stream``, returned by ``stream``, and
  ``set_many_announced`` and ``incr_announced`` for tiers that write and
  announce in one step.

The chain asks ``base.implements(tier, name)`` (or ``holds_leases``) before
relying on one of these; a tier written against ``BaseTier`` alone works in
every chain, without them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import NamedTuple

from ..envelope import Record

__all__ = ["OptionalMethods", "Stream", "StreamState", "stream_id"]


class StreamState(NamedTuple):
    """Where a bus stream stands, for a reader that wants to know what it missed.

    ``generation`` names the server's life: it changes when the server lost
    its data (restarted empty, flushed), so a reader holding another one has
    missed messages. ``first_id`` is the oldest entry still kept: a reader
    whose last id is older may have missed entries that cannot be replayed.
    """

    generation: str
    #: The last id the stream generated, kept when its entries are trimmed
    #: away; ``"0-0"`` for a stream that does not exist.
    last_id: str
    #: ``"0-0"`` when the stream holds no entry (no entry has that id).
    first_id: str
    #: Entries ever appended and entries held, when the server says (Redis 7).
    entries_added: int | None = None
    length: int | None = None

    def lost_after(self, last_id: str) -> bool:
        """Return whether messages after ``last_id`` may be gone from the stream.

        Trimmed past it (the oldest entry kept is newer); emptied (``XTRIM
        MAXLEN 0``, or every entry deleted: ids were generated past it that no
        entry holds any more); deleted and made again (the stream's ids start
        over behind it). A reader that read nothing (``"0-0"``) of a stream
        that holds entries lost some only if fewer are held than were added;
        without those counts that cannot be told, and is taken as not.
        """
        mine, newest = stream_id(last_id), stream_id(self.last_id)
        if newest < mine:
            return True
        if self.first_id == "0-0":
            return newest > mine
        if mine == (0, 0):
            added, held = self.entries_added, self.length
            return added is not None and held is not None and added > held
        return stream_id(self.first_id) > mine


class Stream:
    """An append-only log of messages that readers resume from an id.

    The invalidation bus (``tiered_cache.coherence``) rides on it. A tier that
    can carry one returns it from ``BaseTier.stream``. Every method raises
    ``TierUnavailable`` when the transport fails.
    """

    def append(self, fields: Mapping[str, str]) -> str:
        """Add one message; return its id (ids increase)."""
        raise NotImplementedError

    def read(
        self, after: str, block: float, count: int
    ) -> tuple[list[tuple[str, dict]], bool]:
        """Return up to ``count`` messages after id ``after``, waiting ``block``
        s, and whether the stream still held the entry ``after`` just before.

        When it did not (trimmed or deleted since the reader read it), the
        messages returned may follow a hole: the reader checks ``state``
        before it takes them as the next ones. ``"0-0"`` is always held.
        """
        raise NotImplementedError

    #: Whether the carrying tier can store values and append a message in one
    #: atomic step (``BaseTier.set_many_announced``): the chain then sends a
    #: write and its announcement together, and neither is lost without the
    #: other.
    joins_writes = False

    def state(self) -> StreamState:
        """Return the generation, the newest id and the oldest id kept."""
        raise NotImplementedError

    def new_generation(self) -> None:
        """Replace the generation token: every reader then sees a gap.

        The last resort of a writer whose announcements cannot be sent.
        """
        raise NotImplementedError


class OptionalMethods:
    """The optional methods of ``BaseTier`` (see the module docstring)."""

    # -- leases (optional: ``holds_leases``) ----------------------------------

    def acquire_lease(self, key: str, seconds: float) -> str | None:
        """Take the lease ``key`` for ``seconds`` if nobody holds it.

        Return a token that identifies this holder, or ``None`` when another
        holder has it. The lease ends by itself after ``seconds`` of real time
        (whatever the backend's clock says), so a holder that dies never
        blocks the others for longer. ``key`` is a final key under the cache's
        namespace (``clear()`` removes it) that no value is stored under.
        Like every call, a transport failure raises ``TierUnavailable``: the
        outcome is then unknown (the lease may have been taken), and callers
        must not wait for a lease across it.

        Only tiers with ``holds_leases`` implement this; the default raises
        ``NotImplementedError``.
        """
        raise NotImplementedError

    def release_lease(self, key: str, token: str) -> None:
        """Give the lease ``key`` back if ``token`` still holds it.

        Atomic compare-and-delete: a holder whose lease already expired (and
        was taken by another) removes nothing. Only tiers with
        ``holds_leases`` implement this; the default raises
        ``NotImplementedError``.
        """
        raise NotImplementedError

    # -- copies that outlive the process (optional) ---------------------------
    #
    # A machine-wide tier (L3) keeps its copies when every process of the
    # machine stops; a process that starts must not trust one that a change it
    # never heard of replaced. Such a tier persists where the machine's
    # listeners stood on the bus (``tiered_cache.copies``).

    def trust_copies(self, trusted: bool) -> None:
        """Serve copies (True), or none at all until told again or dropped."""
        raise NotImplementedError

    def load_position(self, stream: str) -> tuple[str, str] | None:
        """Return the persisted ``(generation, last id)`` of ``stream``, if any.

        Every message up to that id was applied to this tier's copies, or they
        were dropped after it (``invalidate_all``).
        """
        raise NotImplementedError

    def save_position(self, stream: str, generation: str, last_id: str) -> None:
        """Persist where a listener of ``stream`` stands (see ``load_position``).

        Also persists a drop that could not be persisted before, first, and
        picks up the drops other processes persisted.
        """
        raise NotImplementedError

    def replace_older(self, key: str, record: Record) -> int | None:
        """Store ``record`` only over a live entry with an older stamp; atomically.

        Return the stamp of the entry found (``None``: none was live; a raw
        integer has stamp 0). ``record`` was stored exactly when that stamp is
        older than ``record.stamp``: a journaled write replayed after an
        outage (``tiered_cache.journal``) never replaces a newer value, and
        never fills a key that another writer deleted meanwhile. Tiers that
        can be the authority of a journal implement it.
        """
        raise NotImplementedError

    def keep_count(self, key: str, record: Record, rising: bool) -> None:
        """Keep the count ``record`` returned by the authority's ``incr``.

        Several threads and processes write their counts here in any order:
        the kept count only moves the way the counter moved (up when
        ``rising``), and keeps the newest stamp, so a late write of an older,
        lower count neither replaces a higher one nor makes the copy look
        older than the announcements it has been through. A tier that keeps
        copies beyond a process (L3) implements it: it is the base from which
        ``incr`` counts on while the authority does not answer.
        """
        raise NotImplementedError

    def add_count(
        self, key: str, delta: int, value: int, expires_at: float | None
    ) -> int | None:
        """Add ``delta`` counted elsewhere to the counter at ``key``; atomically.

        For a journaled ``incr`` (``tiered_cache.journal``): a live integer
        gets ``delta`` added (its expiry kept); with no entry, ``value`` (the
        count where it was kept) is stored with ``expires_at``; anything else
        (not an integer) is deleted, a miss rather than a wrong count. Return
        the count now stored (``None``: deleted). Tiers that can be the
        authority of a journal implement it.
        """
        raise NotImplementedError

    def read_journal(self, name: str) -> bytes | None:
        """Return the outage journal ``name`` kept here, or ``None``.

        A journal is a small document (``tiered_cache.journal``) kept outside
        every namespace, so that ``clear()`` and ``keys()`` never meet it.
        Tiers that outlive a process (L3) implement it with ``update_journal``.
        """
        raise NotImplementedError

    def update_journal(
        self, name: str, change: Callable[[bytes | None], bytes | None]
    ) -> None:
        """Replace the journal ``name`` by ``change(current)`` atomically.

        ``None`` (either way) means no journal. Processes sharing the tier
        (one machine) update it one at a time.
        """
        raise NotImplementedError

    def stream(self, name: str) -> Stream:
        """Return the stream ``name`` on this tier, for the invalidation bus.

        Tiers that cannot carry a bus raise ``NotImplementedError``.
        """
        raise NotImplementedError

    def set_many_announced(
        self, records: Mapping[str, Record], stream: Stream, fields: Mapping[str, str]
    ) -> bool:
        """Store ``records`` and append ``fields`` to ``stream`` in one step.

        Only called when ``stream.joins_writes``. Either nothing is stored or
        every record is; return whether the message was appended as well
        (False: stored, but the message must be sent again).
        """
        raise NotImplementedError

    def settle(self, keys: list[str]) -> None:
        """Store now what this tier holds queued for ``keys`` (written behind
        the caller, ``tiers/disk/behind.py``): the authority did not take
        them, so this copy is what the outage journal replays."""
        raise NotImplementedError

    def incr_announced(
        self, key: str, delta: int, stream: Stream, fields: Mapping[str, str]
    ) -> tuple[int, bool]:
        """``incr``, appending ``fields`` to ``stream`` in the same atomic step.

        Only called when ``stream.joins_writes``. Return the count and whether
        the message was appended (False: counted, but the message must be
        sent again). Raise as ``incr`` does; then nothing was appended, or
        only the message (a reader's miss, never a silent change).
        """
        raise NotImplementedError


def stream_id(entry_id: str) -> tuple[int, int]:
    """Return a stream entry id (``"ms-seq"``) as a pair that orders like it."""
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)
