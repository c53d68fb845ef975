"""``touch`` on Redis: a new expiry for a live entry, in one optimistic transaction.

The entry is read and checked (live on the backend's clock, signed for this
key) under ``WATCH``, then given its new expiry: an envelope gets its header
rewritten in place (``SETRANGE`` of the header only, the payload is not sent
back and forth) and a relative ``PEXPIRE``; a raw integer, which carries no
envelope, an absolute ``PEXPIREAT`` (see ``wire``). A timeout of 0 or less
deletes the entry, as Django does. A concurrent writer makes the transaction
fail; after three such races ``touch`` gives up and returns True: the newer
writes carry their own expiry.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import redis.exceptions as rex

from ...envelope import HEADER_SIZE, MAGIC, retime
from ...exceptions import UntrustedRecord
from . import wire

if TYPE_CHECKING:
    from .tier import RedisTier

__all__ = ["touch"]

_ATTEMPTS = 3


def touch(tier: RedisTier, key: str, expires_at: float | None) -> bool:
    """Give the live entry at ``key`` the expiry ``expires_at``; see above."""
    ms = wire.ttl_ms(expires_at, tier.clock())
    client = tier._writer(key)
    for _ in range(_ATTEMPTS):
        with client.pipeline(transaction=True) as pipe:
            try:
                pipe.watch(key)
                state, head = wire.probe(pipe, key, tier.clock(), whole=True)
                if state is not wire.LIVE:
                    if state is wire.BAD:
                        tier.reject(key, UntrustedRecord("not signed for this key"))
                    return False
                envelope_head = head.startswith(MAGIC)  # type: ignore[union-attr]
                pipe.multi()
                if ms is not None and ms <= 0:
                    pipe.delete(key)
                else:
                    if envelope_head:  # the payload is not sent back
                        pipe.setrange(
                            key, 0, retime(head, expires_at, key)[:HEADER_SIZE]
                        )
                    if ms is None or ms > wire.MAX_PX:
                        pipe.persist(key)
                    elif envelope_head:
                        pipe.pexpire(key, ms)
                    else:  # a raw int's expiry is absolute (see wire.set_args)
                        pipe.pexpireat(key, wire.pxat(expires_at))  # type: ignore[arg-type]
                pipe.execute()
                return True
            except rex.WatchError:
                continue
    return True
