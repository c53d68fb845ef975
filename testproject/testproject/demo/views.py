"""Demo views: each puts a slow computation (a 50 ms sleep standing in for an
upstream service or an expensive query) behind one way of using the cache."""

import time

from django.conf import settings
from django.core.cache import cache
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.cache import cache_page

UPSTREAM_DELAY = 0.05  # seconds


def _elapsed_ms(started):
    return (time.perf_counter() - started) * 1000


def _upstream(item):
    """Simulate a slow upstream call."""
    time.sleep(UPSTREAM_DELAY)
    return {"item": item, "square": item * item, "computed_at": timezone.now()}


def index(request):
    return render(
        request,
        "demo/index.html",
        {"cache_description": settings.CACHE_DESCRIPTION},
    )


def slow_item(request, item):
    started = time.perf_counter()
    value = cache.get_or_set(f"item:{item}", lambda: _upstream(item), 300)
    elapsed_ms = _elapsed_ms(started)
    return render(
        request,
        "demo/slow.html",
        {"item": item, "value": value, "elapsed_ms": elapsed_ms},
    )


class _SlowSidebar:
    """Sidebar entries that take UPSTREAM_DELAY to build, only when rendered."""

    def entries(self):
        time.sleep(UPSTREAM_DELAY)
        return [f"Category {n}" for n in range(1, 6)]


class _RenderTimer:
    """Render as the milliseconds elapsed since the view built the context."""

    def __init__(self):
        self.started = time.perf_counter()

    def __str__(self):
        return f"{_elapsed_ms(self.started):.1f}"


def fragment(request):
    return render(
        request,
        "demo/fragment.html",
        {"sidebar": _SlowSidebar(), "timer": _RenderTimer()},
    )


@cache_page(30)
def page(request):
    return render(request, "demo/page.html", {"now": timezone.now()})
