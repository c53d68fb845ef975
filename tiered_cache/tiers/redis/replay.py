"""``replace_older``: a journaled write replayed at Redis only over older data.

A write that Redis did not answer during an outage is journaled and replayed
when Redis answers again (``tiered_cache.journal``). By then another process
may have written the key (a newer stamp: keep it) or deleted it (nothing
there: do not bring our value back). So the replay stores its record only
over a live entry whose stamp is older, and decides that inside a ``WATCH``
transaction on the key: a write landing between the look and the ``SET``
makes the transaction fail, and the look is taken again.

The stamp is read from the envelope header (``GETRANGE``, the payload never
travels); a raw integer has no stamp and counts as 0 (older than any write),
as it does everywhere else (``wire.int_record``).
"""

from __future__ import annotations

from typing import Any

import redis.exceptions as rex

from ...envelope import MAGIC, Record, peek
from . import wire

__all__ = ["replace_older"]

_ATTEMPTS = 3


def replace_older(tier: Any, key: str, record: Record) -> int | None:
    """See ``BaseTier.replace_older``; ``tier`` is a ``RedisTier``.

    After ``_ATTEMPTS`` races lost to writers of the key, answer as if an
    entry as new as ``record`` were there: the writers that won are newer.
    """
    args = tier._set_args(key, record)  # DEL when the record has expired
    client = tier._writer(key)
    for _ in range(_ATTEMPTS):
        with client.pipeline(transaction=True) as pipe:
            try:
                pipe.watch(key)
                found = _stamp(pipe, key, tier.clock())
                if found is None or found >= record.stamp:
                    pipe.unwatch()
                    return found
                pipe.multi()
                pipe.execute_command(*args)
                pipe.execute()
                return found
            except rex.WatchError:
                continue
    return record.stamp


def _stamp(pipe: Any, key: str, now: float) -> int | None:
    """Return the stamp of the live entry at ``key`` (0: no stamp), or None."""
    state, head = wire.probe(pipe, key, now)
    if state is wire.ABSENT or state is wire.DEAD:
        return None
    if state is wire.LIVE and head is not None and head.startswith(MAGIC):
        return peek(head)[1]  # unverified: it only orders this write
    return 0  # a raw int, or data that is not ours (replaced like a stale entry)
