"""``/metrics``: the cache's Prometheus metrics, through prometheus_client's view.

The collector reads the numbers every worker flushed to the shared store, so
whichever worker answers a scrape returns the whole deployment's. Staff only
(a 403 for anyone else) unless ``TESTPROJECT_METRICS_PUBLIC=1``: the numbers
say how the site is used, which is nobody else's business.
"""

from django.conf import settings
from django.http import HttpResponseForbidden
from prometheus_client.django import PrometheusDjangoView

from tiered_cache.metrics.prometheus import register

register()
_view = PrometheusDjangoView.as_view()


def metrics(request):
    user = request.user
    if not settings.METRICS_PUBLIC and not (user.is_active and user.is_staff):
        return HttpResponseForbidden("metrics are for staff (or set METRICS_PUBLIC)")
    return _view(request)
