"""The oracle of ``bench/chaos.py``: stale reads beyond the bound, failed calls.

The load generator (``bench/chaos_load.py``) has one writer per key, so every
key's versions are written in order, one at a time: version ``v + 1`` is sent
only after ``v`` came back. A write is *acknowledged* when its response was a
200. Each read records when it was sent and the version it returned (``None``
for a miss).

A read of version ``u`` sent at ``t`` is *stale by* ``t - ack(w)`` when ``w`` is
the first acknowledged version after ``u`` and ``ack(w) < t``: the value had
been replaced, and the caller knew it, that long before the read was even sent.
Measuring from the send time (not the answer) gives the cache the benefit of
every doubt: a read racing the write is never stale. A miss is never stale
(the product promises "a miss is fine, the old value is not"), and a version
that was never written at all is a wrong value, counted with the client errors.
A write that failed (non-200, connection error) proves nothing either way: its
value may or may not have been stored, so it neither makes a read stale nor
makes one wrong.

A write acknowledged while the fault kept L2 (the authority) from answering
reached only the answering worker's L1 and its machine's L3; the product
promises that other processes see it once it is reconciled, after L2 answers
again (the outage journal, docs/design.rst "Writes during an L2 outage").
Such a write is judged from the end of the fault (``outage``), not from its
acknowledgement; ``stale_beyond_from_ack`` counts the reads that would be
beyond the bound measured from the acknowledgement, so the table shows both.

The *bound* is what the product promises (docs/faults.rst, I3): with the bus
running a replaced value is gone within ``2 × HEARTBEAT + 1`` seconds (3 s at
the default heartbeat), even after a detected bus fault; ``L1_MAX_STALENESS``
(60 s) is the last resort when the bus is off. *Recovery* is the time from the
end of the fault to the last bad event: a client error, or a read stale by more
than ``FRESH`` (0.5 s: a healthy bus delivers in milliseconds, and in a few
hundred on a loaded machine, so staler than that means the fault still shows);
when that event came in the run's last second, the scenario did not recover while
it was watched.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["BOUND", "FRESH", "Read", "Verdict", "Write", "judge"]

#: Seconds: 2 × HEARTBEAT (1 s) + 1, the bus's promise after a detected fault.
BOUND = 3.0
#: Seconds: a read staler than this counts against recovery. A healthy bus
#: delivers in milliseconds, but on a loaded 2-core machine the healthy baseline
#: reached 0.37 s (bench/RESULTS.md); 0.5 s keeps that noise out of recovery.
FRESH = 0.5


@dataclass(frozen=True)
class Write:
    key: str
    version: int
    sent: float
    answered: float
    ok: bool
    error: str = ""
    worker: str = ""  # X-Worker: the pid that answered, its L2 breaker and errors


@dataclass(frozen=True)
class Read:
    key: str
    sent: float
    answered: float
    version: int | None  # None: a miss
    error: str = ""  # not empty: the read failed (non-200, connection error)
    worker: str = ""


@dataclass
class Verdict:
    requests: int
    client_errors: int
    stale_beyond_bound: int
    max_staleness: float
    recovery: float | None  # None: no fault in this scenario
    p99_latency: float
    #: False when the last bad event came in the run's last second: the fault
    #: still showed when the load stopped, so ``recovery`` is a lower bound.
    recovered: bool = True
    reads: int = 0
    misses: int = 0
    stale_reads: int = 0  # staler than FRESH, within the bound or not
    #: Beyond the bound if writes made during the outage were judged from
    #: their acknowledgement rather than from the end of the outage.
    stale_beyond_from_ack: int = 0
    stale_keys: list[str] = field(default_factory=list)  # read beyond the bound
    examples: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def judge(
    writes: Sequence[Write],
    reads: Sequence[Read],
    *,
    fault_end: float | None,
    outage: tuple[float, float] | None = None,
    bound: float = BOUND,
    fresh: float = FRESH,
    examples: int = 5,
    origin: float = 0.0,
) -> Verdict:
    """Check every read against the acknowledged writes; see the module docstring.

    ``origin`` is subtracted from the times shown in the examples. ``outage``
    is the ``(start, end)`` of a fault that kept the authority from answering.
    """
    acked: dict[str, tuple[list[int], list[float]]] = {}
    promised: dict[str, tuple[list[int], list[float]]] = {}
    highest: dict[str, int] = {}
    for w in sorted(writes, key=lambda w: (w.key, w.version)):
        highest[w.key] = max(highest.get(w.key, 0), w.version)
        if w.ok:
            versions, times = acked.setdefault(w.key, ([], []))
            versions.append(w.version)
            times.append(w.answered)
            due = w.answered
            if outage is not None and outage[0] <= w.answered < outage[1]:
                due = outage[1]  # reconciled once L2 answers again
            versions, times = promised.setdefault(w.key, ([], []))
            versions.append(w.version)
            times.append(due)

    errors = stale = beyond = beyond_from_ack = misses = 0
    worst = 0.0
    last_bad: float | None = None
    # A few examples of each kind, the worst kinds first in the report.
    notes: dict[str, list[str]] = {"beyond": [], "error": [], "stale": []}
    stale_keys: set[str] = set()

    def bad(at: float, kind: str, note: str) -> None:
        nonlocal last_bad
        last_bad = at if last_bad is None else max(last_bad, at)
        if len(notes[kind]) < examples:
            notes[kind].append(note)

    for w in writes:
        if not w.ok:
            errors += 1
            bad(w.answered, "error", f"write {w.key}={w.version} failed: {w.error}")
    for r in reads:
        if r.error:
            errors += 1
            bad(r.answered, "error", f"read {r.key} failed: {r.error}")
            continue
        if r.version is None:
            misses += 1
            continue
        if r.version > highest.get(r.key, 0):
            errors += 1
            bad(r.answered, "error", f"read {r.key}={r.version}: never written")
            continue
        if staleness(acked.get(r.key), r.version, r.sent) > bound:
            beyond_from_ack += 1
        age = staleness(promised.get(r.key), r.version, r.sent)
        worst = max(worst, age)
        if age > bound:
            beyond += 1
            stale_keys.add(r.key)
        if age > fresh:
            stale += 1
            kind = "beyond" if age > bound else "stale"
            at = r.sent - origin
            note = (
                f"read {r.key}={r.version} at {at:.2f}s stale by {age:.3f}s"
                f" (worker {r.worker or '?'})"
            )
            bad(r.answered, kind, note)

    latencies = sorted(x.answered - x.sent for x in _all(writes, reads))
    recovery = None
    if fault_end is not None:
        recovery = 0.0 if last_bad is None else max(0.0, last_bad - fault_end)
    ended = max((x.answered for x in _all(writes, reads)), default=0.0)
    recovered = last_bad is None or last_bad < ended - 1.0
    return Verdict(
        requests=len(writes) + len(reads),
        client_errors=errors,
        stale_beyond_bound=beyond,
        max_staleness=worst,
        recovery=recovery,
        recovered=recovered,
        p99_latency=percentile(latencies, 0.99),
        reads=len(reads),
        misses=misses,
        stale_reads=stale,
        stale_beyond_from_ack=beyond_from_ack,
        stale_keys=sorted(stale_keys),
        examples=notes["beyond"] + notes["error"] + notes["stale"][:2],
    )


def staleness(
    acked: tuple[list[int], list[float]] | None, version: int, sent: float
) -> float:
    """Seconds between the ack of the first version after ``version`` and ``sent``."""
    if acked is None:
        return 0.0
    versions, times = acked
    i = bisect.bisect_right(versions, version)
    if i == len(versions):
        return 0.0
    return max(0.0, sent - times[i])


def percentile(sorted_values: Sequence[float], q: float) -> float:
    if not sorted_values:
        return 0.0
    return sorted_values[min(len(sorted_values) - 1, int(len(sorted_values) * q))]


def _all(writes: Iterable[Write], reads: Iterable[Read]) -> Iterable[Write | Read]:
    yield from writes
    yield from reads
