"""Run inside a subprocess with the testproject's settings; prints JSON facts.

The testproject has its own settings module, so the suite drives it in a fresh
interpreter instead of overriding tests.settings.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "testproject"))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "testproject.settings")

import django  # noqa: E402

django.setup()

from django.core.cache import cache  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.test import Client  # noqa: E402

call_command("check", fail_level="ERROR")  # W003 when the clone is in /tmp
client = Client(HTTP_HOST="127.0.0.1")
cache.clear()
facts: dict = {"tiers": [t.name for t in cache.tiers], "pages": {}}
for url in [
    "/",
    "/slow/7/",
    "/slow/7/",
    "/fragment/",
    "/fragment/",
    "/page/",
    "/page/",
]:
    response = client.get(url)
    facts["pages"].setdefault(url, []).append(
        [response.status_code, response.content.decode()]
    )
facts["stats"] = cache.stats()
# bench/chaos.py's views exist only with TESTPROJECT_CHAOS=1 (not set here).
facts["chaos"] = client.get("/chaos/get", {"key": "probe"}).status_code
# /metrics: staff only by default (TESTPROJECT_METRICS_PUBLIC unset here).
from django.contrib.auth.models import User  # noqa: E402
from django.test import RequestFactory  # noqa: E402
from testproject.demo.metrics import metrics  # noqa: E402

from tiered_cache.metrics import flush_now  # noqa: E402

flush_now()
request = RequestFactory().get("/metrics")
request.user = User(username="staff", is_staff=True, is_active=True)  # not saved
scrape = metrics(request)
facts["metrics"] = {
    "anonymous": client.get("/metrics").status_code,
    "staff": scrape.status_code,
    "staff_body": scrape.content.decode(),
}
cache.clear()
if os.environ.get("PROBE_STOP_REDIS") == "1":  # Redis goes away after start-up
    import contextlib

    import redis

    with contextlib.suppress(redis.ConnectionError):
        redis.Redis.from_url(os.environ["REDIS_URL"]).shutdown(nosave=True)
    down = metrics(request)
    facts["metrics_redis_down"] = [down.status_code, down.content.decode()]
print(json.dumps(facts))
