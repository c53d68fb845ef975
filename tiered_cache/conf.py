"""``OPTIONS`` of a TieredCache entry -> a frozen, validated options object.

Every key and its default is listed here (``DEFAULTS``; the breaker's in
``resilience.BreakerOptions``) and in ``docs/configuration.rst``. Wrong *types*,
unknown keys in a tier's OPTIONS, and values a tier cannot use (its
``validate_spec``, the one its constructor runs; ``BadValues``, one entry per
value) raise ``ImproperlyConfigured``; the
system checks report them with a hint and the backend raises them on first
use. Unknown top-level keys are kept in ``unknown`` so the check can name them
(raising would hide every other problem behind the first).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

from . import serializers
from .exceptions import BadValue, BadValues
from .history.options import (
    HistoryOptions,
    WarmingOptions,
    parse_history,
    parse_warming,
)
from .resilience import BreakerOptions
from .serializers import Serializer

__all__ = [
    "DEFAULTS",
    "INVALIDATION_DEFAULTS",
    "InvalidationOptions",
    "METRICS_DEFAULTS",
    "MetricsOptions",
    "Refusal",
    "STAMPEDE_DEFAULTS",
    "StampedeOptions",
    "TierSpec",
    "TieredOptions",
    "config_identity",
    "default_l3_directory",
    "options_for",
    "parse_options",
]

DEFAULTS: dict[str, Any] = {
    "TIERS": None,  # None: the embedded default, L1 + L3 in a per-project folder
    "FAIL_OPEN": True,
    "L1_MAX_STALENESS": 60.0,
    "BREAKER": {},
    "CLOCK": None,  # None: time.time
    "INVALIDATION": None,  # None: on when a tier can carry the bus (see below)
    "STAMPEDE": {},
    "SERIALIZER": "pickle",  # or "json", or a dotted path (``serializers.load``)
    "METRICS": {},
    "HISTORY": None,  # None: no access history (tiered_cache.history)
    "WARMING": None,  # None: warming defaults, no preload (tiered_cache.warming)
}
#: Read by Django's BaseCache itself; accepted but of no effect on the tiers.
BASECACHE_OPTIONS = frozenset({"MAX_ENTRIES", "CULL_FREQUENCY"})

#: ``OPTIONS["INVALIDATION"]`` keys and defaults (a dict turns the bus on).
INVALIDATION_DEFAULTS: dict[str, Any] = {
    "VIA": None,  # None: the first deployment-wide tier that can carry a bus
    "STREAM": "tiered_cache:bus",
    "HEARTBEAT": 1.0,
}

#: ``OPTIONS["METRICS"]`` keys and defaults (``False``: off; docs/metrics.rst).
METRICS_DEFAULTS: dict[str, Any] = {
    "ENABLED": True,
    "FLUSH_INTERVAL": 5.0,
    "GROUPS": 0,
}

#: ``OPTIONS["BREAKER"]`` keys and defaults, from ``BreakerOptions``.
BREAKER_DEFAULTS: dict[str, Any] = {
    option.name.upper(): option.default for option in dataclasses.fields(BreakerOptions)
}

#: Tier spec keys. TIMEOUT, KEY_PREFIX, VERSION and KEY_FUNCTION are ignored
#: (the backend builds the final key once); the system check says so.
TIER_KEYS = frozenset({"NAME", "BACKEND", "LOCATION", "OPTIONS"})
IGNORED_TIER_KEYS = frozenset({"TIMEOUT", "KEY_PREFIX", "VERSION", "KEY_FUNCTION"})


@dataclass(frozen=True)
class StampedeOptions:
    """``OPTIONS["STAMPEDE"]`` (lower-cased): how ``get_or_set`` coordinates.

    ``lease_seconds``: the longest a process holds the lease on a missing
    key (``None``: no lease, single flight per process only); it is also the
    longest other processes wait for its value before computing it
    themselves. ``max_poll_seconds``: the longest pause between two looks at
    the cache while waiting.
    """

    lease_seconds: float | None = 5.0
    max_poll_seconds: float = 0.05


#: ``OPTIONS["STAMPEDE"]`` keys and defaults, from ``StampedeOptions``.
STAMPEDE_DEFAULTS: dict[str, Any] = {
    option.name.upper(): option.default
    for option in dataclasses.fields(StampedeOptions)
}

_DEFAULT_NAMES = {
    "MemoryTier": "l1",
    "RedisTier": "l2",
    "RedisClusterTier": "l2",
    "DiskTier": "l3",
}


@dataclass(frozen=True)
class InvalidationOptions:
    """The invalidation bus: on, off, or on where a tier can carry it (auto)."""

    enabled: bool | None = None  # None: auto
    via: str | None = None
    stream: str = INVALIDATION_DEFAULTS["STREAM"]
    heartbeat: float = INVALIDATION_DEFAULTS["HEARTBEAT"]


@dataclass(frozen=True)
class MetricsOptions:
    """``OPTIONS["METRICS"]``: latency timing and the cross-process flush.

    ``enabled`` off: no call is timed and this process flushes nothing for
    the cache (its in-process counters still count: they are the cost of
    an integer addition). ``flush_interval``: seconds between two flushes of
    this process's deltas to the shared store (``tiered_cache.metrics``).
    ``groups``: how many key groups get their own hit and miss counts.
    """

    enabled: bool = METRICS_DEFAULTS["ENABLED"]
    flush_interval: float = METRICS_DEFAULTS["FLUSH_INTERVAL"]
    #: Key groups counted by name (``stats.GroupStats``); 0: no breakdown.
    groups: int = METRICS_DEFAULTS["GROUPS"]


@dataclass(frozen=True)
class TierSpec:
    """One entry of ``TIERS``, with its resolved name and adapter class."""

    name: str
    backend: str
    spec: Mapping[str, Any]
    cls: type
    ignored_keys: tuple[str, ...] = ()
    unknown_keys: tuple[str, ...] = ()


@dataclass(frozen=True)
class TieredOptions:
    """Validated OPTIONS of one TieredCache entry."""

    tiers: tuple[TierSpec, ...]
    fail_open: bool = DEFAULTS["FAIL_OPEN"]
    l1_max_staleness: float | None = DEFAULTS["L1_MAX_STALENESS"]
    breaker: BreakerOptions = field(default_factory=BreakerOptions)
    clock: Callable[[], float] = time.time
    invalidation: InvalidationOptions = field(default_factory=InvalidationOptions)
    stampede: StampedeOptions = field(default_factory=StampedeOptions)
    serializer: Serializer = serializers.PICKLE
    metrics: MetricsOptions = field(default_factory=MetricsOptions)
    history: HistoryOptions = field(default_factory=HistoryOptions)
    warming: WarmingOptions = field(default_factory=WarmingOptions)
    embedded_default: bool = False
    unknown: tuple[str, ...] = ()
    #: Identity of what the tiers share: equal keys share one chain per process.
    share_key: str = ""


def parse_options(options: Mapping[str, Any] | None) -> TieredOptions:
    """Validate ``OPTIONS`` and return a ``TieredOptions``."""
    from .tiers import tier_class  # tiers import Django pieces; keep conf light

    if options is not None and not isinstance(options, Mapping):
        raise ImproperlyConfigured(
            f"OPTIONS must be a dict, not a {type(options).__name__}: put the "
            "tiers under OPTIONS['TIERS'], e.g. OPTIONS = {'TIERS': [...]}"
        )
    options = dict(options or {})
    unknown = tuple(
        sorted(k for k in options if k not in DEFAULTS and k not in BASECACHE_OPTIONS)
    )
    fail_open = options.get("FAIL_OPEN", DEFAULTS["FAIL_OPEN"])
    if not isinstance(fail_open, bool):
        raise ImproperlyConfigured(
            f"FAIL_OPEN must be True or False, not {fail_open!r}"
        )
    staleness = options.get("L1_MAX_STALENESS", DEFAULTS["L1_MAX_STALENESS"])
    if staleness is not None and (
        isinstance(staleness, bool)
        or not isinstance(staleness, (int, float))
        or not staleness > 0
    ):
        raise ImproperlyConfigured(
            f"L1_MAX_STALENESS must be a positive number of seconds or None, "
            f"not {staleness!r}"
        )
    clock = _load_clock(options.get("CLOCK"))
    breaker = _parse_breaker(
        options.get("BREAKER") if options.get("BREAKER") is not None else {}
    )
    stampede = _parse_stampede(
        options.get("STAMPEDE") if options.get("STAMPEDE") is not None else {}
    )
    serializer = serializers.load(options.get("SERIALIZER"))

    metrics = _parse_metrics(options.get("METRICS", {}))
    history = parse_history(options.get("HISTORY"))
    warming = parse_warming(options.get("WARMING"))

    raw_tiers = options.get("TIERS")
    embedded = raw_tiers is None
    if embedded:
        raw_tiers = embedded_default_tiers()
    if not isinstance(raw_tiers, (list, tuple)) or not raw_tiers:
        raise ImproperlyConfigured("TIERS must be a non-empty list of tier specs")
    tiers = []
    bad_values: list[BadValue] = []  # every tier's, so the check lists them all
    for index, raw in enumerate(raw_tiers):
        if not isinstance(raw, Mapping) or "BACKEND" not in raw:
            raise ImproperlyConfigured(
                f"TIERS[{index}] must be a dict with a BACKEND, like a CACHES entry"
            )
        if raw.get("OPTIONS") is not None and not isinstance(raw["OPTIONS"], Mapping):
            raise ImproperlyConfigured(f"TIERS[{index}]['OPTIONS'] must be a dict")
        cls = tier_class(raw["BACKEND"])
        name = raw.get("NAME") or _DEFAULT_NAMES.get(cls.__name__, f"t{index + 1}")
        if not isinstance(name, str) or name != name.lower():
            raise ImproperlyConfigured(
                f"tier NAME must be a lower-case string, not {name!r}"
            )
        try:
            cls.validate_spec(raw.get("LOCATION"), raw.get("OPTIONS") or {}, name=name)
        except BadValues as exc:
            bad_values.extend(exc.problems)
        tiers.append(
            TierSpec(
                name=name,
                backend=raw["BACKEND"],
                spec=raw,
                cls=cls,
                ignored_keys=tuple(sorted(set(raw) & IGNORED_TIER_KEYS)),
                unknown_keys=tuple(sorted(set(raw) - TIER_KEYS - IGNORED_TIER_KEYS)),
            )
        )
    if bad_values:
        raise BadValues(bad_values)
    names = [t.name for t in tiers]
    if len(set(names)) != len(names):
        raise ImproperlyConfigured(f"tier names must be unique, got {names}")
    invalidation = _parse_invalidation(options.get("INVALIDATION"), names)

    share_key = config_identity(
        {
            "tiers": [dict(t.spec, NAME=t.name) for t in tiers],
            "clock": clock,
            "staleness": staleness,
            "breaker": dataclasses.asdict(breaker),
            "invalidation": dataclasses.asdict(invalidation),
            # Tiers read and write with it: another serializer, other tiers.
            "serializer": serializer.name,
        }
    )
    return TieredOptions(
        tiers=tuple(tiers),
        fail_open=fail_open,
        l1_max_staleness=None if staleness is None else float(staleness),
        breaker=breaker,
        clock=clock,
        invalidation=invalidation,
        stampede=stampede,
        serializer=serializer,
        metrics=metrics,
        history=history,
        warming=warming,
        embedded_default=embedded,
        unknown=unknown,
        share_key=share_key,
    )


_parsed: dict[str, TieredOptions] = {}


def options_for(raw: Mapping[str, Any] | None) -> TieredOptions:
    """Parse OPTIONS once per distinct configuration (backends are per thread)."""
    try:
        identity = config_identity(raw or {})
    except (TypeError, ValueError):  # e.g. non-string dict keys: just parse
        return parse_options(raw)
    options = _parsed.get(identity)
    if options is None:
        options = _parsed[identity] = parse_options(raw)
    return options


def embedded_default_tiers() -> list[dict[str, Any]]:
    """Return the tiers used when OPTIONS has no TIERS: L1 + L3 on local disk."""
    return [
        {"NAME": "l1", "BACKEND": "tiered_cache.tiers.MemoryTier"},
        {
            "NAME": "l3",
            "BACKEND": "diskcache.DjangoCache",
            "LOCATION": str(default_l3_directory()),
        },
    ]


def default_l3_directory() -> Path:
    """Return the per-project folder of the embedded default's L3.

    ``$XDG_CACHE_HOME`` (or ``~/.cache``) ``/tiered_cache/<project>-<hash>``,
    where the project is ``settings.BASE_DIR`` when defined, else the current
    directory: stable across restarts, distinct per project, never a temp dir.
    """
    from django.conf import settings

    project = Path(getattr(settings, "BASE_DIR", None) or os.getcwd()).resolve()
    digest = hashlib.sha1(str(project).encode()).hexdigest()[:10]
    root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(root) / "tiered_cache" / f"{project.name or 'root'}-{digest}"


def _load_clock(clock: Any) -> Callable[[], float]:
    if clock is None:
        return time.time
    if isinstance(clock, str):
        try:
            clock = import_string(clock)
        except ImportError as exc:
            raise ImproperlyConfigured(
                f"CLOCK {clock!r} does not import: {exc}"
            ) from exc
    if not callable(clock):
        raise ImproperlyConfigured(f"CLOCK must be callable, not {clock!r}")
    return clock


def _parse_invalidation(raw: Any, names: list[str]) -> InvalidationOptions:
    if raw is None or raw is True:
        return InvalidationOptions(enabled=None if raw is None else True)
    if raw is False:
        return InvalidationOptions(enabled=False)
    if not isinstance(raw, Mapping):
        raise ImproperlyConfigured(
            f"INVALIDATION must be None, True, False or a dict, not {raw!r}"
        )
    merged = _merged("INVALIDATION", raw, INVALIDATION_DEFAULTS)
    if merged["VIA"] is not None and merged["VIA"] not in names:
        raise ImproperlyConfigured(
            f"INVALIDATION['VIA'] names no tier: {merged['VIA']!r} not in {names}"
        )
    if not isinstance(merged["STREAM"], str) or not merged["STREAM"]:
        raise ImproperlyConfigured("INVALIDATION['STREAM'] must be a non-empty string")
    heartbeat = merged["HEARTBEAT"]
    if (
        isinstance(heartbeat, bool)
        or not isinstance(heartbeat, (int, float))
        or not 0 < heartbeat < math.inf
    ):
        raise ImproperlyConfigured(
            "INVALIDATION['HEARTBEAT'] must be a positive number of seconds"
        )
    return InvalidationOptions(
        enabled=True,
        via=merged["VIA"],
        stream=merged["STREAM"],
        heartbeat=float(heartbeat),
    )


def _merged(name: str, raw: Any, defaults: Mapping[str, Any]) -> dict[str, Any]:
    """Return ``raw`` (a dict option) over its defaults; refuse unknown keys."""
    if not isinstance(raw, Mapping):
        raise ImproperlyConfigured(f"{name} must be a dict, not {raw!r}")
    unknown = sorted(str(key) for key in raw if key not in defaults)
    if unknown:
        raise ImproperlyConfigured(
            f"unknown {name} keys {unknown}; known: {sorted(defaults)}"
        )
    return {**defaults, **raw}


def _parse_breaker(raw: Mapping[str, Any]) -> BreakerOptions:
    merged = _merged("BREAKER", raw, BREAKER_DEFAULTS)
    for key, value in merged.items():
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not value > 0
        ):
            raise ImproperlyConfigured(f"BREAKER[{key!r}] must be a positive number")
        if not math.isfinite(value):
            raise ImproperlyConfigured(f"BREAKER[{key!r}] must be finite")
    return BreakerOptions(**{k.lower(): v for k, v in merged.items()})


def _parse_metrics(raw: Any) -> MetricsOptions:
    if raw is None or raw is True:
        return MetricsOptions()
    if raw is False:
        return MetricsOptions(enabled=False)
    merged = _merged("METRICS", raw, METRICS_DEFAULTS)
    if not isinstance(merged["ENABLED"], bool):
        raise ImproperlyConfigured(
            f"METRICS['ENABLED'] must be True or False, not {merged['ENABLED']!r}"
        )
    interval = merged["FLUSH_INTERVAL"]
    if (
        isinstance(interval, bool)
        or not isinstance(interval, (int, float))
        or not 0 < interval < math.inf
    ):
        raise ImproperlyConfigured(
            "METRICS['FLUSH_INTERVAL'] must be a positive number of seconds, "
            f"not {interval!r}"
        )
    groups = merged["GROUPS"]
    if type(groups) is not int or not 0 <= groups <= 100:
        raise ImproperlyConfigured(
            f"METRICS['GROUPS'] must be a whole number from 0 to 100, not {groups!r}"
        )
    return MetricsOptions(
        enabled=merged["ENABLED"], flush_interval=float(interval), groups=groups
    )


def _parse_stampede(raw: Mapping[str, Any]) -> StampedeOptions:
    merged = _merged("STAMPEDE", raw, STAMPEDE_DEFAULTS)
    for key, value in merged.items():
        if key == "LEASE_SECONDS" and value is None:
            continue
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not value > 0
            or not math.isfinite(value)
        ):
            raise ImproperlyConfigured(
                f"STAMPEDE[{key!r}] must be a positive, finite number of seconds"
                + (" or None" if key == "LEASE_SECONDS" else "")
                + f", not {value!r}"
            )
    return StampedeOptions(**{k.lower(): v for k, v in merged.items()})


class Refusal:
    """Stands in for what a misconfigured cache would use: every use raises.

    The backend does not raise a configuration error from its constructor
    (Django's system checks build every cache, and ``manage.py check`` must
    report it with its hint); it raises it from every call instead.
    """

    def __init__(self, error: ImproperlyConfigured) -> None:
        self.error = error

    def refuse(self, *args: Any, **kwargs: Any) -> Any:
        raise ImproperlyConfigured(
            f"this TieredCache is misconfigured: {self.error} (manage.py check "
            "reports it with a hint when 'tiered_cache' is in INSTALLED_APPS)"
        ) from self.error

    def __getattr__(self, name: str) -> Any:
        self.refuse()

    def __iter__(self) -> Any:
        self.refuse()

    def __len__(self) -> int:
        self.refuse()
        return 0


def config_identity(obj: Any) -> str:
    """Return a stable string for a configuration (sorted keys, objects by id)."""
    return json.dumps(
        obj, sort_keys=True, default=lambda o: f"{type(o).__qualname__}@{id(o):x}"
    )
