"""The miss path of a read, and the lookups that must agree with it.

A tier that *answers* a miss disowns the copies that narrower tiers hold of a
value it would take: L2 is the authority, and an L3 copy cannot outvote it
(except a count made here that L2 has yet to take: ``_counting``). So
after an L2 miss, an L3 copy of a value L2 takes is neither served nor
promoted, and it is dropped; ``has_key`` and the ``_expire_info`` view follow
the same rule. Without it a machine's L3 copy of a key deleted elsewhere would
be served, and promoted back into L2 for every machine (docs/design.rst, "No
resurrection"). A hit is promoted only into narrower tiers (``Chain.narrower``),
never into one that just failed.

These are ``Chain`` methods (``chain`` is the chain). The L2-hit path never
comes here: it is the backend's own.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .copies import quiet
from .envelope import Record, materialize
from .exceptions import EnvelopeError
from .sentinels import MISSING, UNAVAILABLE
from .slot import Slot
from .tiers.base import implements

__all__ = ["find", "has", "inspect", "read_below", "read_many"]


def read_below(chain: Any, key: str, index: int, answer: Any) -> Record | Any:
    """Finish a ``get`` whose read of ``slots[index]`` did not hit.

    ``answer`` is what that tier said (MISSING or UNAVAILABLE). A tier that
    *answered* a miss disowns the copies narrower tiers hold of a value it
    would take: such a copy is neither served nor promoted, and it is
    dropped (docs/design.rst, "No resurrection"). A hit is promoted into
    the narrower tiers above it that did not fail. The L2-hit path never
    comes here.
    """
    slots = chain.slots
    missed = [slots[index]] if answer is MISSING else []
    failed = [] if answer is MISSING else [slots[index]]
    for below in range(index + 1, len(slots)):
        slot = slots[below]
        record = slot.call("get", key)
        if (
            record is not MISSING
            and record is not UNAVAILABLE
            and _disowned(slot, missed, record)
            and not _counting(chain, key)
        ):
            _drop_disowned(slot, key, record)
            record = MISSING
        record = slot.counted(key, record)
        if record is MISSING:
            missed.append(slot)
        elif record is UNAVAILABLE:
            failed.append(slot)
        else:
            # Not into a tier that just failed: it would pay its timeout again.
            above = [s for s in chain.narrower[below] if s not in failed]
            chain.promote({key: record}, above)
            return record
    return MISSING


def read_many(
    chain: Any, slot: Slot, keys: list[str], missed: Sequence[Slot]
) -> dict[str, Record] | Any:
    """``slot.get_many(keys)`` after the tiers ``missed`` answered for ``keys``.

    As ``read_below``: a copy that a wider tier disowned is a miss.
    """
    if not any(_over(m, slot) for m in missed):
        return slot.get_many(keys)
    records = slot.call("get_many", keys)
    if records is UNAVAILABLE:
        return UNAVAILABLE
    for key, record in list(records.items()):
        if _disowned(slot, missed, record):
            _drop_disowned(slot, key, record)
            del records[key]
    return slot.counted_many(keys, records)


def _owned(
    chain: Any, slot: Slot, missed: Sequence[Slot], key: str, record: Record
) -> bool:
    """Return whether ``get`` would serve ``record`` found at ``slot``."""
    return not _disowned(slot, missed, record) or _counting(chain, key)


def _counting(chain: Any, key: str) -> bool:
    """Return whether ``key`` is a count made here that L2 has yet to take.

    Then L2's miss is not news (it refused the count, or lost its data): the
    local count is the one to serve (docs/design.rst, "Counters").
    """
    journal = chain.journal
    return journal is not None and journal.counts(key)


def _over(wider: Slot, slot: Slot) -> bool:
    return wider.tier.may_be_authority and wider.tier.scope > slot.tier.scope


def _disowned(slot: Slot, missed: Sequence[Slot], record: Record) -> bool:
    """Return whether a tier in ``missed`` is wider and would hold ``record``."""
    return any(_over(m, slot) and m.tier.accepts(record) for m in missed)


def _drop_disowned(slot: Slot, key: str, record: Record) -> None:
    # Only this version: a newer one written meanwhile stays.
    if implements(slot.tier, "invalidate"):
        quiet(slot, "invalidate", key, record.stamp + 1)


def has(chain: Any, key: str) -> bool:
    """Return whether ``get`` would find ``key`` (uncounted)."""
    missed: list[Slot] = []
    for slot in chain.slots:
        if any(_over(m, slot) for m in missed):  # only a record can tell
            record = slot.call("get", key)
            if record is MISSING:
                missed.append(slot)
            elif record is not UNAVAILABLE and _owned(chain, slot, missed, key, record):
                return True
            continue
        found = slot.call("has_key", key)
        if found is True:
            return True
        if found is False:
            missed.append(slot)
    return False


def find(chain: Any, key: str) -> Record | Any:
    """Return the record ``get`` would find for ``key`` (uncounted), or MISSING."""
    missed: list[Slot] = []
    for slot in chain.slots:
        record = slot.call("get", key)
        if record is MISSING:
            missed.append(slot)
        elif record is not UNAVAILABLE and _owned(chain, slot, missed, key, record):
            return record
    return MISSING


def inspect(chain: Any, key: str, *, values: bool = False) -> dict[str, dict[str, Any]]:
    """Return where ``key`` is held: ``{tier: {"ttl": s | None, "size": n}}``.

    Every tier is asked directly (uncounted, no promotion): a tier holding
    no live entry is left out, one that could not answer maps to
    ``{"error": "unavailable"}``. ``size`` is the pickled payload's length
    (what placement limits compare). The value is unpickled only when
    ``values`` is true (then ``"value"``, or ``"error"`` when it does not
    unpickle): an inspector without that right never runs a stored pickle.
    """
    now = chain.clock()
    found: dict[str, dict[str, Any]] = {}
    for slot in chain.slots:
        record = slot.call("get", key)
        if record is UNAVAILABLE:
            found[slot.name] = {"error": "unavailable"}
            continue
        if record is MISSING:
            continue
        info: dict[str, Any] = {"ttl": record.remaining(now), "size": record.size}
        if values:
            try:
                info["value"] = materialize(record)
            except EnvelopeError as exc:
                info["error"] = str(exc)
        found[slot.name] = info
    return found
