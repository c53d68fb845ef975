"""System checks ``tiered_cache.E0xx`` / ``W0xx`` / ``I0xx``: misconfiguration,
with hints.

They read settings and look at L3 folders; no connection is opened, so
``manage.py check`` works with Redis down. They run when ``"tiered_cache"`` is
in ``INSTALLED_APPS``. The backend itself never raises a configuration error
from its constructor (Django's own cache checks build every cache), so each
error reaches the user here as one message with its hint.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from typing import Any

from django.conf import settings
from django.core import checks
from django.core.cache.backends.base import get_key_func
from django.core.exceptions import ImproperlyConfigured

from .conf import BASECACHE_OPTIONS, DEFAULTS, default_l3_directory, parse_options
from .exceptions import BadValues
from .keys import clear_namespace

__all__ = ["check_tiered_caches"]

E001 = "tiered_cache.E001"  # OPTIONS rejected (wrong type or shape, a bad value)
E002 = "tiered_cache.E002"  # unknown OPTIONS key
E003 = "tiered_cache.E003"  # a tier BACKEND that is not a tier / does not import
E004 = "tiered_cache.E004"  # unknown key in a tier spec
W001 = "tiered_cache.W001"  # tier KEY_PREFIX/VERSION/KEY_FUNCTION/TIMEOUT ignored
W002 = "tiered_cache.W002"  # L3 directory is relative
W003 = "tiered_cache.W003"  # L3 directory is under the temp dir
W004 = "tiered_cache.W004"  # top-level MAX_ENTRIES/CULL_FREQUENCY have no effect
W005 = "tiered_cache.W005"  # INVALIDATION off while tiers hold copies
E007 = "tiered_cache.E007"  # INVALIDATION asked for, but no tier can carry the bus
W006 = "tiered_cache.W006"  # keys have no fixed start: clear() cannot isolate them
W007 = "tiered_cache.W007"  # LOCATION looks like a server or a path, not a store name
W008 = "tiered_cache.W008"  # the memory tier is not first
W009 = "tiered_cache.W009"  # a tier OPTIONS key that has no effect in that tier
E005 = "tiered_cache.E005"  # an L3 folder cannot be created or written
E006 = "tiered_cache.E006"  # a negative TIMEOUT: nothing would ever be stored
I001 = "tiered_cache.I001"  # the embedded default: where it keeps its data


def _entries() -> list[tuple[str, Mapping[str, Any]]]:
    caches = getattr(settings, "CACHES", {}) or {}
    return [
        (alias, conf)
        for alias, conf in caches.items()
        if isinstance(conf, Mapping)
        and conf.get("BACKEND")
        in ("tiered_cache.TieredCache", "tiered_cache.backend.TieredCache")
    ]


@checks.register(checks.Tags.caches)
def check_tiered_caches(
    app_configs: Any = None, **kwargs: Any
) -> list[checks.CheckMessage]:
    """Check every CACHES entry whose BACKEND is TieredCache."""
    messages: list[checks.CheckMessage] = []
    for alias, conf in _entries():
        messages.extend(_check_entry(alias, conf))
    return messages


def _check_entry(alias: str, conf: Mapping[str, Any]) -> list[checks.CheckMessage]:
    where = f"CACHES[{alias!r}]"
    messages: list[checks.CheckMessage] = list(_check_timeout(where, conf))
    try:
        options = parse_options(conf.get("OPTIONS"))
    except BadValues as exc:
        messages.extend(
            checks.Error(
                problem.message,
                hint=problem.hint,
                obj=f"{where} tier {problem.tier!r}",
                id=E001,
            )
            for problem in exc.problems
        )
        return messages
    except ImproperlyConfigured as exc:
        is_backend = (
            not hasattr(exc, "hint") and "BACKEND" in str(exc) and "tier" in str(exc)
        )
        messages.append(
            checks.Error(
                str(exc),
                hint=getattr(exc, "hint", None)
                or (
                    "Name a tier adapter (tiered_cache.tiers.MemoryTier, "
                    "django_redis.cache.RedisCache, "
                    "tiered_cache.tiers.RedisClusterTier, "
                    "diskcache.DjangoCache) and install its extra, e.g. "
                    "pip install 'django-tiered-cache[redis]'."
                    if is_backend
                    else "See docs/configuration.rst for every option and its type."
                ),
                obj=where,
                id=E003 if is_backend else E001,
            )
        )
        return messages
    for key in options.unknown:
        messages.append(
            checks.Error(
                f"unknown OPTIONS key {key!r}.",
                hint=f"Known keys: {', '.join(DEFAULTS)}. Tier settings go in "
                "that tier's own OPTIONS.",
                obj=where,
                id=E002,
            )
        )
    raw_options = conf.get("OPTIONS") or {}
    for key in sorted(BASECACHE_OPTIONS & set(raw_options)):
        messages.append(
            checks.Warning(
                f"OPTIONS[{key!r}] has no effect on a TieredCache.",
                hint="Bound the memory tier instead: its OPTIONS take MAX_ENTRIES "
                "and MAX_BYTES.",
                obj=where,
                id=W004,
            )
        )
    messages.extend(_check_invalidation(where, options))
    location = conf.get("LOCATION")
    if location and (
        not isinstance(location, str) or "://" in location or location.startswith("/")
    ):
        messages.append(
            checks.Warning(
                f"LOCATION {location!r} looks like a server or a directory; "
                "on a TieredCache it is only a store name.",
                hint="Give each tier its own LOCATION inside OPTIONS['TIERS']; use "
                "the top-level LOCATION only to keep caches apart, as with "
                "LocMemCache.",
                obj=where,
                id=W007,
            )
        )
    key_func = get_key_func(conf.get("KEY_FUNCTION"))
    if not clear_namespace(
        key_func, conf.get("KEY_PREFIX", ""), conf.get("VERSION", 1)
    ):
        messages.append(
            checks.Warning(
                "KEY_FUNCTION builds keys with no fixed start, so clear() "
                "cannot tell this cache's keys from others' in shared tiers.",
                hint="Make the key function start every key with the KEY_PREFIX.",
                obj=where,
                id=W006,
            )
        )
    if options.embedded_default:
        messages.append(
            checks.Info(
                "no TIERS given: the embedded default keeps L1 in memory and L3 "
                f"in {default_l3_directory()}.",
                hint="Set OPTIONS['TIERS'] to choose the tiers and the L3 folder "
                "(docs/configuration.rst); add an L2 to share values between "
                "machines.",
                obj=where,
                id=I001,
            )
        )
    for index, tier in enumerate(options.tiers):
        messages.extend(_check_tier(f"{where} tier {tier.name!r}", index, tier))
    return messages


def _check_invalidation(where: str, options: Any) -> list[checks.CheckMessage]:
    from .tiers.base import BaseTier, Scope

    carriers = [
        tier
        for tier in options.tiers
        if tier.cls.scope == Scope.DEPLOYMENT
        and tier.cls.stream is not BaseTier.stream
        and options.invalidation.via in (None, tier.name)
    ]
    copies = any(
        tier.cls.scope < Scope.DEPLOYMENT
        and tier.cls.invalidate is not BaseTier.invalidate
        for tier in options.tiers
    )
    enabled = options.invalidation.enabled
    if enabled is False and carriers and copies:
        return [
            checks.Warning(
                "INVALIDATION is off: another process's write reaches this "
                "process's L1 copies only when they expire.",
                hint="Remove INVALIDATION (the bus is on by default with a Redis "
                "tier), or lower L1_MAX_STALENESS to the staleness you accept.",
                obj=where,
                id=W005,
            )
        ]
    if enabled and not carriers:
        return [
            checks.Error(
                "INVALIDATION is on, but no tier can carry the bus.",
                hint="The bus rides on a Redis tier (VIA names it); without one, "
                "set INVALIDATION to False and rely on L1_MAX_STALENESS.",
                obj=where,
                id=E007,
            )
        ]
    return []


def _check_timeout(where: str, conf: Mapping[str, Any]) -> list[checks.CheckMessage]:
    timeout = conf.get("TIMEOUT")
    if (
        isinstance(timeout, (int, float))
        and not isinstance(timeout, bool)
        and timeout < 0
    ):
        return [
            checks.Error(
                f"TIMEOUT is {timeout!r}: every value would expire at once, so "
                "nothing is ever stored.",
                hint="Use None for values that never expire, or a positive number "
                "of seconds (300 is Django's default).",
                obj=where,
                id=E006,
            )
        ]
    return []


def _check_tier(where: str, index: int, tier: Any) -> list[checks.CheckMessage]:
    messages: list[checks.CheckMessage] = []
    for key in tier.unknown_keys:
        messages.append(
            checks.Error(
                f"unknown key {key!r} in the tier spec.",
                hint="A tier spec takes NAME, BACKEND, LOCATION and OPTIONS.",
                obj=where,
                id=E004,
            )
        )
    for key in tier.ignored_keys:
        messages.append(
            checks.Warning(
                f"{key} is ignored in a tier spec.",
                hint=f"Set {key} on the TieredCache entry itself: the final key "
                "and timeout are decided once, for every tier.",
                obj=where,
                id=W001,
            )
        )
    options = tier.spec.get("OPTIONS") or {}
    for key in sorted(set(options) & tier.cls.ineffective_options):
        messages.append(
            checks.Warning(
                f"OPTIONS[{key!r}] has no effect in this tier.",
                hint="Set SERIALIZER in the OPTIONS of the TieredCache entry "
                "('pickle' or 'json'): every tier uses that one; remove it here."
                if key == "SERIALIZER"
                else "The tier stores its own envelopes and FAIL_OPEN decides what "
                "a failure means; remove the option.",
                obj=where,
                id=W009,
            )
        )
    if tier.cls.__name__ == "MemoryTier" and index != 0:
        messages.append(
            checks.Warning(
                "the memory tier is not the first tier.",
                hint="Put the memory tier first: tiers are read in list order.",
                obj=where,
                id=W008,
            )
        )
    if tier.cls.__name__ == "DiskTier":
        messages.extend(_check_disk_location(where, tier.spec.get("LOCATION")))
    return messages


def _check_disk_location(where: str, location: Any) -> list[checks.CheckMessage]:
    location = os.path.expanduser(str(location or ""))
    if not os.path.isabs(location):
        return [
            checks.Warning(
                f"directory {location!r} is relative, so it depends on "
                "the working directory of each process.",
                hint="Use an absolute path on local SSD, e.g. /var/cache/<project>.",
                obj=where,
                id=W002,
            )
        ]
    problem = _unwritable(location)
    if problem:
        return [
            checks.Error(
                f"directory {location!r} {problem}, so the disk tier would be "
                "unavailable in every process.",
                hint="Create it, or choose a folder the user running Django owns "
                "(e.g. /var/cache/<project>, chown'ed to that user).",
                obj=where,
                id=E005,
            )
        ]
    temp = os.path.realpath(tempfile.gettempdir())
    real = os.path.realpath(location)
    if real == temp or real.startswith(temp + os.sep):
        return [
            checks.Warning(
                f"directory {location!r} is under the temporary directory, "
                "which the system may clean while processes use it.",
                hint="Use a persistent path on local SSD, e.g. /var/cache/<project>.",
                obj=where,
                id=W003,
            )
        ]
    return []


def _unwritable(directory: str) -> str:
    """Say why ``directory`` cannot be created or written ('' when it can).

    ``os.access`` says yes to root for any path, even on ``/proc``, so the
    check writes: a probe folder is created in the directory (or in its
    nearest existing parent) and removed at once.
    """
    path = os.path.abspath(directory)
    while not os.path.exists(path):
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    if not os.path.isdir(path):
        return f"cannot be created ({path} is not a directory)"
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".tiered_cache-check-", dir=path))
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        if path == os.path.abspath(directory):
            return f"is not writable ({reason})"
        return f"cannot be created ({path}: {reason})"
    return ""
