"""``warm()``: what ``manage.py warm_cache`` runs (and an admin button may).

1. *Plan*: score the sampled keys of the history (``WARMING["SCORER"]``,
   ``score.decayed_frequency`` by default) and take the best ``limit``; or,
   when a checkpoint of an interrupted run is in the store, its plan, from
   where it stopped (``resumed_from``).
2. For each planned key, in order: ask the shared tiers (L2, L3) whether
   they hold it. Held: nothing to do (so a second run does nothing new).
   Missing: re-run the warmer of its group (``registry``) and write the value
   through every tier with ``set_many``; a key whose authority did not take
   it, or whose warmer raised, *failed*. A key with no warmer is
   ``no_warmer``; when the settings list pages (``WARMING["URLS"]`` or
   ``["SITEMAP"]``) they are requested once, with Django's test client in
   this process, so the views fill the cache as they do for users.
3. Every ``CHECKPOINT_EVERY`` keys, and on ``KeyboardInterrupt`` (SIGINT),
   the plan and its position are saved in the history store; a complete run
   removes the checkpoint.
4. *Publish* the warm set: the planned keys that are now held (with their
   scores), which each web process may preload into its L1 (``preload``).

``rate`` paces the writes (warmers run and pages requested per second), so
warming never floods Redis or pushes the hot set out of it: keep it well
under the site's own write rate. Nothing here raises for a failing tier:
failures are counted in the report, whose ``ok`` is False then.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from functools import partial
from typing import Any

from django.core.cache import caches
from django.utils.module_loading import import_string

from ..history.flush import store_of
from ..history.store import HistoryStore
from ..sentinels import UNAVAILABLE
from ..tiers.base import Scope
from .registry import group_of, warmers

__all__ = ["CHECKPOINT", "WARM_SET", "WarmReport", "read_warm_set", "warm"]

logger = logging.getLogger(__name__)

#: Store fields: the checkpoint of an interrupted run, the published warm set.
CHECKPOINT = "warm|checkpoint"
WARM_SET = "warm|set"
CHECKPOINT_EVERY = 25
_MAX_ERRORS = 10


@dataclass
class WarmReport:
    """What a run did (``--json`` prints it)."""

    alias: str
    dry_run: bool
    planned: int = 0
    held: int = 0
    warmed: int = 0
    failed: int = 0
    no_warmer: int = 0
    would_warm: int = 0
    pages: int = 0
    pages_failed: int = 0
    resumed_from: int | None = None
    interrupted: bool = False
    published: int | None = None
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Whether everything planned is held or was warmed (a clean exit)."""
        return not (self.failed or self.pages_failed or self.interrupted or self.errors)

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}

    def error(self, message: str) -> None:
        logger.warning("warm_cache %s: %s", self.alias, message)
        if len(self.errors) < _MAX_ERRORS:
            self.errors.append(message)


def scorer_for(cache: Any) -> Callable[..., list[tuple[str, float]]]:
    """Return the configured scorer of ``cache``, with its half-life."""
    options = cache.options.warming
    scorer = import_string(options.scorer)
    if options.scorer.endswith("score.decayed_frequency"):
        return partial(scorer, half_life=options.half_life)
    return scorer


def _plan(
    store: HistoryStore, cache: Any, limit: int, report: WarmReport
) -> tuple[list[tuple[str, float]], int]:
    """Return the plan and where to start in it (a checkpoint's position)."""
    saved = store.get(CHECKPOINT)
    if saved:
        try:
            checkpoint = json.loads(saved)
            plan = [(str(k), float(s)) for k, s in checkpoint["plan"]]
            done = int(checkpoint["done"])
        except (ValueError, KeyError, TypeError):
            report.error("ignored an unreadable checkpoint")
        else:
            report.resumed_from = done
            return plan, done
    return scorer_for(cache)(store.read())[:limit], 0


def _shared_slots(cache: Any) -> list[Any]:
    return [slot for slot in cache._slots if slot.tier.scope > Scope.PROCESS]


def _held(slots: list[Any], final: str) -> bool | Any:
    """Return whether a shared tier holds ``final``; UNAVAILABLE if none answered."""
    answered = False
    for slot in slots:
        try:
            found = slot.call("has_key", final)
        except Exception:  # FAIL_OPEN off: the error reaches us
            found = UNAVAILABLE
        if found is UNAVAILABLE:
            continue
        if found:
            return True
        answered = True
    return False if answered else UNAVAILABLE


def warm(
    alias: str = "default",
    *,
    limit: int = 1000,
    rate: float | None = None,
    dry_run: bool = False,
    progress: Callable[[int, int], None] | None = None,
    stop: threading.Event | None = None,
) -> WarmReport:
    """Warm ``alias``'s shared tiers with its predicted-hot keys; return a report.

    :param limit: how many of the best-scored keys to plan.
    :param rate: at most this many warmers run (or pages requested) per
        second; ``None``: no pacing.
    :param dry_run: plan and look, write nothing (no checkpoint, no warm set).
    :param progress: called with ``(done, planned)`` after each key.
    :param stop: an event that paces the writes (tests set it to skip waits).
    """
    report = WarmReport(alias, dry_run)
    cache = caches[alias]
    stop = stop or threading.Event()
    try:
        store = store_of(alias)
        plan, start = _plan(store, cache, limit, report)
    except Exception as exc:  # the store does not answer: nothing to plan
        report.error(f"cannot read the access history ({exc})")
        return report
    report.planned = len(plan)
    slots = _shared_slots(cache)
    pending_pages = False
    done = start  # keys of the plan dealt with: where a resumed run starts
    try:
        for index in range(start, len(plan)):
            key = plan[index][0]
            outcome = _warm_one(cache, alias, slots, key, report, dry_run)
            done = index + 1
            pending_pages = pending_pages or outcome == "no_warmer"
            if outcome == "warmed" and rate:
                stop.wait(1.0 / rate)
            if not dry_run and (index + 1) % CHECKPOINT_EVERY == 0:
                _save_checkpoint(store, plan, index + 1, report)
            if progress is not None:
                progress(index + 1, len(plan))
        if pending_pages and not dry_run:
            _request_pages(cache, report, rate, stop)
    except KeyboardInterrupt:
        report.interrupted = True
        if not dry_run:
            _save_checkpoint(store, plan, done, report)
        return report
    if dry_run:
        return report
    try:
        store.remove(CHECKPOINT)
        held = [
            (key, score)
            for key, score in plan
            if _held(slots, cache.stored_key(key)) is True
        ]
        store.put(WARM_SET, json.dumps(held))
        report.published = len(held)
    except Exception as exc:
        report.error(f"warm set not published ({exc})")
    return report


def _warm_one(
    cache: Any,
    alias: str,
    slots: list[Any],
    key: str,
    report: WarmReport,
    dry_run: bool,
) -> str:
    """Warm one key if no shared tier holds it; return what happened."""
    final = cache.stored_key(key)
    held = _held(slots, final) if slots else False
    if held is True:
        report.held += 1
        return "held"
    if held is UNAVAILABLE:
        report.failed += 1
        report.error(f"{key}: no shared tier answered")
        return "failed"
    found = warmers.get((alias, group_of(key)))
    if found is None:
        report.no_warmer += 1
        return "no_warmer"
    if dry_run:
        report.would_warm += 1
        return "would_warm"
    try:
        value = found.function(key)
        failed = cache.set_many({key: value}, timeout=found.timeout)
    except Exception as exc:  # a warmer or a tier (FAIL_OPEN off) failed
        report.failed += 1
        report.error(f"{key}: {type(exc).__name__}: {exc}")
        return "failed"
    if failed:
        report.failed += 1
        report.error(f"{key}: not stored by its authority tier")
        return "failed"
    report.warmed += 1
    return "warmed"


def _save_checkpoint(
    store: HistoryStore, plan: list[tuple[str, float]], done: int, report: WarmReport
) -> None:
    try:
        store.put(CHECKPOINT, json.dumps({"plan": plan, "done": done}))
    except Exception as exc:
        report.error(f"checkpoint not saved ({exc})")


def _host() -> str:
    """Return a host ``ALLOWED_HOSTS`` accepts, for the pages' requests."""
    from django.conf import settings

    for host in settings.ALLOWED_HOSTS:
        if host != "*":
            return host.lstrip(".")
    return "testserver"


def _page_paths(cache: Any) -> list[str]:
    options = cache.options.warming
    paths = list(options.urls)
    if options.sitemap:
        from urllib.parse import urlsplit
        from xml.etree import ElementTree

        from django.test import Client

        response = Client(HTTP_HOST=_host()).get(options.sitemap)
        if response.status_code == 200:
            tree = ElementTree.fromstring(response.content)
            for loc in tree.iter("{http://www.sitemaps.org/schemas/sitemap/0.9}loc"):
                parts = urlsplit((loc.text or "").strip())
                paths.append(parts.path + (f"?{parts.query}" if parts.query else ""))
    return paths


def _request_pages(
    cache: Any, report: WarmReport, rate: float | None, stop: threading.Event
) -> None:
    """Request the configured pages once, so their views fill the cache."""
    from django.test import Client

    try:
        paths = _page_paths(cache)
    except Exception as exc:
        report.pages_failed += 1
        report.error(f"sitemap not read ({exc})")
        return
    client = Client(raise_request_exception=False, HTTP_HOST=_host())
    for path in paths:
        response = client.get(path)
        report.pages += 1
        if response.status_code >= 400:
            report.pages_failed += 1
            report.error(f"{path}: HTTP {response.status_code}")
        if rate:
            stop.wait(1.0 / rate)


def read_warm_set(alias: str) -> list[tuple[str, float]]:
    """Return the published warm set of ``alias`` (``[]`` if none)."""
    saved = store_of(alias).get(WARM_SET)
    return [(str(k), float(s)) for k, s in json.loads(saved)] if saved else []
