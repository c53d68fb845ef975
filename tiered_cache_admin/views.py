"""The dashboard's pages and actions (wired by ``admin.CacheDashboardAdmin``).

Every view is wrapped in ``admin_site.admin_view`` (active staff only, else
the login page; CSRF-protected) and checks the app's own permission
(``PermissionDenied``, a 403). Actions never act on ``GET``: a ``GET`` or an
unconfirmed ``POST`` shows the confirmation page, and only its ``POST`` with
``confirm=yes`` acts. Every action is recorded in the admin's log
(``LogEntry``, "Recent actions") and the ``tiered_cache_admin`` logger with
the user who ran it, and reported with a message.
"""

from __future__ import annotations

import logging
import reprlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django import forms
from django.contrib import messages
from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse

from tiered_cache.exceptions import TierUnavailable
from tiered_cache.stats import POOLED_GROUPS

from . import actions, data
from .chart import PALETTE, hit_ratio_svg
from .forms import ClearTierForm, InspectForm, InvalidateGroupForm, InvalidateKeyForm
from .models import ACT, VALUES, VIEW, CacheDashboard

__all__ = ["ACTIONS", "action", "groups", "index", "inspect", "overview"]

logger = logging.getLogger(__name__)

#: Characters of a value's repr the inspector shows.
VALUE_PREVIEW_CHARS = 2000


def _require(request: HttpRequest, *perms: str) -> None:
    if not request.user.has_perms(perms):
        raise PermissionDenied


def _context(admin: Any, request: HttpRequest, title: str, **extra: Any) -> dict:
    return {
        **admin.admin_site.each_context(request),
        "opts": admin.model._meta,
        "title": title,
        "aliases": data.aliases(),
        "can_act": request.user.has_perm(ACT),
        "can_see_values": request.user.has_perm(VALUES),
        **extra,
    }


def _cache(alias: str) -> Any:
    try:
        return data.tiered_cache(alias)
    except KeyError:
        raise Http404(f"no TieredCache called {alias!r}") from None


def _summary(request: HttpRequest, alias: str) -> dict[str, Any]:
    """Return ``data.summary``; say on the page why it is empty if it is."""
    summary = data.summary(alias)
    if "error" in summary:
        messages.warning(request, f"Cache {alias}: {summary['error']}.")
    return summary


def _url(name: str, alias: str) -> str:
    return reverse(f"admin:tiered_cache_admin_{name}", args=[alias])


# -- pages -----------------------------------------------------------------------


def index(admin: Any, request: HttpRequest) -> HttpResponse:
    """List the TieredCache aliases; go straight to the overview of a single one."""
    _require(request, VIEW)
    names = data.aliases()
    if len(names) == 1:
        return HttpResponseRedirect(_url("overview", names[0]))
    rows = [(alias, _url("overview", alias)) for alias in names]
    ctx = _context(admin, request, "Cache dashboard", rows=rows)
    return TemplateResponse(request, "tiered_cache_admin/index.html", ctx)


def overview(admin: Any, request: HttpRequest, alias: str) -> HttpResponse:
    """Hit ratios, throughput, latency, sizes and breakers of one cache."""
    _require(request, VIEW)
    cache = _cache(alias)
    data.flush(alias)
    summary = _summary(request, alias)
    window = request.GET.get("window", "hour")
    if window not in data.WINDOWS:
        window = "hour"
    history = data.series(alias, window)
    total = summary["total"]
    # Over the time the counts cover, not the whole window (a site up for
    # ten minutes is not averaged over 24 h).
    covered = summary.get("covered") or 0
    requests = total.get("hits", 0) + total.get("misses", 0)
    user_ops, internal_ops = data.by_caller(summary.get("latency") or {})
    tiers = [
        {"name": name, "colour": PALETTE[i % len(PALETTE)], **counters}
        for i, (name, counters) in enumerate(summary["tiers"].items())
    ]
    ctx = _context(
        admin,
        request,
        f"Cache {alias}",
        alias=alias,
        summary=summary,
        total=total,
        tiers=tiers,
        requests_per_s=requests / covered if covered else None,
        latency=sorted(user_ops.items()),
        internal_latency=sorted(internal_ops.items()),
        bus=summary.get("bus") or {},
        l1_curve=data.l1_curve(alias),
        window=window,
        windows=list(data.WINDOWS),
        chart=hit_ratio_svg(
            history.get("tiers", {}),
            window=data.WINDOWS[window][0],
            now=time.time(),
        ),
        clear_form=ClearTierForm(tiers=[t.name for t in cache.tiers]),
        tab="overview",
    )
    return TemplateResponse(request, "tiered_cache_admin/overview.html", ctx)


def groups(admin: Any, request: HttpRequest, alias: str) -> HttpResponse:
    """Hits and misses per key group (the text before a key's first ':')."""
    _require(request, VIEW)
    _cache(alias)
    data.flush(alias)
    rows = sorted(
        _summary(request, alias).get("groups", {}).items(),
        key=lambda item: -(item[1].get("hits", 0) + item[1].get("misses", 0)),
    )
    ctx = _context(
        admin, request, f"Cache {alias}: key groups", alias=alias, rows=rows,
        pooled_groups=POOLED_GROUPS, tab="groups",
    )  # fmt: skip
    return TemplateResponse(request, "tiered_cache_admin/groups.html", ctx)


def inspect(admin: Any, request: HttpRequest, alias: str) -> HttpResponse:
    """Where a key is held, its remaining TTL and size; its value with VALUES."""
    _require(request, VIEW)
    cache = _cache(alias)
    form = InspectForm(request.GET if "key" in request.GET else None)
    found = None
    if form.is_valid():
        values = request.user.has_perm(VALUES)
        held = cache.inspect(
            form.cleaned_data["key"], form.cleaned_data["version"], values=values
        )
        found = [_inspected(tier.name, held.get(tier.name)) for tier in cache.tiers]
    ctx = _context(
        admin, request, f"Cache {alias}: key inspector", alias=alias, form=form,
        found=found, tab="inspect",
    )  # fmt: skip
    return TemplateResponse(request, "tiered_cache_admin/inspect.html", ctx)


def _inspected(tier: str, held: dict[str, Any] | None) -> dict[str, Any]:
    """Return the inspector's row of ``tier`` (``held``: its ``inspect`` entry)."""
    row: dict[str, Any] = {"tier": tier, "held": False, "preview": None}
    if held is None:
        return row
    row.update(held, held="error" not in held)
    if "value" in held:
        row["preview"] = _preview(held["value"])
    return row


def _preview(value: Any) -> str:
    """Return a bounded repr of ``value`` (the template escapes it)."""
    shown = reprlib.Repr()  # keyword arguments only from Python 3.12
    shown.maxstring = shown.maxother = VALUE_PREVIEW_CHARS
    shown.maxlist = shown.maxtuple = shown.maxdict = shown.maxset = 100
    shown.maxlevel = 8
    text = shown.repr(value)
    if len(text) > VALUE_PREVIEW_CHARS:
        text = text[:VALUE_PREVIEW_CHARS] + "…"
    return text


# -- actions ---------------------------------------------------------------------


@dataclass(frozen=True)
class Action:
    """One POST action: its form, what it does, and how it is described."""

    title: str
    form: Callable[..., forms.Form]
    run: Callable[[Any, dict], str]  # (cache, cleaned data) -> message
    then: str  # the page to return to
    note: str = ""  # what the confirmation page adds


def _clear(cache: Any, cleaned: dict) -> str:
    tier = cleaned["tier"]
    actions.clear_tier(cache, tier)
    if tier == actions.ALL_TIERS:
        return "cleared every tier (announced to every process)"
    return f"cleared tier {tier} (as this process sees it)"


def _invalidate_key(cache: Any, cleaned: dict) -> str:
    held = actions.invalidate_key(cache, cleaned["key"])
    return f"invalidated key {cleaned['key']!r}" + ("" if held else " (not found)")


def _invalidate_group(cache: Any, cleaned: dict) -> str:
    result = actions.invalidate_group(cache, cleaned["group"])
    text = f"invalidated {result.deleted} keys of group {cleaned['group']!r}"
    if result.truncated:
        text += f" (the limit of {actions.GROUP_LIMIT}: more may remain, run it again)"
    if result.unlisted:
        text += f"; tiers not listed: {', '.join(result.unlisted)}"
    return text


ACTIONS = {
    "clear-tier": Action(
        "Clear a tier",
        ClearTierForm,
        _clear,
        "overview",
        "One tier is cleared as this process sees it: L1 is the memory of the "
        "worker serving this page, L3 the folder of its machine. Every tier is "
        "cache.clear(), announced to every process.",
    ),
    "invalidate-key": Action(
        "Invalidate a key", InvalidateKeyForm, _invalidate_key, "inspect"
    ),
    "invalidate-group": Action(
        "Invalidate a key group",
        InvalidateGroupForm,
        _invalidate_group,
        "groups",
        f"At most {actions.GROUP_LIMIT} keys per run, listed from every tier "
        "that can list its keys (Redis: SCAN, never KEYS); each deletion is "
        "announced to every process.",
    ),
}


def action(admin: Any, request: HttpRequest, alias: str, name: str) -> HttpResponse:
    """Confirm, then run, one of ``ACTIONS``; never acts on ``GET``."""
    _require(request, VIEW, ACT)
    cache = _cache(alias)
    spec = ACTIONS[name]
    kwargs = {"tiers": [t.name for t in cache.tiers]} if name == "clear-tier" else {}
    submitted = request.POST if request.method == "POST" else request.GET
    form = spec.form(submitted or None, **kwargs)
    if (
        request.method == "POST"
        and request.POST.get("confirm") == "yes"
        and form.is_valid()
    ):
        try:
            text = spec.run(cache, form.cleaned_data)
        except (TierUnavailable, actions.GroupNotListable, KeyError) as exc:
            messages.error(
                request, f"Cache {alias}: {spec.title.lower()} failed: {exc}"
            )
        else:
            _record(request, alias, text)
            messages.success(request, f"Cache {alias}: {text}.")
        return HttpResponseRedirect(_url(spec.then, alias))
    ctx = _context(
        admin, request, f"Cache {alias}: {spec.title.lower()}?", alias=alias,
        form=form, action=spec, action_url=_url(name.replace("-", "_"), alias),
        back_url=_url(spec.then, alias),
    )  # fmt: skip
    return TemplateResponse(request, "tiered_cache_admin/confirm.html", ctx)


def _record(request: HttpRequest, alias: str, text: str) -> None:
    """Log the action with its user: the admin's history and the logger."""
    logger.info("cache %s: %s by %s", alias, text, request.user.get_username())
    LogEntry.objects.create(
        user_id=request.user.pk,
        content_type=ContentType.objects.get_for_model(
            CacheDashboard, for_concrete_model=False
        ),
        object_repr=f"cache {alias}"[:200],
        action_flag=CHANGE,
        change_message=text,
    )
