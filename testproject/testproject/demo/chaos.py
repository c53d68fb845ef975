"""Views for ``bench/chaos.py``: set and read any key of the default cache.

Mounted under ``/chaos/`` only when ``TESTPROJECT_CHAOS=1`` (see settings):
they write arbitrary keys without a login, so they are for a loopback
benchmark, never for a site anyone else can reach. Each view is one cache
call, so what the load generator measures is the cache under faults, not the
site. A miss is an empty 200 body; a 500 would be an exception that reached
the caller (with ``FAIL_OPEN`` none should).
"""

import os

from django.core.cache import cache
from django.http import HttpResponse, HttpResponseBadRequest, JsonResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

#: Values live longer than any chaos run, so a miss never means "expired".
TIMEOUT = 3600


@csrf_exempt
@require_POST
def set_value(request):
    key, value = request.GET.get("key"), request.GET.get("value")
    if not key or value is None:
        return HttpResponseBadRequest("key and value are required")
    cache.set(f"chaos:{key}", value, TIMEOUT)
    return _answer("ok")


@require_GET
def get_value(request):
    key = request.GET.get("key")
    if not key:
        return HttpResponseBadRequest("key is required")
    value = cache.get(f"chaos:{key}")
    return _answer(value or "")


def _answer(text):
    """The answer, with which worker gave it and how its L2 was doing then."""
    response = HttpResponse(text, content_type="text/plain")
    l2 = cache.stats().get("l2", {})
    response["X-Worker"] = (
        f"{os.getpid()} l2-breaker={l2.get('breaker', '-')} "
        f"l2-errors={l2.get('errors', '-')}"
    )
    return response


@require_GET
def worker(request):
    """This worker's pid, its tier counters and its bus's (gaps, outages)."""
    bus = getattr(getattr(cache, "_chain", None), "bus", None)  # not public API
    stats = {"tiers": cache.stats(), "bus": bus.stats.snapshot() if bus else None}
    return JsonResponse({"pid": os.getpid(), "stats": stats}, safe=False)


@csrf_exempt
@require_POST
def roundtrip(request):
    """Write a value of this worker, read it back, and read ``parent``'s key.

    For the fork test (docs/faults.rst D32): every worker of a ``--preload``
    server writes through the tiers it inherited and reads its write back.
    """
    key = request.GET.get("key")
    if not key:
        return HttpResponseBadRequest("key is required")
    wrote = f"{os.getpid()}:{key}"
    cache.set(f"chaos:{key}", wrote, TIMEOUT)
    facts = {
        "pid": os.getpid(),
        "wrote": wrote,
        "read": cache.get(f"chaos:{key}"),
        "parent": cache.get("chaos:parent"),
        "tiers": cache.stats(),
    }
    return JsonResponse(facts)


urlpatterns = [
    path("set", set_value),
    path("get", get_value),
    path("roundtrip", roundtrip),
    path("worker", worker),
]
