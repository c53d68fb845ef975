"""The disk tier's OPTIONS: which are diskcache settings, and their defaults.

A ``diskcache.DjangoCache`` CACHES entry mixes both: lower-case ``OPTIONS``
are diskcache settings, upper-case ones are ours (``DiskTier``'s docstring
lists them). Some diskcache defaults are changed so that a slow disk or a
held lock cannot stall a request (docs/faults.rst #28): see ``DEFAULTS``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from diskcache.core import DEFAULT_SETTINGS
from django.core.exceptions import ImproperlyConfigured

from ...exceptions import BadValue
from ..values import (
    NON_NEGATIVE_INT,
    NON_NEGATIVE_SECONDS,
    POSITIVE_INT,
    option_problems,
)

__all__ = ["DEFAULTS", "RULES", "diskcache_settings", "problems", "split"]

#: diskcache settings that FanoutCache takes beside DEFAULT_SETTINGS.
_OUR_SETTINGS = frozenset({"shards", "timeout"})
#: Settings given even when not configured (diskcache's: 60 s lock waits).
DEFAULTS: Mapping[str, Any] = {
    "shards": 8,
    "timeout": 0.05,
    "size_limit": 2**30,
    "cull_limit": 10,
    # Per shard and per process: diskcache's own 8192 pages and 64 MiB of
    # mmap made L3 add ~600 MB of RSS to every process at 1M entries (8
    # shards; bench/memory.py). 1024 pages (4 MiB) and 2 MiB of mmap per
    # shard bound it near 64 MB.
    "sqlite_cache_size": 1024,
    "sqlite_mmap_size": 2 * 2**20,
}

#: Numeric settings: diskcache does arithmetic on them when the directory
#: opens, so a string ("10GB") would leave L3 closed in every process.
RULES = {
    "shards": POSITIVE_INT,
    "timeout": NON_NEGATIVE_SECONDS,
    "size_limit": NON_NEGATIVE_INT,
    "cull_limit": NON_NEGATIVE_INT,
    "disk_min_file_size": NON_NEGATIVE_INT,
    "sqlite_cache_size": NON_NEGATIVE_INT,
    "sqlite_mmap_size": NON_NEGATIVE_INT,
    "OPEN_TIMEOUT": NON_NEGATIVE_SECONDS,
    "CHECK_INTERVAL": NON_NEGATIVE_SECONDS,
    "WRITE_BEHIND_MAX_BYTES": NON_NEGATIVE_INT,
}


def problems(name: str, location: Any, options: Mapping[str, Any]) -> list[BadValue]:
    """Return the bad values of a disk tier's LOCATION and numeric OPTIONS."""
    found = option_problems(name, options, RULES)
    if not location or not isinstance(location, (str, os.PathLike)):
        found.append(
            BadValue(
                name,
                "LOCATION",
                location,
                "the cache directory, an absolute path on local disk "
                "(e.g. '/var/cache/<project>')",
            )
        )
    return found


def split(options: Mapping[str, Any], *, name: str) -> dict[str, Any]:
    """Return our (upper-case) options; raise for unknown diskcache settings."""
    ours = {key: v for key, v in options.items() if str(key).isupper()}
    known = _OUR_SETTINGS | set(DEFAULT_SETTINGS)
    shouted = sorted(str(k) for k in ours if str(k).lower() in known)
    if shouted:
        raise ImproperlyConfigured(
            f"tier {name!r}: unknown OPTIONS {shouted}; diskcache settings "
            f"are lower case: {[key.lower() for key in shouted]}"
        )
    unknown = sorted(
        str(key) for key in options if key not in ours and key not in known
    )
    if unknown:
        raise ImproperlyConfigured(
            f"tier {name!r}: unknown diskcache OPTIONS {unknown}; "
            f"known: {', '.join(sorted(known))}"
        )
    return ours


def diskcache_settings(
    options: Mapping[str, Any], params: Mapping[str, Any], *, name: str
) -> dict[str, Any]:
    """Return the diskcache settings of a CACHES entry (``params``), defaults set.

    A DjangoCache entry's top-level ``SHARDS`` and ``DATABASE_TIMEOUT`` are
    accepted too, if they agree with ``OPTIONS``.
    """
    settings = {key: v for key, v in options.items() if not key.isupper()}
    for ours, theirs in (("shards", "SHARDS"), ("timeout", "DATABASE_TIMEOUT")):
        if theirs in params:
            if ours in settings and settings[ours] != params[theirs]:
                raise ImproperlyConfigured(
                    f"tier {name!r}: {theirs} and OPTIONS[{ours!r}] differ"
                )
            settings[ours] = params[theirs]
    for key, default in DEFAULTS.items():
        settings.setdefault(key, default)
    return settings
