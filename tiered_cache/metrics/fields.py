"""One process's counters of a chain, as the flat fields the shared store adds up.

A field is ``"<tier>|<counter>"`` (``"l2|hits"``), ``"<tier>|error|<kind>"``,
``"<tier>|refused|<reason>"``, ``"<tier>|lat|<op>|<bucket>"`` with
``"<tier>|lat_us|<op>"`` (a latency histogram), ``"chain|<counter>"``
(``ChainStats``), ``"bus|<counter>"`` (``BusStats``) or
``"grp|<group>|hits"``/``misses`` (``GroupStats``). Every part is bounded
(tier names, counter names, error kinds, operations, the first groups up to
``METRICS["GROUPS"]``): no key of the user's
ever becomes a field, so 10 000 distinct keys make no new field.

Counters are cumulative per process (``counters``); the flusher sends their
differences. Gauges (``gauges``: bytes and entries held, breaker state) are
sent as they are, per process, and never added across minutes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields as _dataclass_fields
from typing import TYPE_CHECKING

from ..coherence import BusStats
from ..stats import COUNTERS, LATENCY_BUCKETS_MS, POOLED_GROUPS, REFUSAL_REASONS

if TYPE_CHECKING:
    from ..chain import Chain

__all__ = [
    "BREAKER_STATES",
    "breaker_state",
    "counters",
    "declared",
    "gauges",
    "latency_field",
    "top_groups",
]

#: Breaker states in order of worry: a deployment shows its worst process's.
BREAKER_STATES = ("closed", "half_open", "open")


def counters(chain: Chain) -> dict[str, int]:
    """Return the chain's cumulative counters in this process (non-zero ones)."""
    out: dict[str, int] = {}
    for slot in chain.slots:
        stats, tier = slot.stats, slot.name
        for name in COUNTERS:
            value = getattr(stats, name)
            if value:
                out[f"{tier}|{name}"] = value
        for kind, value in list(stats.errors_by_kind.items()):
            out[f"{tier}|error|{kind}"] = value
        for reason, value in list(stats.refused_by_reason.items()):
            out[f"{tier}|refused|{reason}"] = value
        for op, latency in list(stats.latency.items()):
            for index, count in enumerate(latency.counts):  # zeros too: fixed
                out[f"{tier}|lat|{op}|{index}"] = count
            out[f"{tier}|lat_us|{op}"] = int(latency.total_ms * 1000)
    for name, value in chain.stats.snapshot().items():
        if value:
            out[f"chain|{name}"] = value
    groups = chain.groups
    if groups is not None:
        for result, counts in (("hits", groups.hits), ("misses", groups.misses)):
            for group, value in list(counts.items()):
                out[f"grp|{group}|{result}"] = value
    if chain.bus is not None:
        for name, value in chain.bus.stats.snapshot().items():
            if value:
                out[f"bus|{name}"] = value
    return out


def gauges(chain: Chain) -> dict[str, int]:
    """Return what the chain holds now in this process, and its breaker states."""
    out: dict[str, int] = {}
    for slot in chain.slots:
        usage = slot.tier.usage()
        if usage is not None:
            out[f"{slot.name}|bytes"] = int(usage["bytes"])
            out[f"{slot.name}|entries"] = int(usage["entries"])
        if slot.breaker is not None:
            out[f"{slot.name}|breaker"] = BREAKER_STATES.index(slot.breaker.state)
    return out


def latency_field(name: str) -> tuple[str, str, int] | None:
    """Return ``(tier, op, bucket)`` of a ``"<tier>|lat|<op>|<bucket>"`` field.

    ``None`` for any other field, and for one of that shape whose bucket is
    not one of the histogram's (a store anyone can write to may hold it).
    """
    parts = name.split("|")
    if len(parts) != 4 or parts[1] != "lat":
        return None
    index = parts[3]
    if not (index.isascii() and index.isdigit()) or int(index) > len(
        LATENCY_BUCKETS_MS
    ):
        return None
    return parts[0], parts[2], int(index)


def breaker_state(value: int | None) -> str | None:
    """Return the name of a stored breaker gauge (``None``: none or unknown)."""
    if value is None or not 0 <= value < len(BREAKER_STATES):
        return None
    return BREAKER_STATES[value]


def declared(chain: Chain) -> dict[str, int]:
    """Return the fields a reader shows at zero before anything is counted.

    The refusal reasons of every tier, the bus's events (a chain with a
    bus) and the pooled groups (``"-"``, ``"other"``: with ``GROUPS``), so
    a scrape has as many series the first minute as after 10 000 distinct
    keys; the first error of a kind, or of an operation's latency, still
    adds its series (their names are not all known in advance).
    """
    out = {
        f"{slot.name}|refused|{reason}": 0
        for slot in chain.slots
        for reason in REFUSAL_REASONS
    }
    if chain.bus is not None:
        out.update({f"bus|{f.name}": 0 for f in _dataclass_fields(BusStats)})
    if chain.groups is not None:
        for group in POOLED_GROUPS:
            out.update({f"grp|{group}|hits": 0, f"grp|{group}|misses": 0})
    return out


def top_groups(counts: Mapping[str, int], limit: int) -> dict[str, int]:
    """Return ``counts`` with every key group past the ``limit`` busiest in ``other``.

    Applied by readers, over every process's counts: a store written
    before the store kept its groups bounded, or by several processes each
    naming its own first groups, still reads as ``limit`` groups at most.
    """
    sizes: dict[str, int] = {}
    for name, value in counts.items():
        if name.startswith("grp|"):
            group = name[4:].rpartition("|")[0]
            sizes[group] = sizes.get(group, 0) + value
    named = sorted(
        (g for g in sizes if g not in POOLED_GROUPS), key=lambda g: -sizes[g]
    )
    if len(named) <= limit:
        return dict(counts)
    kept = set(named[:limit])
    out: dict[str, int] = {}
    for name, value in counts.items():
        if name.startswith("grp|"):
            group, _, result = name[4:].rpartition("|")
            if group not in kept and group not in POOLED_GROUPS:
                name = f"grp|other|{result}"
        out[name] = out.get(name, 0) + value
    return out
