"""Views for ``bench/load.py``: one slow view behind the default cache, and a
view that does no work, each in a sync and an async flavour.

The slow view stands for a page whose data takes ``UPSTREAM_DELAY`` (50 ms) to
compute; with a cache the data is computed once and every later request is a
hit, so the view costs what the cache's hit costs. ``bench/load.py`` switches
the cache per run (``TESTPROJECT_CACHE``: none, LocMemCache, django-redis, the
tiered cache), so the same view measures each backend. The no-work view is the
ceiling: what the server, the middleware and the client cost without a cache.
Every response is the same few bytes (the worker's PID, zero-padded, which
tells ``bench/load.py`` when every worker is up, and the value's size), so the
bytes on the wire never differ between backends.
"""

import asyncio
import os
import time

from django.core.cache import cache
from django.http import HttpResponse
from django.urls import path

from .views import UPSTREAM_DELAY

KEY = "load:slow"
TIMEOUT = 3600  # longer than any run: a miss in a run means "not cached"


def _compute():
    time.sleep(UPSTREAM_DELAY)
    return {"item": 1, "body": "slow" * 16}


def _answer(value):
    return HttpResponse(f"{os.getpid():08d} {len(value['body'])}\n", "text/plain")


def slow(request):
    return _answer(cache.get_or_set(KEY, _compute, TIMEOUT))


def nowork(request):
    return HttpResponse(f"{os.getpid():08d} 64\n", "text/plain")


async def aslow(request):
    # Not ``aget_or_set``: Django's default calls the callable inside the event
    # loop, and a 50 ms time.sleep there would stall every other request.
    value = await cache.aget(KEY)
    if value is None:
        await asyncio.sleep(UPSTREAM_DELAY)
        value = {"item": 1, "body": "slow" * 16}
        await cache.aset(KEY, value, TIMEOUT)
    return _answer(value)


async def anowork(request):
    return HttpResponse(f"{os.getpid():08d} 64\n", "text/plain")


urlpatterns = [
    path("slow/", slow),
    path("nowork/", nowork),
    path("aslow/", aslow),
    path("anowork/", anowork),
]
