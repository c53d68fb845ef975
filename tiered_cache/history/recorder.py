"""What a read of a sampled key costs the request thread, and nothing more.

``Recorder.wrap`` returns the ``get`` the backend installs on an instance
when ``OPTIONS["HISTORY"]`` is set (the one seam in ``backend.py``; a cache
without HISTORY keeps its plain ``get``). Per read:

* a key outside the sample: one dict lookup in the cache's memo (shared by
  its instances; the decision and the hash are computed once per key), a
  countdown, then the plain ``get``; every ``READ_EVERY``-th such read is
  recorded as a sampled key's is (a sample weighted by reads: it names the
  hot keys, which warming needs and the spatial sample mostly misses);
* a sampled key: the plain ``get``, a look at whether L1 held it, and one
  tuple appended to a bounded ``deque`` (atomic under the GIL, no lock). When
  the buffer is full the oldest accesses are dropped: the history is a sample.

Only string keys at the instance's default version are recorded (every key
Django's own helpers build); others are read as usual and not recorded.

The tier of a hit is the name of the first tier whose hit counter moved
during the read; under concurrent reads another thread's hit can move it
first, so the tier of a below-L1 hit is approximate (it is exact for L1).
The size is ``sys.getsizeof`` of the value read (shallow), 0 for a miss.
"""

from __future__ import annotations

import sys
from collections import deque
from collections.abc import Callable
from operator import attrgetter
from typing import Any

from ..forksafe import Registry, after_fork_in_child
from ..sentinels import MISSING
from .options import HistoryOptions
from .sampling import Sampler, key_hash
from .shards import MissRatioCurve

__all__ = ["Access", "Recorder", "built_recorder", "recorder_for"]

#: One recorded read: (key hash, time, size, hit, tier name or "").
Access = tuple[int, float, int, bool, str]

_MEMO_SIZE = 16384
#: Sampled reads after which the curve's histogram is halved (it follows
#: the workload instead of averaging the process's whole life).
MRC_WINDOW = 100_000
#: The countdown of READ_EVERY 0: never reaches zero.
_NEVER = 2**62
_hits = attrgetter("hits")


class Recorder:
    """The in-process side of one cache configuration's history."""

    def __init__(self, options: HistoryOptions, clock: Callable[[], float]) -> None:
        self.options = options
        self.clock = clock
        self.sampler = Sampler(options.sample_rate)
        self.buffer: deque[Access] = deque(maxlen=options.buffer)
        #: The names of sampled keys read lately, {hash: key} (bounded: the
        #: oldest entries go). Each drain sends the names of the keys its
        #: reads are of, so the store's side table keeps hot keys' names.
        self.known: dict[int, str] = {}
        self._known_max = 2 * options.max_keys
        #: Per key-making identity of a cache: {key: encoded decision} (``wrap``).
        self._memos: dict[tuple, dict[str, int]] = {}
        #: Reads of keys outside the sample until the next one is recorded.
        self._countdown = [options.read_every or _NEVER]
        #: This process's L1 reuse distances (fed by the flush, not here).
        self.curve = MissRatioCurve(
            options.sample_rate, options.mrc_keys, window=MRC_WINDOW
        )

    def wrap(self, cache: Any, get: Callable[..., Any]) -> Callable[..., Any]:
        """Return ``get`` recording the reads of sampled keys of ``cache``."""
        # The memo: key -> hash + 1 for a key in the sample, -(hash + 1) for
        # one outside it (its hash kept for the read in READ_EVERY), absent
        # (0) before its first read. One lookup and one comparison tell. It
        # and the countdown are shared by every instance of the cache (under
        # ASGI Django builds one per request), by what makes its keys.
        identity = (cache.location, cache.key_prefix, cache.version, cache.key_func)
        memo = self._memos.setdefault(identity, {})
        memo_get = memo.get
        countdown = self._countdown
        append = self.buffer.append
        clock = self.clock
        every = self.options.read_every
        stats = [slot.stats for slot in cache._slots]
        names = [slot.name for slot in cache._slots]
        first = names[0]
        threshold = self.sampler.threshold
        know = self._know

        def decide(key: str) -> int | None:
            hashed = key_hash(cache.stored_key(key))
            if len(memo) >= _MEMO_SIZE:
                memo.clear()
            if hashed < threshold:
                memo[key] = hashed + 1
                know(hashed, key)
                return hashed
            memo[key] = -hashed - 1
            return None

        def record(key: str, hashed: int, default: Any) -> Any:
            before = list(map(_hits, stats))
            value = get(key, MISSING)
            if value is MISSING:
                append((hashed, clock(), 0, False, ""))
                return default
            tier = first
            if stats[0].hits == before[0]:  # not an L1 hit: which tier moved
                tier = ""
                for index in range(1, len(stats)):
                    if stats[index].hits != before[index]:
                        tier = names[index]
                        break
            append((hashed, clock(), sys.getsizeof(value), True, tier))
            return value

        def get_recorded(key: Any, default: Any = None, version: Any = None) -> Any:
            # The path of a key outside the sample is kept as short as can
            # be: one dict lookup (only str keys are ever in the memo), one
            # comparison and a countdown to the next read recorded whatever
            # its key.
            if version is None:
                try:
                    decision = memo_get(key, 0)
                except TypeError:  # an unhashable key: read, never recorded
                    return get(key, default)
                if decision < 0:
                    left = countdown[0] - 1  # lossy across threads: a sample
                    if left:
                        countdown[0] = left
                        return get(key, default)
                    countdown[0] = every
                    hashed = -decision - 1
                    know(hashed, key)
                    return record(key, hashed, default)
                if decision:
                    return record(key, decision - 1, default)
            if version is not None or type(key) is not str:
                return get(key, default, version)
            hashed = decide(key)  # the key's first read here
            if hashed is None:
                return get(key, default)
            return record(key, hashed, default)

        return get_recorded

    def _know(self, hashed: int, key: str) -> None:
        known = self.known
        known[hashed] = key
        while len(known) > self._known_max:
            try:
                del known[next(iter(known))]
            except (KeyError, RuntimeError, StopIteration):  # another thread
                break

    def drain(self) -> tuple[list[Access], dict[int, str]]:
        """Take the buffered accesses and their keys' names (the flush thread).

        The accesses also feed this process's miss-ratio curve here, off the
        request thread.
        """
        buffer = self.buffer
        records = [buffer.popleft() for _ in range(len(buffer))]
        known = self.known
        names = {}
        for record in records:
            name = known.get(record[0])
            if name is not None:
                names[record[0]] = name
        # Only the spatial sample measures reuse distances (SHARDS).
        threshold = self.sampler.threshold
        self.curve.feed(record[0] for record in records if record[0] < threshold)
        return records, names


_recorders: Registry[Recorder] = Registry()


def recorder_for(options: Any) -> Recorder | None:
    """Return this process's recorder for ``TieredOptions`` (None: HISTORY off).

    One per configuration (every backend instance of it appends to the same
    buffer). A forked child keeps the object and its curve, but not the
    parent's unflushed reads (``_forget_parent_reads``): the parent sends
    those.
    """
    history = options.history
    if not history.enabled:
        return None
    return _recorders.get_or_create(
        (options.share_key, history), lambda: Recorder(history, options.clock)
    )


def built_recorder(options: Any) -> Recorder | None:
    """Return the recorder of ``options`` if this process built one (no build)."""
    return _recorders.get((options.share_key, options.history))


def _forget_parent_reads() -> None:
    for _, recorder in _recorders.items():
        recorder.buffer.clear()


after_fork_in_child(_forget_parent_reads)
