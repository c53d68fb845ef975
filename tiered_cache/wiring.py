"""How a chain's invalidation bus and outage journal are built from its tiers.

The chain (``tiered_cache.chain``) says which tiers hold copies; this module
picks the tier that carries the bus (deployment-wide, with a ``stream``;
``OPTIONS["INVALIDATION"]["VIA"]`` to choose), connects the bus's actions to
those copies (drop one key, drop every copy, bound their staleness while the
bus is down) and, when the carrier can replace older values
(``replace_older``), the journal of changes it missed, kept in the widest copy
tier that keeps journals (L3) or in memory.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from django.core.exceptions import ImproperlyConfigured

from .coherence import InvalidationBus
from .conf import TieredOptions
from .copies import anchor_for, apply_to_copy
from .journal import Journal
from .slot import Slot
from .tiers.base import Scope, implements

__all__ = ["Wired", "build"]


class Wired(NamedTuple):
    """What ``build`` made: the carrying slot, the bus and the journal."""

    via: Slot | None = None
    bus: InvalidationBus | None = None
    journal: Journal | None = None


def build(
    slots: Sequence[Slot],
    copies: Sequence[Slot],
    namespace_of: Callable[[str], str],
    options: TieredOptions,
) -> Wired:
    """Return the bus (and journal) of a chain, or an empty ``Wired``.

    ``slots`` are the chain's tiers, ``copies`` those holding copies that can
    drop one (``Chain.copies``), ``namespace_of`` the chain's
    ``Chain.namespace_of`` (how an overflowing journal covers a key).

    Raise ``ImproperlyConfigured`` when ``INVALIDATION`` asks for a bus that
    no tier can carry.
    """
    settings = options.invalidation
    if settings.enabled is False or not copies:
        return Wired()
    carriers = [
        slot
        for slot in slots
        if slot.tier.scope == Scope.DEPLOYMENT and implements(slot.tier, "stream")
    ]
    if settings.via is not None:
        carriers = [slot for slot in carriers if slot.name == settings.via]
    if not carriers:
        if settings.enabled:
            raise ImproperlyConfigured(
                "INVALIDATION: no tier can carry the bus "
                f"({settings.via or 'a deployment-wide tier with a stream'})"
            )
        return Wired()
    via = carriers[0]

    # Every copy tier implements ``invalidate`` (see ``Chain.copies``); dropping
    # every copy at once is optional. It reaches the tier even while its
    # breaker is open: it never fails (``BaseTier.invalidate_all``).
    droppable = tuple(s for s in copies if implements(s.tier, "invalidate_all"))

    def each(op: str, *args: Any) -> int:
        return sum(apply_to_copy(slot, op, *args) is True for slot in copies)

    def drop_all() -> None:
        for slot in droppable:
            slot.tier.invalidate_all()

    def bound(seconds: float | None) -> None:
        for slot in copies:
            slot.tier.bound_staleness(seconds)

    journal = None
    if implements(via.tier, "replace_older"):
        keepers = [s for s in copies if implements(s.tier, "update_journal")]
        journal = Journal(
            via,
            keepers[-1] if keepers else None,
            copies,
            namespace_of=namespace_of,
        )
    bus = InvalidationBus(
        via.tier.stream(settings.stream),
        invalidate=lambda key, stamp: each("invalidate", key, stamp),
        drop=lambda key: each("delete", key),
        clear=lambda namespace: each("clear", namespace),
        drop_all=drop_all,
        bound_staleness=bound,
        staleness=options.l1_max_staleness,
        heartbeat=settings.heartbeat,
        name=via.name,
        tick=None if journal is None else journal.tick,
        anchor=anchor_for(droppable, settings.stream),
    )
    if journal is not None:
        journal.bus = bus
    return Wired(via, bus, journal)
