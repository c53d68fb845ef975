"""``OPTIONS["HISTORY"]`` and ``OPTIONS["WARMING"]``: parsed once, checked at start.

Both are off by default: a cache without them pays nothing on its hit path
(the backend installs the recording ``get`` only when HISTORY is on).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from django.core.exceptions import ImproperlyConfigured

__all__ = [
    "HISTORY_DEFAULTS",
    "WARMING_DEFAULTS",
    "HistoryOptions",
    "WarmingOptions",
    "parse_history",
    "parse_warming",
]

#: ``OPTIONS["HISTORY"]`` keys and defaults (a dict turns the history on).
HISTORY_DEFAULTS: dict[str, Any] = {
    "SAMPLE_RATE": 0.01,  # share of keys recorded (by key hash: always the same)
    "READ_EVERY": 10,  # and one read in N of the other keys (0: none), for warming
    "MAX_RECORDS": 100_000,  # accesses kept in the shared store (oldest go)
    "MAX_KEYS": 20_000,  # sampled keys kept by name, for warming (oldest go)
    "BUFFER": 10_000,  # accesses held in process between two flushes
    "MRC_KEYS": 8_192,  # sampled keys the miss-ratio-curve estimate tracks
}

#: ``OPTIONS["WARMING"]`` keys and defaults.
WARMING_DEFAULTS: dict[str, Any] = {
    "PRELOAD": False,  # load the warm set into L1 at start-up (a thread)
    "PRELOAD_RATE": 500.0,  # keys per second the preload reads below L1
    "URLS": (),  # pages warm_cache requests (its --urls run)
    "SITEMAP": None,  # or a path such as "/sitemap.xml": its <loc> pages
    "HALF_LIFE": 3600.0,  # seconds: an access this old counts half (the scorer)
    "SCORER": "tiered_cache.warming.score.decayed_frequency",
}


@dataclass(frozen=True)
class HistoryOptions:
    """The access history of one cache (``tiered_cache.history``)."""

    enabled: bool = False
    sample_rate: float = HISTORY_DEFAULTS["SAMPLE_RATE"]
    read_every: int = HISTORY_DEFAULTS["READ_EVERY"]
    max_records: int = HISTORY_DEFAULTS["MAX_RECORDS"]
    max_keys: int = HISTORY_DEFAULTS["MAX_KEYS"]
    buffer: int = HISTORY_DEFAULTS["BUFFER"]
    mrc_keys: int = HISTORY_DEFAULTS["MRC_KEYS"]


@dataclass(frozen=True)
class WarmingOptions:
    """How ``warm_cache`` and the start-up preload warm one cache."""

    preload: bool = False
    preload_rate: float = WARMING_DEFAULTS["PRELOAD_RATE"]
    urls: tuple[str, ...] = field(default_factory=tuple)
    sitemap: str | None = None
    half_life: float = WARMING_DEFAULTS["HALF_LIFE"]
    scorer: str = WARMING_DEFAULTS["SCORER"]


def _merged(name: str, raw: Any, defaults: Mapping[str, Any]) -> dict[str, Any]:
    # conf's own merge (unknown keys refused); imported here because conf
    # imports this module while it loads.
    from ..conf import _merged

    return _merged(name, raw, defaults)


def _positive_int(name: str, value: Any) -> int:
    if type(value) is not int or value < 1:
        raise ImproperlyConfigured(f"{name} must be a positive whole number")
    return value


def _positive(name: str, value: Any) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not 0 < value < math.inf
    ):
        raise ImproperlyConfigured(f"{name} must be a positive number, not {value!r}")
    return float(value)


def parse_history(raw: Any) -> HistoryOptions:
    """Return the ``HistoryOptions`` of ``OPTIONS["HISTORY"]`` (None/False: off)."""
    if raw is None or raw is False:
        return HistoryOptions()
    merged = _merged("HISTORY", {} if raw is True else raw, HISTORY_DEFAULTS)
    rate = _positive("HISTORY['SAMPLE_RATE']", merged["SAMPLE_RATE"])
    if rate > 1:
        raise ImproperlyConfigured("HISTORY['SAMPLE_RATE'] must be at most 1")
    read_every = merged["READ_EVERY"]
    if type(read_every) is not int or read_every < 0:
        raise ImproperlyConfigured("HISTORY['READ_EVERY'] must be 0 or more")
    return HistoryOptions(
        enabled=True,
        sample_rate=rate,
        read_every=read_every,
        max_records=_positive_int("HISTORY['MAX_RECORDS']", merged["MAX_RECORDS"]),
        max_keys=_positive_int("HISTORY['MAX_KEYS']", merged["MAX_KEYS"]),
        buffer=_positive_int("HISTORY['BUFFER']", merged["BUFFER"]),
        mrc_keys=_positive_int("HISTORY['MRC_KEYS']", merged["MRC_KEYS"]),
    )


def parse_warming(raw: Any) -> WarmingOptions:
    """Return the ``WarmingOptions`` of ``OPTIONS["WARMING"]`` (None: defaults)."""
    merged = _merged("WARMING", raw or {}, WARMING_DEFAULTS)
    if not isinstance(merged["PRELOAD"], bool):
        raise ImproperlyConfigured("WARMING['PRELOAD'] must be True or False")
    urls = merged["URLS"]
    if isinstance(urls, str) or not all(isinstance(url, str) for url in urls):
        raise ImproperlyConfigured("WARMING['URLS'] must be a list of paths")
    sitemap = merged["SITEMAP"]
    if sitemap is not None and not isinstance(sitemap, str):
        raise ImproperlyConfigured("WARMING['SITEMAP'] must be a path or None")
    if not isinstance(merged["SCORER"], str):
        raise ImproperlyConfigured("WARMING['SCORER'] must be a dotted path")
    return WarmingOptions(
        preload=merged["PRELOAD"],
        preload_rate=_positive("WARMING['PRELOAD_RATE']", merged["PRELOAD_RATE"]),
        urls=tuple(urls),
        sitemap=sitemap,
        half_life=_positive("WARMING['HALF_LIFE']", merged["HALF_LIFE"]),
        scorer=merged["SCORER"],
    )
