"""Run in a subprocess with the testproject's settings (``TESTPROJECT_CACHE``
from the environment): serve the ``/load/`` views of ``bench/load.py`` and
print JSON facts."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "testproject"))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "testproject.settings")

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.core.cache import cache  # noqa: E402
from django.test import AsyncClient, Client  # noqa: E402

settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, "testserver"]  # the clients'
facts: dict = {"backend": settings.CACHES["default"]["BACKEND"], "pages": {}}
client = Client()
for url in ["/load/nowork/", "/load/slow/"]:
    response = client.get(url)
    facts["pages"][url] = [response.status_code, response.content.decode()]
facts["cached_after_slow"] = cache.get("load:slow") is not None
cache.delete("load:slow")


async def async_pages() -> None:
    aclient = AsyncClient()
    for url in ["/load/anowork/", "/load/aslow/"]:
        response = await aclient.get(url)
        facts["pages"][url] = [response.status_code, response.content.decode()]


asyncio.run(async_pages())
facts["cached_after_aslow"] = cache.get("load:slow") is not None
facts["pid"] = os.getpid()
print(json.dumps(facts))
