"""The final key is built once, here, and every tier stores exactly that key.

Django's ``make_and_validate_key`` reads its regex through a ``SimpleLazyObject``
(~1.5 us a call, more than half of a LocMemCache hit); we validate with a
pattern compiled at import time and emit the very same ``CacheKeyWarning``
messages, so code and tests written against Django's backends see no change.
"""

from __future__ import annotations

import hashlib
import re
import warnings
from collections.abc import Callable

from django.core.cache.backends.base import (
    MEMCACHE_MAX_KEY_LENGTH,
    CacheKeyWarning,
    default_key_func,
)

__all__ = [
    "BAD_CHARS",
    "MAX_STORED_KEY_LENGTH",
    "KeyFunc",
    "storable_key",
    "clear_namespace",
    "validate_key",
    "warn_key",
]

KeyFunc = Callable[[str, str, int], str]

BAD_CHARS = re.compile(r"[\x00-\x20\x7f]")
#: Longer final keys are stored as a digest (see ``storable_key``).
MAX_STORED_KEY_LENGTH = 1024

_KEY_MARK = "\x00tiered-cache-key\x00"
_VERSION_MARK = "\x00tiered-cache-version\x00"


def validate_key(key: str) -> bool:
    """Warn about keys memcached would refuse, exactly as ``BaseCache`` does.

    Return whether the key passed (no warning).
    """
    if len(key) > MEMCACHE_MAX_KEY_LENGTH or BAD_CHARS.search(key):
        warn_key(key)
        return False
    return True


def warn_key(key: str) -> None:
    """Emit Django's ``CacheKeyWarning`` messages for ``key`` (slow path)."""
    if len(key) > MEMCACHE_MAX_KEY_LENGTH:
        warnings.warn(
            f"Cache key will cause errors if used with memcached: {key!r} "
            f"(longer than {MEMCACHE_MAX_KEY_LENGTH})",
            CacheKeyWarning,
            stacklevel=6,  # warn_key, validate_key, _build_key, _key, API, caller
        )
    if BAD_CHARS.search(key):
        warnings.warn(
            "Cache key contains characters that will cause errors if used with "
            f"memcached: {key!r}",
            CacheKeyWarning,
            stacklevel=6,  # warn_key, validate_key, _build_key, _key, API, caller
        )


def clear_namespace(key_func: KeyFunc, key_prefix: str, version: int) -> str:
    """Return the literal start shared by every key this cache can build.

    ``clear()`` must remove only this cache's keys from tiers that other caches
    or applications share, never FLUSHDB. We find the namespace by asking the
    key function itself to build a key around marker strings: whatever comes
    before the first marker is fixed for every key and version. An empty result
    means the cache cannot tell its keys apart from anybody else's.
    """
    if key_func is default_key_func:
        return f"{key_prefix}:"
    try:
        probe = key_func(_KEY_MARK, key_prefix, _VERSION_MARK)  # type: ignore[arg-type]
    except Exception:
        # A key function doing arithmetic on the version: settle for this version.
        probe = key_func(_KEY_MARK, key_prefix, version)
    probe = str(probe)
    cut = [i for i in (probe.find(_KEY_MARK), probe.find(_VERSION_MARK)) if i >= 0]
    return probe[: min(cut)] if cut else ""


def storable_key(final: str, namespace: str) -> str:
    """Return the form of ``final`` that every tier can store identically.

    Redis and SQLite take keys as UTF-8: a key holding a lone surrogate cannot
    be encoded, and a 1 MB key costs memory and bandwidth in every tier. Such
    keys are stored as ``<namespace>#sha256:<digest>``: the same string in L1,
    L2 and L3, and still under the namespace, so ``clear()`` finds it.
    Everything else is returned unchanged.
    """
    if len(final) <= MAX_STORED_KEY_LENGTH:
        try:
            final.encode("utf-8")
        except UnicodeEncodeError:
            pass
        else:
            return final
    digest = hashlib.sha256(final.encode("utf-8", "surrogatepass")).hexdigest()
    return f"{namespace}#sha256:{digest}"
