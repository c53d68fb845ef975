"""Leases on Redis: which process computes a missing value (stampede protection).

A lease is a plain string key holding a random token. It is taken with
``SET key token NX PX ms``: one round trip, atomic, and it ends by itself when
its holder dies or hangs. It is given back with a compare-and-delete script, so
a holder whose lease has already expired (and was taken by another process)
never deletes the new holder's lease.

``PX`` counts real time on the Redis server, not the backend's clock: a lease
is about how long a computation may take, and an injected test clock must not
make it last forever or end at once.

A ``SET NX`` that timed out has an *unknown* outcome (the server may apply it
when it resumes): the caller hears ``TierUnavailable`` and must behave as if it
holds no lease (compute without waiting); the lease, if it was taken, ends
after its ``PX``.
"""

from __future__ import annotations

import hashlib
import math
import secrets
from typing import Any

import redis.exceptions as rex

__all__ = ["acquire", "release"]

# Delete the lease only if it still holds our token (1 = deleted, 0 = not ours).
_RELEASE_LUA = """\
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""
_RELEASE_SHA = hashlib.sha1(_RELEASE_LUA.encode()).hexdigest()


def acquire(client: Any, key: str, seconds: float) -> str | None:
    """Take the lease ``key`` for ``seconds``; return its token, or ``None``."""
    if not seconds > 0:
        raise ValueError(f"a lease lasts a positive number of seconds, not {seconds!r}")
    token = secrets.token_hex(16)
    ms = max(1, math.ceil(seconds * 1000))
    if client.set(key, token, nx=True, px=ms):
        return token
    return None


def release(client: Any, key: str, token: str) -> bool:
    """Delete the lease ``key`` if ``token`` still holds it; return whether it did."""
    try:
        deleted = client.evalsha(_RELEASE_SHA, 1, key, token)
    except rex.NoScriptError:
        deleted = client.eval(_RELEASE_LUA, 1, key, token)
    return bool(deleted)
